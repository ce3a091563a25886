"""services/audit.py: audit events cannot be changed, by the ORM or in the database."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from monitoring.models import AuditEvent

# ---------------------------------------------------------------- the audit log


def test_audit_events_cannot_be_changed_through_the_orm(deployment):
    event = AuditEvent.objects.filter(deployment=deployment).first()
    event.comment = "rewritten"

    with pytest.raises(RuntimeError, match="append-only"):
        event.save()
    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()

    event.refresh_from_db()
    assert event.comment == ""


def test_the_database_refuses_to_update_or_delete_audit_events(deployment):
    event = AuditEvent.objects.filter(deployment=deployment).first()

    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("UPDATE monitoring_auditevent SET comment = 'rewritten' WHERE id = %s", [event.pk])
    with pytest.raises(DatabaseError, match="append-only: UPDATE refused"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(comment="rewritten")
    with pytest.raises(DatabaseError, match="append-only: DELETE refused"), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM monitoring_auditevent WHERE id = %s", [event.pk])

    event.refresh_from_db()
    assert event.comment == ""
