"""The audit log cannot be changed: not by TRUNCATE, not by the app's database role, not through the admin.

The app-role tests connect to the test database as a real second role, the way web and workers connect under
`make demo` and compose, after `manage.py grant_app_role` (and `docker/entrypoint.sh migrate`) set it up.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg2
import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.urls import reverse

from monitoring import services
from monitoring.models import Alert, ApiToken, AuditEvent, Dataset, MaintenanceJob, Membership
from tests.conftest import ROOT

AUDIT = AuditEvent._meta.db_table


def _database() -> dict:
    return connection.settings_dict


@contextmanager
def _session(role: str, name: str | None = None, *, autocommit: bool = False) -> Iterator:
    """A cursor on its own connection as `role` (the local cluster trusts 127.0.0.1), always closed after."""
    settings = _database()
    conn = psycopg2.connect(
        host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432, dbname=name or settings["NAME"], user=role
    )
    conn.autocommit = autocommit
    try:
        with conn.cursor() as cursor:
            yield cursor
        if not autocommit:
            conn.commit()
    finally:
        conn.close()


def _refused(cursor, sql: str) -> str:
    """Run `sql` as the connection's role; return Postgres's refusal (the statement must fail)."""
    cursor.execute("SAVEPOINT attempt")
    try:
        cursor.execute(sql)
    except psycopg2.Error as exc:
        cursor.execute("ROLLBACK TO SAVEPOINT attempt")
        return exc.pgerror or str(exc)
    raise AssertionError(f"{sql!r} was allowed")


def _owner() -> str:
    return _database()["USER"] or "postgres"


def _drop_role(role: str, databases: list[str]) -> None:
    for name in databases:
        with _session(_owner(), name) as cursor:
            cursor.execute(f'DROP OWNED BY "{role}"')  # its grants and default privileges there
    with _session(_owner(), "postgres", autocommit=True) as cursor:
        cursor.execute(f'DROP ROLE IF EXISTS "{role}"')


def _insert_event(cursor, action: str) -> int:
    cursor.execute(
        f"INSERT INTO {AUDIT} (at, actor_label, action, object_type, object_id, comment) "
        "VALUES (now(), 'app', %s, '', '', 'original') RETURNING id",
        [action],
    )
    return cursor.fetchone()[0]


# ---------------------------------------------------------------- the trigger


def test_truncating_the_audit_log_is_refused_even_for_the_owner(deployment):
    events = AuditEvent.objects.count()
    assert events > 0
    with connection.cursor() as cursor:
        # The test database is marked disposable (tests/conftest.py); unmark it for this test's transaction only.
        cursor.execute(f'ALTER DATABASE "{_database()["NAME"]}" RESET watchkeeper.audit_truncate')
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # TRUNCATE refuses to run past pending FK checks
        with pytest.raises(DatabaseError, match="monitoring_auditevent is append-only: TRUNCATE refused"):
            with transaction.atomic():
                cursor.execute(f"TRUNCATE {AUDIT} CASCADE")

    assert AuditEvent.objects.count() == events


def test_a_session_cannot_mark_the_database_disposable_for_itself(deployment):
    events = AuditEvent.objects.count()
    with connection.cursor() as cursor:
        cursor.execute(f'ALTER DATABASE "{_database()["NAME"]}" RESET watchkeeper.audit_truncate')
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET watchkeeper.audit_truncate = 'allow'")  # any session may SET a custom setting
        with pytest.raises(DatabaseError, match="append-only: TRUNCATE refused"), transaction.atomic():
            cursor.execute(f"TRUNCATE {AUDIT} CASCADE")
        cursor.execute("RESET watchkeeper.audit_truncate")

    assert AuditEvent.objects.count() == events


# ---------------------------------------------------------------- the app's database role


@pytest.fixture
def app_role(transactional_db):
    """A login role set up by `manage.py grant_app_role` on the test database, committed so that a second
    connection sees it; dropped afterwards (roles belong to the whole server)."""
    role = f"wk_app_{_database()['NAME']}"[:63]
    settings = _database()
    url = f"postgres://{role}@{settings['HOST'] or '127.0.0.1'}:{settings['PORT'] or 5432}/{settings['NAME']}"
    out = io.StringIO()
    call_command("grant_app_role", "--app-url", url, stdout=out)
    assert f"on {AUDIT} only SELECT and INSERT" in out.getvalue()
    yield role
    _drop_role(role, [settings["NAME"]])


def test_the_app_role_may_add_and_read_audit_events_but_not_change_truncate_or_unprotect_them(app_role, deployment):
    with _session(app_role) as cursor:
        inserted = _insert_event(cursor, "test.insert")
        cursor.execute(f"SELECT count(*) FROM {AUDIT}")
        count = cursor.fetchone()[0]

        refusals = [
            _refused(cursor, f"UPDATE {AUDIT} SET comment = 'rewritten' WHERE id = {inserted}"),
            _refused(cursor, f"DELETE FROM {AUDIT} WHERE id = {inserted}"),
            _refused(cursor, f"TRUNCATE {AUDIT}"),
        ]
        assert all(f"permission denied for table {AUDIT}" in r for r in refusals), refusals
        for sql in (
            f"DROP TRIGGER monitoring_auditevent_append_only ON {AUDIT}",
            f"DROP TRIGGER monitoring_auditevent_no_truncate ON {AUDIT}",
            f"ALTER TABLE {AUDIT} DISABLE TRIGGER ALL",
            f"DROP TABLE {AUDIT} CASCADE",
        ):
            assert re.search(f"must be owner of (table|relation) {AUDIT}", _refused(cursor, sql)), sql
        assert "must be owner of function watchkeeper_audit_append_only" in _refused(
            cursor, "DROP FUNCTION watchkeeper_audit_append_only() CASCADE"
        )
        # Nor can it mark the database disposable, which would let the owner's TRUNCATE through.
        assert "must be owner of database" in _refused(
            cursor, f"ALTER DATABASE \"{_database()['NAME']}\" RESET watchkeeper.audit_truncate"
        )
        assert "permission denied for table django_migrations" in _refused(
            cursor, "DELETE FROM django_migrations WHERE app = 'monitoring'"
        )

        # Nothing changed: the same rows, and the inserted one as written.
        cursor.execute(f"SELECT count(*), max(comment) FILTER (WHERE id = {inserted}) FROM {AUDIT}")
        assert cursor.fetchone() == (count, "original")
        # Everything else the app does stays possible: it writes the other tables as before.
        cursor.execute("UPDATE monitoring_deployment SET description = 'changed by the app' WHERE slug = 'tumour'")
        assert cursor.rowcount == 1
    assert AuditEvent.objects.filter(action="test.insert").count() == 1


def test_grant_app_role_refuses_the_owner_or_a_superuser_as_the_app_role(transactional_db):
    settings = _database()
    owner_url = f"postgres://{settings['USER']}@127.0.0.1:5432/{settings['NAME']}"

    with pytest.raises(CommandError, match="must not be the owner"):
        call_command("grant_app_role", "--app-url", owner_url, stdout=io.StringIO())
    with pytest.raises(CommandError, match="is not a plain role name"):
        call_command("grant_app_role", "--app-url", "postgres://app%22%3B%20drop@127.0.0.1/x", stdout=io.StringIO())


@pytest.mark.django_db(transaction=True)
def test_entrypoint_migrate_migrates_as_the_owner_and_leaves_the_app_role_unable_to_change_the_log(tmp_path):
    """`make demo` and compose: DATABASE_URL names the app role, MIGRATE_DATABASE_URL the owner."""
    name = f"wk_entry_{uuid.uuid4().hex[:8]}"
    role = f"wk_app_{name}"
    owner = _owner()
    base = f"127.0.0.1:{_database()['PORT'] or 5432}"
    with _session(owner, "postgres", autocommit=True) as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    env = dict(os.environ)
    env.update(
        DATABASE_URL=f"postgres://{role}@{base}/{name}", MIGRATE_DATABASE_URL=f"postgres://{owner}@{base}/{name}",
        STATIC_ROOT=str(tmp_path / "static"), MEDIA_ROOT=str(tmp_path / "media"), SECRET_KEY="test-only",
        PATH=f"{ROOT / '.venv' / 'bin'}:{env['PATH']}",
    )
    try:
        done = subprocess.run(["bash", "docker/entrypoint.sh", "migrate"], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        assert f"Role '{role}' may use '{name}'" in done.stdout

        # The app role connects, as the web process would, and can write but not rewrite history.
        check = subprocess.run(
            ["python", "manage.py", "shell", "-c",
             "from monitoring import services; from monitoring.models import AuditEvent; "
             "services.team_get_or_create(name='Ops'); "
             "services.audit_record(action='test.app', actor=None); "
             "print(AuditEvent.objects.count())"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
        )
        assert check.returncode == 0, check.stderr[-3000:]
        assert check.stdout.strip().splitlines()[-1] == "1"
        with _session(role, name) as cursor:
            assert f"permission denied for table {AUDIT}" in _refused(cursor, f"UPDATE {AUDIT} SET comment = 'x'")
            assert "must be owner" in _refused(cursor, f"DROP TRIGGER monitoring_auditevent_append_only ON {AUDIT}")
            cursor.execute(f"SELECT count(*) FROM {AUDIT} WHERE comment = ''")
            assert cursor.fetchone()[0] == 1
    finally:
        with _session(owner, "postgres", autocommit=True) as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'DROP ROLE IF EXISTS "{role}"')


# ---------------------------------------------------------------- the admin


@pytest.fixture
def admin_client(db) -> Client:
    root = User.objects.create_superuser("root", password="root-only-in-tests-1")
    client = Client()
    client.force_login(root)
    return client


def _change_url(obj) -> str:
    return reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])


def test_the_admin_cannot_change_or_delete_versions_datasets_alerts_jobs_or_tokens(admin_client, deployment, approver):
    version = deployment.active_version()
    dataset = Dataset.objects.filter(deployment=deployment).first()
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Drift")
    job = MaintenanceJob.objects.create(deployment=deployment, source_version=version, kind="retrain", requested_by=approver)
    token, _ = services.token_create(deployment=deployment, name="ci", by=approver)
    events = AuditEvent.objects.count()

    for obj, field, value in [
        (version, "status", "rejected"), (dataset, "name", "renamed"), (alert, "status", "resolved"),
        (job, "status", "succeeded"), (token, "name", "renamed"),
    ]:
        before = type(obj).objects.filter(pk=obj.pk).values().get()
        changed = admin_client.post(_change_url(obj), {field: value})
        deleted = admin_client.post(reverse(
            f"admin:{obj._meta.app_label}_{obj._meta.model_name}_delete", args=[obj.pk]), {"post": "yes"})

        assert (changed.status_code, deleted.status_code) == (403, 403), type(obj).__name__
        assert type(obj).objects.filter(pk=obj.pk).values().get() == before
    assert AuditEvent.objects.count() == events


def test_admin_membership_changes_go_through_the_service_and_are_audited(admin_client, team, viewer):
    membership = Membership.objects.get(user=viewer)

    response = admin_client.post(_change_url(membership), {"role": "operator"})

    assert response.status_code == 302
    assert Membership.objects.get(pk=membership.pk).role == "operator"
    event = AuditEvent.objects.get(action="membership.set")
    assert event.actor.username == "root"
    assert (event.before, event.after) == (
        {"team": team.slug, "role": "viewer"}, {"user": "vera", "team": team.slug, "role": "operator"}
    )

    response = admin_client.post(reverse("admin:monitoring_membership_delete", args=[membership.pk]), {"post": "yes"})

    assert response.status_code == 302 and not Membership.objects.filter(pk=membership.pk).exists()
    assert AuditEvent.objects.get(action="membership.remove").before == {"user": "vera", "team": team.slug, "role": "operator"}


def test_the_admin_changes_only_the_four_eyes_setting_of_a_deployment_and_audits_it(admin_client, deployment):
    fields = {"require_distinct_approver": "", "name": "Renamed", "slug": "renamed", "feature_names": "[]"}

    response = admin_client.post(_change_url(deployment), fields)  # an unticked box: the setting off

    assert response.status_code == 302
    deployment.refresh_from_db()
    assert (deployment.require_distinct_approver, deployment.name, deployment.slug) == (False, "Tumour classifier", "tumour")
    event = AuditEvent.objects.get(action="deployment.approval_configure")
    assert (event.before, event.after) == ({"require_distinct_approver": True}, {"require_distinct_approver": False})


def test_admin_actions_on_tokens_alerts_and_jobs_call_the_services_and_are_audited(admin_client, deployment, approver):
    token, _ = services.token_create(deployment=deployment, name="ci", by=approver)
    alert, _ = services.alert_raise(deployment=deployment, kind=Alert.Kind.DATA_DRIFT, dedup_key="drift", title="Drift")
    job = MaintenanceJob.objects.create(
        deployment=deployment, source_version=deployment.active_version(), kind="retrain", requested_by=approver
    )

    for model, action, obj in [("apitoken", "revoke", token), ("alert", "acknowledge", alert), ("maintenancejob", "cancel", job)]:
        response = admin_client.post(reverse(f"admin:monitoring_{model}_changelist"),
                                     {"action": action, "_selected_action": [obj.pk]})
        assert response.status_code == 302, model

    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert Alert.objects.get(pk=alert.pk).status == Alert.Status.ACKNOWLEDGED
    assert MaintenanceJob.objects.get(pk=job.pk).status == MaintenanceJob.Status.CANCELLED
    actions = set(AuditEvent.objects.filter(actor__username="root").values_list("action", flat=True))
    assert actions == {"token.revoke", "alert.acknowledged", "job.cancel"}


def test_deleting_a_user_in_the_admin_audits_the_removal_of_each_membership(admin_client, team, viewer):
    response = admin_client.post(reverse("admin:auth_user_delete", args=[viewer.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert not User.objects.filter(pk=viewer.pk).exists()
    removal = AuditEvent.objects.get(action="membership.remove")
    assert removal.before == {"user": "vera", "team": team.slug, "role": "viewer"}


def test_a_team_with_members_or_deployments_cannot_be_deleted_in_the_admin(admin_client, deployment):
    team = deployment.team
    events = AuditEvent.objects.count()

    response = admin_client.post(reverse("admin:monitoring_team_delete", args=[team.pk]), {"post": "yes"})

    assert response.status_code == 403
    assert team.memberships.exists() and team.deployments.exists()
    assert AuditEvent.objects.count() == events
