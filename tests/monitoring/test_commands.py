"""Management commands: each does its one thing, and a refusal is a CommandError that leaves nothing behind."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.test import RequestFactory

from monitoring import services
from monitoring.models import Dataset, Deployment, Membership, ModelVersion, PredictionBatch, Team
from monitoring.services import ingestion
from tests.conftest import FEATURES, breast_cancer_split, trained_model


def run(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def write(tmp_path: Path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return str(path)


def csv_text(header: list[str], rows: list[list]) -> str:
    return "\n".join([",".join(header)] + [",".join(map(str, row)) for row in rows]) + "\n"


# ---------------------------------------------------------------- create_deployment


def test_create_deployment_from_feature_and_class_lists(db):
    out, _ = run("create_deployment", "--team", "Fraud", "--name", "Card fraud", "--features", "amount, hour,merchant",
                 "--classes", "legit,fraud", "--threshold", "f1_macro=0.8")

    deployment = Deployment.objects.get(slug="card-fraud")
    assert (deployment.team.slug, deployment.feature_names, deployment.class_labels) == ("fraud", ["amount", "hour", "merchant"], ["legit", "fraud"])
    assert deployment.metric_thresholds == {"f1_macro": 0.8}
    assert "Created deployment 'card-fraud'" in out


def test_create_deployment_reads_the_schema_from_an_onnx_file(db, tmp_path):
    model = write(tmp_path, "model.onnx", trained_model()[0])

    run("create_deployment", "--team", "Risk models", "--name", "Tumour", "--slug", "tumour-2", "--features-from-onnx", model)

    deployment = Deployment.objects.get(slug="tumour-2")
    assert (deployment.feature_names, deployment.class_labels) == (FEATURES, ["0", "1"])


def test_create_deployment_with_a_taken_slug_fails_and_writes_nothing(deployment):
    with pytest.raises(CommandError, match="slug 'tumour' already exists"):
        run("create_deployment", "--team", "Brand new team", "--name", "Again", "--slug", "tumour", "--features", "a", "--classes", "x,y")

    assert not Team.objects.filter(slug="brand-new-team").exists()
    assert Deployment.objects.count() == 1


def test_create_deployment_with_a_text_file_as_model_fails(db, tmp_path):
    with pytest.raises(CommandError, match="not a valid ONNX model"):
        run("create_deployment", "--team", "T", "--name", "N", "--features-from-onnx", write(tmp_path, "x.onnx", "hello"))

    assert not Deployment.objects.exists()


# ---------------------------------------------------------------- upload_version


def test_upload_version_adds_a_candidate_with_its_recipe(deployment, tmp_path):
    onnx_bytes, recipe = trained_model(C=0.5)

    out, _ = run("upload_version", "tumour", write(tmp_path, "m.onnx", onnx_bytes), "--recipe", write(tmp_path, "m.skops", recipe), "--notes", "C=0.5")

    version = deployment.versions.get(number=2)
    assert (version.status, version.notes, bool(version.recipe_sha256)) == (ModelVersion.Status.CANDIDATE, "C=0.5", True)
    assert "Registered tumour v2 (candidate)" in out


def test_upload_version_of_a_text_file_fails_and_stores_nothing(deployment, tmp_path):
    with pytest.raises(CommandError, match="not a valid ONNX model"):
        run("upload_version", "tumour", write(tmp_path, "notes.txt", "not a model"))

    assert deployment.versions.count() == 1


def test_upload_version_to_an_unknown_deployment_fails(db, tmp_path):
    with pytest.raises(CommandError, match="No deployment with the slug 'nope'"):
        run("upload_version", "nope", write(tmp_path, "m.onnx", trained_model()[0]))


# ---------------------------------------------------------------- upload_dataset


def test_upload_dataset_registers_a_labelled_evaluation_set(deployment, tmp_path):
    _, _, X_test, y_test = breast_cancer_split()
    # Columns in another order than the schema: the header decides.
    header = ["label", *reversed(FEATURES)]
    rows = [[int(y), *map(float, reversed(x))] for x, y in zip(X_test[:40], y_test[:40])]

    out, _ = run("upload_dataset", "tumour", write(tmp_path, "holdout.csv", csv_text(header, rows)), "--kind", "evaluation")

    deployment.refresh_from_db()
    dataset = deployment.evaluation_dataset
    assert (dataset.name, dataset.n_rows, dataset.has_labels) == ("holdout.csv", 40, True)
    X, y = services.dataset_load(dataset)
    assert X[0] == pytest.approx(X_test[0], rel=1e-6)
    assert list(y[:3]) == [str(v) for v in y_test[:3]]
    assert "40 rows, with labels" in out


def test_upload_dataset_names_the_bad_line_and_column_and_stores_nothing(deployment, tmp_path):
    rows = [[1.0] * 30 for _ in range(4)]
    rows[2][29] = "nan"
    before = Dataset.objects.count()

    with pytest.raises(CommandError, match=r"Line 4, column 'f29': 'nan' is not finite"):
        run("upload_dataset", "tumour", write(tmp_path, "ref.csv", csv_text(FEATURES, rows)), "--kind", "reference")

    assert Dataset.objects.count() == before


def test_an_evaluation_set_without_labels_is_refused(deployment, tmp_path):
    before = Dataset.objects.count()

    with pytest.raises(CommandError, match="An evaluation dataset needs labels"):
        run("upload_dataset", "tumour", write(tmp_path, "e.csv", csv_text(FEATURES, [[1.0] * 30])), "--kind", "evaluation")

    assert Dataset.objects.count() == before


# ---------------------------------------------------------------- create_api_token


def test_create_api_token_prints_a_working_token_once(deployment):
    out, err = run("create_api_token", "tumour", "--name", "scorer")

    token = services.token_authenticate(raw=out.strip())
    assert token is not None and (token.name, token.deployment) == ("scorer", deployment)
    assert "shown only once" in err and out.strip() not in err


def test_create_api_token_for_an_unknown_deployment_fails(db):
    with pytest.raises(CommandError, match="No deployment with the slug 'ghost'"):
        run("create_api_token", "ghost")


# ---------------------------------------------------------------- create_user


def test_create_user_with_a_password_file(team, tmp_path):
    out, _ = run("create_user", "nina", "--team", team.slug, "--role", "approver", "--password-file", write(tmp_path, "pw", "a long passphrase here\n"))

    # With a request, as a login has one: django-axes (dashboard/settings.py) refuses to judge a login without.
    user = authenticate(RequestFactory().post("/login/"), username="nina", password="a long passphrase here")
    assert user is not None
    assert Membership.objects.get(user=user).team == team and Membership.objects.get(user=user).role == "approver"
    assert "a long passphrase here" not in out


def test_create_user_prints_a_random_password_once(db):
    out, _ = run("create_user", "sam", "--team", "Ops", "--role", "viewer")

    password = out.split("Password (shown once): ")[1].strip()
    assert authenticate(RequestFactory().post("/login/"), username="sam", password=password) is not None
    assert Membership.objects.get(user__username="sam").team.slug == "ops"


def test_create_user_with_a_weak_password_fails_and_writes_nothing(db, tmp_path):
    with pytest.raises(CommandError, match="too weak"):
        run("create_user", "sam", "--team", "Fresh team", "--role", "viewer", "--password-file", write(tmp_path, "pw", "abc"))

    assert not User.objects.filter(username="sam").exists()
    assert not Team.objects.filter(slug="fresh-team").exists()


def test_create_user_that_exists_fails(approver):
    with pytest.raises(CommandError, match="'alice' already exists"):
        run("create_user", "alice", "--team", "Risk models", "--role", "viewer")

    assert Membership.objects.filter(user=approver).count() == 1


# ---------------------------------------------------------------- upload_predictions


def test_upload_predictions_loads_a_file_once_and_then_its_labels(deployment, tmp_path):
    _, _, X_test, _ = breast_cancer_split()
    header = ["id", "timestamp", "predicted_label", *FEATURES]
    rows = [[f"c-{i}", "2025-03-01T12:00:00Z", "1", *X_test[i]] for i in range(30)]
    traffic = write(tmp_path, "traffic.csv", csv_text(header, rows))

    out, _ = run("upload_predictions", "tumour", traffic)
    again, _ = run("upload_predictions", "tumour", traffic)
    labelled, _ = run("upload_predictions", "tumour", write(tmp_path, "labels.csv", "id,label\nc-1,0\nc-2,1\n"), "--labels")

    assert "Stored 30 predictions" in out and "nothing was stored again" in again
    assert "Labelled 2 of tumour's predictions" in labelled
    assert deployment.predictions.count() == 30
    assert deployment.predictions.filter(label_index__isnull=False).count() == 2


def test_upload_predictions_indexes_a_large_file_before_it_returns(deployment, tmp_path, monkeypatch):
    monkeypatch.setattr(ingestion, "INDEX_IN_REQUEST_UP_TO", 10)  # 30 rows: the large-batch path
    _, _, X_test, _ = breast_cancer_split()
    header = ["id", "timestamp", "predicted_label", *FEATURES]
    traffic = write(tmp_path, "traffic.csv", csv_text(header, [[f"c-{i}", "2025-03-01T12:00:00Z", "1", *X_test[i]] for i in range(30)]))
    clash = write(tmp_path, "clash.csv", csv_text(header, [[f"c-{i}", "2025-03-01T12:00:00Z", "1", *X_test[i]] for i in range(25, 40)]))

    out, _ = run("upload_predictions", "tumour", traffic)
    with pytest.raises(CommandError, match="already stored by another batch"):
        run("upload_predictions", "tumour", clash)

    assert "Indexed its 30 ids" in out
    assert deployment.predictions.count() == 30
    assert PredictionBatch.objects.get(state=PredictionBatch.State.REJECTED).n_rows == 15


def test_upload_predictions_refuses_a_bad_file_naming_row_and_column(deployment, tmp_path):
    header = ["id", "timestamp", "predicted_label", *FEATURES]
    rows = [["a", "2025-03-01T12:00:00Z", "7", *([1.0] * len(FEATURES))]]

    with pytest.raises(CommandError, match="predicted_label"):
        run("upload_predictions", "tumour", write(tmp_path, "bad.csv", csv_text(header, rows)))

    assert not deployment.predictions.exists()
