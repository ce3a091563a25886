"""Training recipes from an attacker: skops files whose schema calls functions, names types off the allow-list,
or whose zip is a bomb. Each is refused at the real upload route with a clear 422 and leaves nothing behind;
the worker refuses the same files again if one was stored before these checks, and a file it would have
written is never written."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import skops.io as sio
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from sklearn.decomposition import PCA
from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import (
    MaxAbsScaler,
    MinMaxScaler,
    RobustScaler,
    StandardScaler,
)
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from monitoring import services
from monitoring.models import AuditEvent, MaintenanceJob, ModelVersion
from monitoring.recipes import MAX_MEMBER_BYTES, MAX_MEMBERS
from tests.conftest import breast_cancer_split, trained_model, wait_for
from workers.training import RecipeError, recipe_load

UPLOAD = "/api/v1/deployments/tumour/versions"


# ---------------------------------------------------------------- building skops files by hand


def _json(value) -> dict:
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(value),
            "is_json": True}


def _tuple(*items: dict) -> dict:
    return {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode", "content": list(items)}


def _dict(**items: dict) -> dict:
    return {
        "__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": items,
        "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                      "content": [{"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"}] * len(items)},
    }


def _real_recipe() -> bytes:
    return trained_model(C=0.5)[1]


def _rezip(data: bytes, *, schema: Callable[[dict], None] | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    """The real recipe's zip, its schema edited in place by `schema` and `extra` members added."""
    source = zipfile.ZipFile(io.BytesIO(data))
    tree = json.loads(source.read("schema.json"))
    if schema is not None:
        schema(tree)
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            target.writestr(info.filename, json.dumps(tree) if info.filename == "schema.json" else source.read(info))
        for name, content in (extra or {}).items():
            target.writestr(name, content)
    return out.getvalue()


