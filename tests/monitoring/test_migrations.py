"""Migrations that change what existing rows mean, run for real: back to before them, rows in, forward again."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = pytest.mark.django_db(transaction=True)


def migrate(target: list[tuple[str, str]]):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


@pytest.fixture
def latest():
    """The newest migrations; the database is put back there whatever the test does."""
    leaves = MigrationExecutor(connection).loader.graph.leaf_nodes()
    yield leaves
    migrate(leaves)


def test_batches_stored_before_the_index_split_count_as_indexed_and_new_ones_start_pending(latest):
    old = migrate([("monitoring", "0006_ingest_speed")])
    team = old.get_model("monitoring", "Team").objects.create(name="Old", slug="old")
    deployment = old.get_model("monitoring", "Deployment").objects.create(
        team=team, name="Old", slug="old", feature_names=["a"], class_labels=["0", "1"]
    )
    now = timezone.now()
    # What pre-0007 code wrote: no state column at all (its index rows went in with the batch).
    old.get_model("monitoring", "PredictionBatch").objects.create(
        deployment=deployment, idempotency_key="k", n_rows=1, n_features=1, t_min=now, t_max=now,
        timestamps_us=b"", features=b"", predicted=b"", request_ids=b"r",
    )

    new = migrate(latest)

    Batch = new.get_model("monitoring", "PredictionBatch")
    assert list(Batch.objects.values_list("state", flat=True)) == ["indexed"]
    assert Batch._meta.get_field("state").default == "pending"
