"""watchkeeper_client against the live server on the real stack: hot swaps after an approval, refused models,
an outage with buffered predictions, the fallback file and labels."""

from __future__ import annotations

import base64
import threading
import time

import numpy as np
import pytest
import watchkeeper_client
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from monitoring import indexing, services
from monitoring.models import PredictionBatch, ServingInstance
from tests.client.conftest import stored_rows
from tests.client.gateway import raw_public_key
from tests.conftest import breast_cancer_split, trained_model, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

X_TEST = breast_cancer_split()[2]


def _runner(gateway, token, **options):
    wk = watchkeeper_client.Deployment(gateway.url, token, "tumour", instance=options.pop("instance", "test-1"))
    options.setdefault("poll_wait", 5)
    options.setdefault("flush_interval", 0.2)
    return wk, wk.model(**options)


def test_an_approval_swaps_the_model_while_requests_keep_succeeding(gateway, token, deployment, candidate, approver):
    wk, model = _runner(gateway, token)
    assert model.version == 1
    errors: list[BaseException] = []
    seen: list[list[int]] = [[] for _ in range(4)]
    stop = threading.Event()

    def serve(worker: int) -> None:
        rng = np.random.default_rng(worker)
        while not stop.is_set():
            rows = X_TEST[rng.integers(0, len(X_TEST), size=8)]
            try:
                result = model.predict(rows)
                assert len(result.labels) == 8 and result.probabilities.shape == (8, 2)
                seen[worker].append(result.version)
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=serve, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    services.version_approve(version=candidate, by=approver, comment="better calibrated")
    wait_for(lambda: model.version == 2, timeout=10, interval=0.05)
    time.sleep(0.3)
    stop.set()
    for thread in threads:
        thread.join()

    assert errors == []
    for versions in seen:
        assert versions[0] == 1 and versions[-1] == 2
        assert versions == sorted(versions), "a thread went back to the old model after the swap"
    assert model.swaps == 1
    # The next poll reports the new version: the deployment page's fleet shows this instance on v2 (the server
    # writes an unchanged instance at most every SERVING_SEEN_WRITE_SECONDS, hence the wait).
    wait_for(lambda: ServingInstance.objects.filter(instance_id="test-1", version_reported=2).exists(), timeout=30)
    total = sum(len(versions) for versions in seen) * 8
    assert model.flush(timeout=30)
    assert stored_rows(deployment) == total
    assert model.stats.sent_rows == total and model.stats.dropped_rows == 0 and model.stats.rejected_rows == 0
    # Each row is credited to the version that made it, not to the one active when its batch arrived.
    made_by = {n: 8 * sum(v.count(n) for v in seen) for n in (1, 2)}
    stored_by = {
        n: sum(PredictionBatch.objects.filter(deployment=deployment, version__number=n).values_list("n_rows", flat=True))
        for n in (1, 2)
    }
    assert stored_by == made_by and made_by[1] > 0 and made_by[2] > 0
    wk.close()


def test_a_model_altered_in_transit_is_refused_and_the_old_one_keeps_serving(gateway, token, deployment, candidate, approver):
    wk, model = _runner(gateway, token)
    gateway.tamper_models = True
    services.version_approve(version=candidate, by=approver, comment="ship it")
    wait_for(lambda: model.last_error and "sha256" in model.last_error, timeout=10, interval=0.05)
    assert model.version == 1 and model.swaps == 0
    assert model.predict(X_TEST[:5]).version == 1
    wk.close()


def test_a_forged_signature_is_refused_and_the_old_one_keeps_serving(gateway, token, deployment, candidate, approver):
    wk, model = _runner(gateway, token)
    gateway.forge_signatures = True
    services.version_approve(version=candidate, by=approver, comment="ship it")
    wait_for(lambda: model.last_error and "signature" in model.last_error, timeout=10, interval=0.05)
    assert model.version == 1 and model.swaps == 0
    assert model.predict(X_TEST[:5]).version == 1
    wk.close()


def test_a_model_signed_by_another_key_than_the_pinned_one_is_never_loaded(gateway, token, deployment):
    other = base64.b64encode(raw_public_key(Ed25519PrivateKey.generate())).decode()
    wk = watchkeeper_client.Deployment(gateway.url, token, "tumour", instance="pinned", signing_key=other)
    with pytest.raises(watchkeeper_client.NoModel, match="not the trusted key"):
        wk.model()
    assert gateway.served_models == 1  # downloaded, checked, refused
    wk.close()