def _with_attribute(node: dict) -> bytes:
    """The real pipeline with one more attribute, `payload`, set to `node`: skops builds it while loading."""

    def add(tree: dict) -> None:
        tree["content"]["content"]["payload"] = node
        tree["content"]["key_types"]["content"].append({"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})

    return _rezip(_real_recipe(), schema=add)


def _target(tmp_path: Path) -> Path:
    return tmp_path / "written-by-the-recipe.txt"


def reduce_calling_savetxt(target: Path) -> bytes:
    # The proof of concept: skops calls the node's (module, class) with its content as arguments.
    return _with_attribute({
        "__class__": "savetxt", "__module__": "numpy", "__loader__": "ConstructorFromReduceNode",
        "content": _tuple(_json(str(target)), {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
                                               "content": [_json(1.0), _json(2.0)]}),
    })


def reduce_calling_numpy_testing_exec(target: Path) -> bytes:
    # numpy.testing's runstring is exec() under a numpy name: a prefix allow-list lets it through.
    return _with_attribute({
        "__class__": "runstring", "__module__": "numpy.testing._private.utils", "__loader__": "ConstructorFromReduceNode",
        "content": _tuple(_json(f"open({str(target)!r}, 'w').write('pwned')"), _dict()),
    })


def reduce_calling_builtins_eval(target: Path) -> bytes:
    return _with_attribute({
        "__class__": "eval", "__module__": "builtins", "__loader__": "ConstructorFromReduceNode",
        "content": _tuple(_json(f"open({str(target)!r}, 'w').write('pwned')")),
    })


def function_node_builtins_exec(target: Path) -> bytes:
    return _with_attribute({"__class__": "exec", "__module__": "builtins", "__loader__": "FunctionNode"})


def operator_node(target: Path) -> bytes:
    return _with_attribute({
        "__class__": "attrgetter", "__module__": "operator", "__loader__": "OperatorFuncNode",
        "attrs": _tuple(_json("__globals__")),
    })


def method_node(target: Path) -> bytes:
    return _with_attribute({
        "__class__": "Path", "__module__": "pathlib", "__loader__": "MethodNode",
        "content": {"func": "write_text", "obj": {"__class__": "Path", "__module__": "pathlib", "__loader__": "ObjectNode"}},
    })


def namedtuple_calling_os_system(target: Path) -> bytes:
    # A TupleNode builds its __class__ with the items as arguments: a "tuple" of type os.system runs a command.
    return _with_attribute({
        "__class__": "system", "__module__": "os", "__loader__": "TupleNode",
        "content": [_json(f"touch {target}")],
    })


def type_node_naming_os_system(target: Path) -> bytes:
    return _with_attribute({"__class__": "system", "__module__": "os", "__loader__": "TypeNode"})


def reduce_nested_in_a_list(target: Path) -> bytes:
    # Deep inside the pipeline's steps, not at the top: every node is walked.
    def bury(tree: dict) -> None:
        scaler = tree["content"]["content"]["steps"]["content"][0]["content"][1]
        scaler["content"]["content"]["mean_"] = {
            "__class__": "list", "__module__": "builtins", "__loader__": "ListNode",
            "content": [{"__class__": "savetxt", "__module__": "numpy", "__loader__": "ConstructorFromReduceNode",
                         "content": _tuple(_json(str(target)), _json([1.0]))}],
        }

    return _rezip(_real_recipe(), schema=bury)


def estimator_from_an_unlisted_sklearn_module(target: Path) -> bytes:
    X, y, _, _ = breast_cancer_split()
    return sio.dumps(make_pipeline(StandardScaler(), SVC()).fit(X[:60], y[:60]))


def nested_zip(target: Path) -> bytes:
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("schema.json", "{}")
    return _rezip(_real_recipe(), extra={"inner.zip": inner.getvalue()})


def array_member_that_is_a_zip(target: Path) -> bytes:
    # np.load opens a zip as an .npz archive: an "array" member must be a real .npy.
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        archive.writestr("x.npy", b"")
    source = zipfile.ZipFile(io.BytesIO(_real_recipe()))
    name = next(n for n in source.namelist() if n.endswith(".npy"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            archive.writestr(info.filename, inner.getvalue() if info.filename == name else source.read(info))
    return out.getvalue()


def zip_bomb_member(target: Path) -> bytes:
    # 300 MiB of zeros deflate to about 300 KB: the declared size is refused before a byte is inflated.
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", zipfile.ZipFile(io.BytesIO(_real_recipe())).read("schema.json"))
        with archive.open("1.npy", "w") as member:
            block = b"\0" * (1024 * 1024)
            for _ in range(300):
                member.write(block)
    return out.getvalue()


def too_many_members(target: Path) -> bytes:
    # Refused from the archive's end record, before zipfile makes an object for each entry it lists.
    present = len(zipfile.ZipFile(io.BytesIO(_real_recipe())).infolist())
    return _rezip(_real_recipe(), extra={f"{i}.npy": b"" for i in range(MAX_MEMBERS + 1 - present)})


def array_header_that_lies_about_its_size(target: Path) -> bytes:
    # A header declaring a billion float64 would make numpy allocate 8 GB before noticing the data is short.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**9,)})
    source = zipfile.ZipFile(io.BytesIO(_real_recipe()))
    name = next(n for n in source.namelist() if n.endswith(".npy"))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for info in source.infolist():
            archive.writestr(info.filename, header.getvalue() + b"\0" * 80 if info.filename == name else source.read(info))
    return out.getvalue()


def old_protocol(target: Path) -> bytes:
    return _rezip(_real_recipe(), schema=lambda tree: tree.update(protocol=0))


def schema_nested_ten_thousand_deep(target: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("schema.json", "[" * 100_000 + "]" * 100_000)
    return out.getvalue()


def not_a_zip(target: Path) -> bytes:
    return b"import os; os.system('id')"


def _set_param(name: str, node: dict, *, on: str = "sklearn.pipeline") -> Callable[[dict], None]:
    """An editor that sets parameter `name` to `node` on every estimator node from module `on`."""

    def edit(tree: object) -> None:
        if isinstance(tree, list):
            for item in tree:
                edit(item)
        elif isinstance(tree, dict):
            if tree.get("__loader__") == "ObjectNode" and tree.get("__module__", "").startswith(on):
                tree["content"]["content"][name] = node
            for value in tree.values():
                edit(value)

    return edit


def pipeline_with_a_joblib_cache(target: Path) -> bytes:
    # Pipeline.memory: a refit would make joblib write (and later unpickle from) a folder the file names.
    return _rezip(_real_recipe(), schema=_set_param("memory", _json(str(target.parent / "cache"))))


def pipeline_with_steps_in_a_tuple(target: Path) -> bytes:
    def edit(tree: dict) -> None:
        steps = tree["content"]["content"]["steps"]
        tree["content"]["content"]["steps"] = _tuple(*steps["content"])

    return _rezip(_real_recipe(), schema=edit)


def forest_of_a_million_trees(target: Path) -> bytes:
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(*breast_cancer_split()[:2])
    return _rezip(sio.dumps(forest), schema=_set_param("n_estimators", _json(10**6), on="sklearn.ensemble"))


def estimator_asking_for_many_processes(target: Path) -> bytes:
    forest = RandomForestClassifier(n_estimators=2, max_depth=2, random_state=0).fit(*breast_cancer_split()[:2])
    return _rezip(sio.dumps(forest), schema=_set_param("n_jobs", _json(512), on="sklearn.ensemble"))


def mlp_with_huge_layers(target: Path) -> bytes:
    X, y, _, _ = breast_cancer_split()
    mlp = MLPClassifier(hidden_layer_sizes=(4,), max_iter=3, random_state=0).fit(X[:50], y[:50])
    return _rezip(sio.dumps(mlp), schema=_set_param(
        "hidden_layer_sizes", _tuple(_json(10**6), _json(10**6)), on="sklearn.neural_network"))


def tree_wider_than_its_estimator(target: Path) -> bytes:
    # The worker checks feature ids against the tree's own n_features: it must be the estimator's.
    tree = DecisionTreeClassifier(max_depth=2, random_state=0).fit(*breast_cancer_split()[:2])

    def edit(schema: dict) -> None:
        schema["content"]["content"]["tree_"]["__reduce__"]["args"]["content"][0] = _json(10**8)

    return _rezip(sio.dumps(tree), schema=edit)


def schema_with_a_corrupt_deflate_stream(target: Path) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("schema.json", json.dumps({"padding": "x" * 5000}))
    data = bytearray(out.getvalue())
    data[60:70] = b"\xff" * 10  # inside the deflate data, after the 30-byte local header and the name
    return bytes(data)


PAYLOADS = [
    (pipeline_with_a_joblib_cache, "sets memory (a cache directory); recipes must leave it None"),
    (pipeline_with_steps_in_a_tuple, "keeps its steps in something other than a list"),
    (forest_of_a_million_trees, "sets n_estimators outside 1 to 2,000"),
    (estimator_asking_for_many_processes, "sets n_jobs=512; use None or at most 8"),
    (mlp_with_huge_layers, "has hidden layers outside 1 to 16 layers of 1 to 4,096 units"),
    (tree_wider_than_its_estimator, "holds a tree whose feature count does not match the estimator's"),
    (schema_with_a_corrupt_deflate_stream, "not a skops file"),
    (reduce_calling_savetxt, "The recipe calls numpy.savetxt (ConstructorFromReduceNode)"),
    (reduce_calling_numpy_testing_exec, "The recipe calls numpy.testing._private.utils.runstring"),
    (reduce_calling_builtins_eval, "The recipe calls builtins.eval"),
    (function_node_builtins_exec, "The recipe calls builtins.exec (FunctionNode)"),
    (operator_node, "The recipe calls operator.attrgetter (OperatorFuncNode)"),
    (method_node, "The recipe calls pathlib.Path (MethodNode)"),
    (namedtuple_calling_os_system, "The recipe contains os.system, which is not an allowed type"),
    (type_node_naming_os_system, "The recipe contains os.system, which is not an allowed type"),
    (reduce_nested_in_a_list, "The recipe calls numpy.savetxt"),
    (estimator_from_an_unlisted_sklearn_module, "The recipe contains sklearn.svm._classes.SVC, which is not an allowed estimator"),
    (nested_zip, "holds 'inner.zip'; a recipe holds only schema.json and .npy arrays (nested archives are refused)"),
    (array_member_that_is_a_zip, "is not a numpy array file"),
    (zip_bomb_member, f"inflates to 314,572,800 bytes; the limit is {MAX_MEMBER_BYTES:,}"),
    (too_many_members, f"lists {MAX_MEMBERS + 1:,} files; the limit is {MAX_MEMBERS:,}"),
    (array_header_that_lies_about_its_size, "declares 8,000,000,000 bytes of data but holds 80"),
    (old_protocol, "saved with skops protocol 0"),
    (schema_nested_ten_thousand_deep, "nests too deeply"),
    (not_a_zip, "not a skops file"),
]
IDS = [build.__name__ for build, _ in PAYLOADS]


# ---------------------------------------------------------------- helpers


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def media_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def upload(user, recipe: bytes):
    return client_for(user).post(UPLOAD, {
        "file": SimpleUploadedFile("model.onnx", trained_model(C=0.5)[0]),
        "recipe": SimpleUploadedFile("recipe.skops", recipe),
    })


# ---------------------------------------------------------------- at the upload route


@pytest.mark.django_db
@pytest.mark.parametrize(("build", "message"), PAYLOADS, ids=IDS)
def test_the_upload_route_refuses_a_malicious_recipe_and_writes_nothing(deployment, operator, tmp_path, build, message):
    recipe = build(_target(tmp_path))
    versions, audits, files = ModelVersion.objects.count(), AuditEvent.objects.count(), media_files()

    response = upload(operator, recipe)

    assert response.status_code == 422, response.content
    body = response.json()
    assert message in body["detail"]
    assert body["errors"][0]["field"] == "recipe"
    assert not _target(tmp_path).exists()
    assert (ModelVersion.objects.count(), AuditEvent.objects.count(), media_files()) == (versions, audits, files)


@pytest.mark.django_db
def test_the_upload_page_refuses_the_proof_of_concept_and_writes_nothing(deployment, operator, tmp_path):
    versions, audits, files = ModelVersion.objects.count(), AuditEvent.objects.count(), media_files()

    response = client_for(operator).post("/d/tumour/versions/new", {
        "file": SimpleUploadedFile("model.onnx", trained_model(C=0.5)[0]),
        "recipe": SimpleUploadedFile("recipe.skops", reduce_calling_savetxt(_target(tmp_path))),
    })

    assert response.status_code == 422
    assert "The recipe calls numpy.savetxt" in response.content.decode()
    assert not _target(tmp_path).exists()
    assert (ModelVersion.objects.count(), AuditEvent.objects.count(), media_files()) == (versions, audits, files)


@pytest.mark.django_db
def test_the_upload_route_builds_nothing_so_an_inconsistent_recipe_is_only_refused_by_the_worker(deployment, operator):
    # Allowed types and parameters throughout, but one value points back at a node that was never read: only
    # building it would fail, and the web request does not build it.
    dangling = {"__class__": "bool", "__module__": "builtins", "__loader__": "CachedNode", "__id__": 1234567}
    recipe = _rezip(_real_recipe(), schema=lambda tree: tree["content"]["content"].update(verbose=dangling))

    response = upload(operator, recipe)

    assert response.status_code == 201, response.content
    with pytest.raises(RecipeError, match=r"The training recipe \(Pipeline\) cannot be loaded"):
        recipe_load(recipe)


# ---------------------------------------------------------------- in the worker


@pytest.mark.parametrize(("build", "message"), PAYLOADS, ids=IDS)
def test_the_worker_refuses_the_same_recipes_before_building_anything(tmp_path, build, message):
    with pytest.raises(RecipeError) as refused:
        recipe_load(build(_target(tmp_path)))

    assert message in str(refused.value)
    assert not _target(tmp_path).exists()


def test_the_worker_refuses_a_tree_whose_child_index_points_outside_it():
    X, y, _, _ = breast_cancer_split()
    forest = RandomForestClassifier(n_estimators=2, max_depth=3, random_state=0).fit(X, y)
    forest.estimators_[1].tree_.children_left[0] = 10**6  # the array is a view of the tree's own nodes

    with pytest.raises(RecipeError, match="node indices outside the tree"):
        recipe_load(sio.dumps(forest))


def _fitted(estimator):
    X, y, _, _ = breast_cancer_split()
    return estimator.fit(X, y.astype(str))


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")  # few iterations keep it fast
@pytest.mark.parametrize("estimator", [
    make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
    make_pipeline(MinMaxScaler(), RobustScaler(), MaxAbsScaler(), PCA(5), LogisticRegression(class_weight="balanced")),
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=0),
    MLPClassifier(hidden_layer_sizes=(8,), solver="sgd", max_iter=20, random_state=np.random.RandomState(0)),
    RandomForestClassifier(n_estimators=5, random_state=0),
    ExtraTreesClassifier(n_estimators=5, random_state=0),
    DecisionTreeClassifier(random_state=0),
], ids=["scaler+logistic", "scalers+pca+logistic", "mlp-adam", "mlp-sgd", "forest", "extra-trees", "tree"])
def test_every_estimator_retraining_supports_loads_and_predicts_as_saved(estimator):
    fitted = _fitted(estimator)
    X = breast_cancer_split()[2]

    loaded = recipe_load(sio.dumps(fitted))

    assert type(loaded) is type(fitted)
    assert loaded.predict(X).tolist() == fitted.predict(X).tolist()


# ---------------------------------------------------------------- a recipe stored before these checks


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_retrain_of_a_stored_malicious_recipe_fails_in_the_worker_with_a_clear_message(
    celery_worker_process, deployment, operator, tmp_path
):
    # As if uploaded before the allow-list existed: the bytes are in the store and the version names them.
    active = deployment.active_version()
    ModelVersion.objects.filter(pk=active.pk).update(
        recipe_sha256=services.blob_put(reduce_calling_savetxt(_target(tmp_path)))
    )
    versions = ModelVersion.objects.count()

    job = services.job_queue(version=active, kind=MaintenanceJob.Kind.RETRAIN, by=operator)
    job = wait_for(lambda: MaintenanceJob.objects.filter(pk=job.pk, status=MaintenanceJob.Status.FAILED).first())

    assert job.error.startswith("The recipe calls numpy.savetxt (ConstructorFromReduceNode)")
    assert not _target(tmp_path).exists()
    assert ModelVersion.objects.count() == versions
    assert not AuditEvent.objects.filter(action="version.register", at__gt=job.created_at).exists()
