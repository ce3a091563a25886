"""monitoring/background.py: the domain names a task and never imports it."""

import pytest
from django.db import transaction

from monitoring import background


def test_an_unknown_task_name_fails_in_the_caller_not_after_the_commit(db):
    with pytest.raises(background.UnknownTask, match=r"workers\.tasks\.no_such_task"):
        background.enqueue("workers.tasks.no_such_task", 1)


def test_every_task_the_domain_names_is_registered_in_this_process():
    # dashboard/apps.py imports workers.tasks when Django starts, so a web process or a command finds them.
    for name in (
        "workers.tasks.build_reference_profile_task", "workers.tasks.index_batches_task",
        "workers.tasks.run_maintenance_job_task", "workers.tasks.compare_versions_task",
    ):
        assert background.task_named(name).name == name


def test_a_task_is_queued_when_the_transaction_commits_and_runs_in_process_when_eager(
    db, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    ran = []
    task = background.task_named("workers.tasks.index_batches_task")
    monkeypatch.setattr(task, "run", lambda deployment_id: ran.append(deployment_id))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            background.enqueue("workers.tasks.index_batches_task", 7)
            assert ran == []
    assert ran == [7]