def test_predictions_buffered_while_the_server_is_down_are_stored_once_when_it_is_back(gateway, token, deployment):
    wk, model = _runner(gateway, token)
    ids = [f"req-{i}" for i in range(400)]
    model.predict(X_TEST[:100], ids=ids[:100])
    assert model.flush(timeout=10)
    gateway.down()
    for start in range(100, 400, 50):
        model.predict(X_TEST[: 50], ids=ids[start:start + 50])
    wait_for(lambda: model.stats.retries >= 2, timeout=10, interval=0.05)
    assert stored_rows(deployment) == 100
    gateway.up()
    assert model.flush(timeout=30)
    assert model.stats.sent_rows == 400 and model.stats.dropped_rows == 0
    assert stored_rows(deployment) == 400
    wk.close()


def test_a_long_outage_drops_and_counts_what_the_buffer_cannot_hold(gateway, token, deployment):
    wk, model = _runner(gateway, token, buffer_rows=200, flush_rows=100)
    gateway.down()
    for _ in range(10):
        model.predict(X_TEST[:50])
    assert model.stats.dropped_rows == 300
    gateway.up()
    assert model.flush(timeout=30)
    assert stored_rows(deployment) == 200 and model.stats.sent_rows == 200
    wk.close()


def test_close_flushes_every_buffered_prediction(gateway, token, deployment):
    with watchkeeper_client.Deployment(gateway.url, token, "tumour", instance="closing") as wk:
        model = wk.model(flush_interval=60, flush_rows=10_000)  # neither would flush before close
        for _ in range(7):
            model.predict(X_TEST[:30])
    assert stored_rows(deployment) == 210
    assert model.stats.sent_rows == 210


def test_the_fallback_file_serves_until_the_server_answers(gateway, token, deployment, candidate, approver, tmp_path):
    fallback = tmp_path / "v1.onnx"
    fallback.write_bytes(trained_model()[0])
    gateway.down()
    wk = watchkeeper_client.Deployment(gateway.url, token, "tumour", instance="fallback")
    with pytest.raises(watchkeeper_client.NoModel):
        wk.model(start_timeout=2)
    model = wk.model(fallback_path=fallback, fallback_version=1, start_timeout=2, poll_wait=5, flush_interval=0.2)
    assert model.version == 1 and model.last_error
    assert len(model.predict(X_TEST[:20]).labels) == 20
    gateway.up()
    services.version_approve(version=candidate, by=approver, comment="ship it")
    wait_for(lambda: model.version == 2, timeout=20, interval=0.1)
    assert model.flush(timeout=30)
    assert stored_rows(deployment) == 20
    wk.close()


def test_labels_reach_the_predictions_logged_with_their_ids(gateway, token, deployment):
    wk, model = _runner(gateway, token)
    ids = [f"order-{i}" for i in range(25)]
    result = model.predict(X_TEST[:25], ids=ids)
    assert model.flush(timeout=10)
    answer = wk.labels({i: label for i, label in zip(ids, result.labels)})
    assert answer == {"received": 25, "updated": 25}
    with pytest.raises(watchkeeper_client.Refused) as refused:
        wk.labels({"never-logged": "1"})
    assert refused.value.status == 422
    wk.close()
    assert gateway.deprecated_paths == []  # predictions, labels and serving all on /api/v1/


def test_a_wrong_token_is_refused_at_start(gateway, deployment):
    wk = watchkeeper_client.Deployment(gateway.url, "wk_nope_nope", "tumour", instance="bad")
    with pytest.raises(watchkeeper_client.Refused) as refused:
        wk.model(fallback_path="/nonexistent.onnx")
    assert refused.value.status == 401
    assert not PredictionBatch.objects.exists()
    wk.close()


