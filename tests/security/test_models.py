"""ONNX models from an attacker: tensors whose data lives "outside" the file (a path onnxruntime would read
relative to our working directory, or a raw memory address), graphs that would allocate without bound or loop
for ever, and metadata that is not what it claims. Each is refused at the real upload route with our own
message, never the engine's text, and leaves nothing behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from onnx import TensorProto, helper, numpy_helper

from monitoring.models import AuditEvent, ModelVersion
from monitoring.runtime import (
    InvalidModelError,
    ModelRunner,
    inspect_model,
    refuse_external_data,
)
from tests.conftest import FEATURES, trained_model

pytestmark = pytest.mark.django_db
UPLOAD = "/api/v1/deployments/tumour/versions"
SECRET = b"TOPSECRET-signing-key-0123456789"
EXTERNAL = "outside the file (external data)"


# ---------------------------------------------------------------- building models by hand


def _external(name: str, location: str, *, offset: int | None = None, length: int = 8,
              flag: bool = True, entries: bool = True) -> TensorProto:
    """A uint8 tensor of `length` bytes whose data onnxruntime would read from `location`."""
    tensor = TensorProto(name=name, data_type=TensorProto.UINT8, dims=[length])
    if flag:
        tensor.data_location = TensorProto.EXTERNAL
    if entries:
        for key, value in (("location", location), ("offset", offset), ("length", length)):
            if value is not None:
                entry = tensor.external_data.add()
                entry.key, entry.value = key, str(value)
    return tensor


def _classifier(nodes=(), initializers=(), *, last: str = "x", metadata: dict[str, str] | None = None,
                functions=(), sparse_initializers=()) -> bytes:
    """x [N, 30] → (nodes ending in `last`, [N, 30]) → probabilities; label = argmax. A valid classifier shape."""
    graph = helper.make_graph(
        [*nodes, helper.make_node("Identity", [last], ["probabilities"]),
         helper.make_node("ArgMax", ["probabilities"], ["label"], axis=1, keepdims=0)],
        "attack",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 30])],
        [helper.make_tensor_value_info("label", TensorProto.INT64, [None]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 30])],
        list(initializers),
        sparse_initializer=list(sparse_initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("local", 1)],
                              functions=list(functions))
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def _leak_through_reshape(secret: TensorProto) -> list:
    """Nodes that reshape x to the secret's bytes: onnxruntime's error would print them as the requested shape."""
    return [helper.make_node("Cast", [secret.name], ["as_shape"], to=TensorProto.INT64),
            helper.make_node("Reshape", ["x", "as_shape"], ["reshaped"]),
            helper.make_node("Identity", ["x"], ["y"])]


def secret_initializer(location: str, **kwargs) -> bytes:
    secret = _external("secret", location, **kwargs)
    return _classifier(_leak_through_reshape(secret), [secret], last="y")


def _constant(name: str, tensor: TensorProto) -> onnx.NodeProto:
    return helper.make_node("Constant", [], [name], value=tensor)


def _body(nodes, initializers=()) -> onnx.GraphProto:
    """A Loop body that passes its condition through and ignores the rest."""
    return helper.make_graph(
        [helper.make_node("Identity", ["cond_in"], ["cond_out"]), *nodes], "body",
        [helper.make_tensor_value_info("i", TensorProto.INT64, []),
         helper.make_tensor_value_info("cond_in", TensorProto.BOOL, [])],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, [])],
        list(initializers),
    )


def _loop(body: onnx.GraphProto) -> list:
    return [helper.make_node("Loop", ["trip", "keep_going"], [], body=body)]


def _loop_inits(trip_count: int = 1) -> list:
    return [numpy_helper.from_array(np.array(trip_count, dtype=np.int64), "trip"),
            numpy_helper.from_array(np.array(True), "keep_going")]


def in_a_constant_node() -> bytes:
    return _classifier([_constant("c", _external("c_value", "secret.txt"))])


def in_a_tensors_list_attribute() -> bytes:
    node = helper.make_node("Identity", ["x"], ["y"])
    node.attribute.append(helper.make_attribute("payload", [_external("t0", "secret.txt")]))
    return _classifier([node], last="y")


def in_a_sparse_initializer() -> bytes:
    sparse = helper.make_sparse_tensor(_external("values", "secret.txt"),
                                       numpy_helper.from_array(np.arange(8, dtype=np.int64), "indices"), [8])
    return _classifier(sparse_initializers=[sparse])


def in_a_sparse_constant() -> bytes:
    sparse = helper.make_sparse_tensor(numpy_helper.from_array(np.ones(8, dtype=np.uint8), "values"),
                                       _external("indices", "secret.txt"), [8])
    return _classifier([helper.make_node("Constant", [], ["c"], sparse_value=sparse)])


def in_an_if_branch() -> bytes:
    branch = helper.make_graph([_constant("b", _external("b_value", "secret.txt"))], "then", [],
                               [helper.make_tensor_value_info("b", TensorProto.UINT8, [8])])
    node = helper.make_node("If", ["keep_going"], ["chosen"], then_branch=branch, else_branch=branch)
    return _classifier([node], _loop_inits())


def in_a_loop_body_initializer() -> bytes:
    return _classifier(_loop(_body([], [_external("w", "secret.txt")])), _loop_inits())


def in_an_if_inside_a_loop_body() -> bytes:
    branch = helper.make_graph([_constant("b", _external("deep", "secret.txt"))], "then", [],
                               [helper.make_tensor_value_info("b", TensorProto.UINT8, [8])])
    inner = helper.make_node("If", ["cond_in"], ["chosen"], then_branch=branch, else_branch=branch)
    return _classifier(_loop(_body([inner])), _loop_inits())


def in_a_scan_body() -> bytes:
    body = helper.make_graph(
        [_constant("k", _external("scan_w", "secret.txt")), helper.make_node("Identity", ["s_in"], ["s_out"])], "scan",
        [helper.make_tensor_value_info("s_in", TensorProto.FLOAT, [30])],
        [helper.make_tensor_value_info("s_out", TensorProto.FLOAT, [30])],
    )
    return _classifier([helper.make_node("Scan", ["x"], ["y"], body=body, num_scan_inputs=1)], last="y")


def in_a_function() -> bytes:
    function = helper.make_function("local", "Leak", ["a"], ["b"], [
        _constant("k", _external("f_value", "secret.txt")), helper.make_node("Identity", ["a"], ["b"])
    ], opset_imports=[helper.make_opsetid("", 17)])
    return _classifier([helper.make_node("Leak", ["x"], ["y"], domain="local")], last="y", functions=[function])


def in_a_function_attribute_default() -> bytes:
    # The function's Constant takes its tensor by ref_attr_name; the default lives in attribute_proto.
    constant = helper.make_node("Constant", [], ["k"])
    reference = onnx.AttributeProto(name="value", ref_attr_name="value", type=onnx.AttributeProto.TENSOR)
    constant.attribute.append(reference)
    function = helper.make_function("local", "Leak", ["a"], ["b"], [constant, helper.make_node("Identity", ["a"], ["b"])],
                                    opset_imports=[helper.make_opsetid("", 17)], attributes=[])
    function.attribute_proto.append(helper.make_attribute("value", _external("f_default", "secret.txt")))
    return _classifier([helper.make_node("Leak", ["x"], ["y"], domain="local")], last="y", functions=[function])


def flagged_without_entries() -> bytes:
    return _classifier([_constant("c", _external("c", "secret.txt", entries=False))])


def entries_without_the_flag() -> bytes:
    return _classifier([_constant("c", _external("c", "secret.txt", flag=False))])


# ---------------------------------------------------------------- helpers


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def media_files() -> set[Path]:
    root = Path(settings.MEDIA_ROOT)
    return {path for path in root.rglob("*") if path.is_file()} if root.exists() else set()


def upload(user, data: bytes):
    return client_for(user).post(UPLOAD, {"file": SimpleUploadedFile("model.onnx", data)})


@pytest.fixture
def secret_in_working_directory(tmp_path, monkeypatch) -> Path:
    """The web process works in a directory holding a secret, as `make demo` does with var/secret_key."""
    (tmp_path / "secret.txt").write_bytes(SECRET)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "secret.txt"


def assert_refused_and_nothing_written(response, message: str, before: tuple) -> None:
    assert response.status_code == 422, response.content
    assert message in response.json()["detail"]
    assert response.json()["errors"][0]["field"] == "file"
    assert SECRET not in response.content and b"TOPSECRET" not in response.content
    assert b"84, 79, 80" not in response.content and b"84,79,80" not in response.content  # the secret as a shape
    assert (ModelVersion.objects.count(), AuditEvent.objects.count(), media_files()) == before


def snapshot() -> tuple:
    return ModelVersion.objects.count(), AuditEvent.objects.count(), media_files()


# ---------------------------------------------------------------- external data


@pytest.mark.parametrize("location", [
    "secret.txt", "./secret.txt", "/etc/passwd", "../secret.txt", "subdir/../../secret.txt", "*/_ORT_MEM_ADDR_/*",
], ids=["working-directory", "dot-slash", "etc-passwd", "parent", "dot-dot-inside", "memory-address"])
def test_an_initializer_with_external_data_is_refused_before_onnxruntime_reads_it(
    deployment, operator, secret_in_working_directory, location
):
    offset = id(SECRET) if "_ORT_MEM_ADDR_" in location else None
    before = snapshot()

    response = upload(operator, secret_initializer(location, offset=offset, length=len(SECRET)))

    assert_refused_and_nothing_written(response, f"The model keeps the data of tensor 'secret' {EXTERNAL}", before)


@pytest.mark.parametrize("build", [
    in_a_constant_node, in_a_tensors_list_attribute, in_a_sparse_initializer, in_a_sparse_constant, in_an_if_branch,
    in_a_loop_body_initializer, in_an_if_inside_a_loop_body, in_a_scan_body, in_a_function, in_a_function_attribute_default,
    flagged_without_entries,
    entries_without_the_flag,
], ids=lambda build: build.__name__)
def test_external_data_anywhere_in_the_model_is_refused(deployment, operator, secret_in_working_directory, build):
    before = snapshot()

    response = upload(operator, build())

    assert_refused_and_nothing_written(response, EXTERNAL, before)


def test_the_worker_runner_refuses_external_data_in_stored_bytes_too(secret_in_working_directory):
    # Stored bytes passed inspect_model at upload; the runner, made in the worker's own process, checks again.
    with pytest.raises(InvalidModelError, match="external data"):
        ModelRunner(secret_initializer("secret.txt", length=len(SECRET)), label_output="label")


def test_the_walk_finds_what_the_upload_tests_build():
    for build in (in_a_constant_node, in_a_function, in_a_function_attribute_default, in_an_if_inside_a_loop_body,
                  in_a_scan_body, in_a_sparse_constant):
        with pytest.raises(InvalidModelError, match="external data"):
            refuse_external_data(onnx.load_model_from_string(build()))
    refuse_external_data(onnx.load_model_from_string(trained_model()[0]))  # a real model passes


# ---------------------------------------------------------------- unbounded allocation and loops


def _constant_of_shape(shape: list[int]) -> bytes:
    """x plus the sum of a constant tensor of `shape`: onnxruntime allocates it at load (constant folding) or run."""
    nodes = [
        helper.make_node("ConstantOfShape", ["shape"], ["big"], value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0])),
        helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        helper.make_node("Add", ["x", "total"], ["y"]),
    ]
    return _classifier(nodes, [numpy_helper.from_array(np.array(shape, dtype=np.int64), "shape")], last="y")


def _loop_with_huge_trip_count(*, chunk_floats: int) -> bytes:
    """A Loop of 2**62 iterations. With chunk_floats, each iteration adds a scan output of that many floats."""
    if chunk_floats:
        body = _body([helper.make_node("ConstantOfShape", ["size"], ["chunk"],
                                       value=helper.make_tensor("v", TensorProto.FLOAT, [1], [1.0]))],
                     [numpy_helper.from_array(np.array([chunk_floats], dtype=np.int64), "size")])
        body.output.append(helper.make_tensor_value_info("chunk", TensorProto.FLOAT, [chunk_floats]))
        loop = helper.make_node("Loop", ["trip", "keep_going"], ["chunks"], body=body)
        nodes = [loop, helper.make_node("ReduceSum", ["chunks"], ["total"], keepdims=0)]
    else:
        body = _body([helper.make_node("Add", ["acc_in", "one"], ["acc_out"])],
                     [numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one")])
        body.input.append(helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, []))
        body.output.append(helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, []))
        nodes = [helper.make_node("Loop", ["trip", "keep_going", "zero"], ["total"], body=body)]
    initializers = [*_loop_inits(2**62), numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")]
    return _classifier([*nodes, helper.make_node("Add", ["x", "total"], ["y"])], initializers, last="y")


def test_a_constant_of_a_huge_declared_shape_is_refused_for_memory(deployment, operator):
    before = snapshot()

    response = upload(operator, _constant_of_shape([1 << 16, 1 << 16]))  # 16 GiB of float32

    assert_refused_and_nothing_written(response, "The model needs more than 2,048 MB of memory", before)


def test_the_memory_cap_not_the_machine_is_what_refuses(deployment, operator, settings):
    # 1 GiB would fit on this machine; the smoke run's cap is lowered below it.
    settings.MODEL_SMOKE_MEMORY_BYTES = 256 * 1024 * 1024
    before = snapshot()

    response = upload(operator, _constant_of_shape([1 << 28]))

    assert_refused_and_nothing_written(response, "The model needs more than 256 MB of memory", before)


def test_an_expand_to_a_huge_shape_is_refused_for_memory(deployment, operator):
    nodes = [helper.make_node("Expand", ["x", "shape"], ["wide"]), helper.make_node("ReduceSum", ["wide"], ["total"], keepdims=0),
             helper.make_node("Add", ["x", "total"], ["y"])]
    before = snapshot()

    response = upload(operator, _classifier(nodes, [numpy_helper.from_array(np.array([1 << 24, 2, 30], dtype=np.int64), "shape")], last="y"))

    assert_refused_and_nothing_written(response, "needs more than 2,048 MB of memory", before)


def test_a_loop_with_a_huge_trip_count_that_collects_outputs_is_refused_for_memory(deployment, operator, settings):
    settings.MODEL_SMOKE_MEMORY_BYTES = 128 * 1024 * 1024  # reached after ~128 iterations of 1 MiB
    before = snapshot()

    response = upload(operator, _loop_with_huge_trip_count(chunk_floats=262_144))

    assert_refused_and_nothing_written(response, "needs more than 128 MB of memory", before)


def test_a_loop_with_a_huge_trip_count_that_only_computes_is_stopped_at_the_timeout(deployment, operator, settings):
    settings.MODEL_SMOKE_TIMEOUT_SECONDS = 2
    before = snapshot()

    response = upload(operator, _loop_with_huge_trip_count(chunk_floats=0))

    assert_refused_and_nothing_written(response, "did not load and predict two rows within 2 s", before)


def test_a_refused_model_does_not_stop_the_next_upload(deployment, operator, settings):
    settings.MODEL_SMOKE_TIMEOUT_SECONDS = 2
    upload(operator, _loop_with_huge_trip_count(chunk_floats=0))

    response = upload(operator, trained_model(C=0.5)[0])

    assert response.status_code == 201, response.content


# ---------------------------------------------------------------- the engine's words stay in our log


def test_a_model_that_fails_its_test_run_gets_our_message_not_the_engines(deployment, operator):
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["bad"]), helper.make_node("Identity", ["x"], ["y"])]
    model = _classifier(nodes, [numpy_helper.from_array(np.array([7, 7, 7], dtype=np.int64), "shape")], last="y")
    before = snapshot()

    response = upload(operator, model)

    assert_refused_and_nothing_written(response, "The model fails on a test input of two rows of zeros", before)
    assert "raised Fail)" in response.json()["detail"]  # the kind of error, never its text
    assert b"requested shape" not in response.content and b"7,7,7" not in response.content


def test_a_model_onnxruntime_cannot_load_gets_our_message_not_the_engines(deployment, operator):
    model = _classifier([helper.make_node("Steal", ["x"], ["y"], domain="local")], last="y")  # no such operator
    before = snapshot()

    response = upload(operator, model)

    assert_refused_and_nothing_written(response, "cannot load the model (", before)
    assert b"Steal" not in response.content  # the engine's text names the op; ours does not


# ---------------------------------------------------------------- metadata


@pytest.mark.parametrize(("key", "value", "message"), [
    ("feature_names", "not json", "The model's metadata 'feature_names' is not valid JSON"),
    ("class_labels", "[\"0\", ", "The model's metadata 'class_labels' is not valid JSON"),
    ("feature_names", "[" * 100_000 + "]" * 100_000, "The model's metadata 'feature_names' is not valid JSON"),
    ("feature_names", '{"f0": 1}', "The model's metadata 'feature_names' must be a JSON list of names"),
    ("class_labels", '"01"', "The model's metadata 'class_labels' must be a JSON list of names"),
    ("class_labels", "[[0], [1]]", "The model's metadata 'class_labels' must be a JSON list of names"),
    ("feature_names", "[null, true]", "The model's metadata 'feature_names' must be a JSON list of names"),
], ids=["feature-names-not-json", "class-labels-truncated", "deeply-nested", "feature-names-an-object",
        "class-labels-a-string", "class-labels-nested", "feature-names-null-and-bool"])
def test_bad_metadata_json_is_a_422_with_a_clear_message(deployment, operator, key, value, message):
    before = snapshot()

    response = upload(operator, _classifier(metadata={key: value}))

    assert_refused_and_nothing_written(response, message, before)


def test_good_metadata_still_passes(deployment, operator):
    import json

    response = upload(operator, _classifier(metadata={"feature_names": json.dumps(FEATURES), "class_labels": "[0, 1]"}))

    assert response.status_code == 201, response.content


def test_the_smoke_run_of_a_real_model_reads_its_signature_out_of_process():
    signature = inspect_model(trained_model()[0], expected_features=30)

    assert (signature.input_name, signature.n_features, signature.label_output) == ("X", 30, "label")