def test_columnar_and_json_batches_store_the_same_predictions_credited_to_the_serving_version(gateway, token, deployment):
    stored = {}
    for columnar in (True, False):
        wk, model = _runner(gateway, token, instance=f"format-{columnar}", columnar=columnar)
        ids = [f"{columnar}-{i}" for i in range(40)]
        result = model.predict(X_TEST[:40], ids=ids)
        assert model.flush(timeout=20)
        wk.close()
        batch = PredictionBatch.objects.filter(deployment=deployment).order_by("-pk").first()
        stored[columnar] = (batch.version.number, batch.n_rows, bytes(batch.features), bytes(batch.predicted),
                            bytes(batch.probabilities))
        assert model.stats.sent_rows == 40 and model.stats.rejected_rows == 0
        services.batches_index(deployment_id=deployment.pk)  # the indexer's part (Prefer: respond-async), now
        assert list(deployment.predictions.filter(request_id__in=ids).values_list("request_id", flat=True).order_by("request_id")) == sorted(ids)
        assert result.version == 1
    assert stored[True] == stored[False]
    assert stored[True][:2] == (1, 40)


def test_one_row_and_64_row_calls_with_and_without_ids_are_stored_once_each_row_with_its_own_id(gateway, token, deployment):
    # The caller's thread only keeps references; the sender cuts calls across batches (max 10,000 rows) and
    # generates ids for runs of calls without them. Every row must arrive once, beside its own features.
    wk, model = _runner(gateway, token, instance="mixed", flush_interval=60, flush_rows=20_000, buffer_rows=20_000)
    sent: dict[str, np.ndarray] = {}
    calls = 0
    while len(sent) < 10_500:
        rows = X_TEST[calls % 50: calls % 50 + (64 if calls % 3 == 0 else 1)]
        if calls % 5 == 0:
            ids = [f"call-{calls}-{i}" for i in range(len(rows))]
            model.predict(rows, ids=ids)
            sent.update(zip(ids, rows))
        else:
            model.predict(rows)
            sent.update((f"generated-{calls}-{i}", row) for i, row in enumerate(rows))
        calls += 1
    assert model.flush(timeout=60)
    batches = list(PredictionBatch.objects.filter(deployment=deployment))
    assert sorted(b.n_rows for b in batches) == [len(sent) - 10_000, 10_000]  # cut at 10,000 rows
    ids_of = {b.pk: bytes(b.request_ids).decode().split("\n") for b in batches}
    # Two senders may encode the two batches in either order; the first batch holds the first calls.
    batches.sort(key=lambda b: "call-0-0" not in ids_of[b.pk])
    stored_ids = [i for b in batches for i in ids_of[b.pk]]
    features = np.concatenate([np.frombuffer(bytes(b.features), np.float32).reshape(b.n_rows, -1) for b in batches])
    assert len(stored_ids) == len(set(stored_ids)) == len(sent) == model.stats.sent_rows
    np.testing.assert_array_equal(features, np.stack(list(sent.values())))  # every row, in call order
    for stored_id, sent_id in zip(stored_ids, sent):  # each beside its own id, or one the client made
        assert stored_id == sent_id if sent_id.startswith("call-") else stored_id.startswith("mixed-")
    wk.close()


def test_the_client_leaves_its_ids_to_the_indexer_unless_told_to_have_them_indexed_in_the_request(
    gateway, token, deployment
):
    import redis
    from django.conf import settings

    # An indexer counts as queued: no task is published, so no worker of the session indexes behind the test.
    flag = indexing.pending_flag(deployment.pk)
    redis.Redis.from_url(settings.REDIS_URL).set(flag, 1, ex=60)
    try:
        states = {}
        for index_in_request in (False, True):
            wk, model = _runner(gateway, token, instance=f"index-{index_in_request}", index_in_request=index_in_request)
            model.predict(X_TEST[:10], ids=[f"{index_in_request}-{i}" for i in range(10)])
            assert model.flush(timeout=20)
            wk.close()
            states[index_in_request] = PredictionBatch.objects.filter(deployment=deployment).latest("pk").state
            assert model.stats.sent_rows == 10
        labelled = watchkeeper_client.Deployment(gateway.url, token, "tumour", instance="labeller")
        answer = labelled.labels({"False-3": "1", "True-3": "0"})
        labelled.close()
    finally:
        redis.Redis.from_url(settings.REDIS_URL).delete(flag)

    assert states == {False: PredictionBatch.State.PENDING, True: PredictionBatch.State.INDEXED}
    # Labels for the pending batch's ids still join: the label request indexes it first.
    assert answer == {"received": 2, "updated": 2}
    assert dict(deployment.predictions.filter(label_index__isnull=False).values_list("request_id", "label_index")) == {
        "False-3": 1, "True-3": 0}
