"""The audit log (views/audit.py): objects named and linked, filters, pages, and the CSV export."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from monitoring import services
from monitoring.models import AuditEvent

pytestmark = pytest.mark.django_db


@pytest.fixture
def decided(deployment, operator, approver, candidate):
    services.version_approve(version=candidate, by=approver, comment="better F1, same latency")
    services.version_tag_add(version=candidate, tag="q4", by=operator)
    return deployment


def _csv(response) -> list[dict]:
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_log_names_versions_and_links_them(client, viewer, decided):
    client.force_login(viewer)

    page = client.get(reverse("audit", args=["tumour"])).content.decode()

    assert '<a href="/d/tumour/versions/2/">v2 of Tumour classifier</a>' in page
    assert "ModelVersion #" not in page


def test_it_filters_by_kind_and_actor(client, viewer, decided):
    client.force_login(viewer)

    by_alice = client.get(reverse("audit", args=["tumour"]), {"kind": "version", "actor": "alice"}).context["rows"]
    tokens = client.get(reverse("audit", args=["tumour"]), {"kind": "token"})

    assert {row.event.action for row in by_alice} == {"version.register", "version.approve"}  # not oscar's tag
    assert tokens.context["rows"] == [] and "Nothing matches these filters." in tokens.content.decode()


def test_it_filters_by_days_in_the_viewers_zone(client, viewer, decided):
    client.force_login(viewer)
    client.cookies["tz"] = "Pacific/Auckland"
    today = timezone.now().astimezone(timezone.get_fixed_timezone(0)).date()

    future = client.get(reverse("audit", args=["tumour"]), {"since": str(today + timedelta(days=2))}).context["rows"]
    around = client.get(reverse("audit", args=["tumour"]), {"since": str(today - timedelta(days=1)), "until": str(today + timedelta(days=1))})

    assert future == []
    assert len(around.context["rows"]) == decided.audit_events.count()


def test_a_start_after_the_end_says_what_to_fix(client, viewer, decided):
    client.force_login(viewer)

    response = client.get(reverse("audit", args=["tumour"]), {"since": "2026-12-05", "until": "2026-12-01"})
    export = client.get(reverse("audit-csv", args=["tumour"]), {"since": "2026-12-05", "until": "2026-12-01"})

    assert response.status_code == 400 and "The start date is after the end date; swap them." in response.content.decode()
    assert export.status_code == 400 and b"swap them" in export.content


def test_it_paginates_keeping_the_filters(client, viewer, deployment, approver):
    v1 = deployment.versions.get(number=1)
    for i in range(55):
        services.version_tag_add(version=v1, tag=f"t{i}", by=approver) if i < 20 else services.audit_record(
            action="version.note", actor=approver, deployment=deployment, obj=v1, comment=f"note {i}"
        )
    client.force_login(viewer)

    first = client.get(reverse("audit", args=["tumour"]), {"kind": "version"})
    second = client.get(reverse("audit", args=["tumour"]), {"kind": "version", "page": 2})

    assert len(first.context["rows"]) == 50
    assert 'href="?kind=version&amp;page=2"' in first.content.decode()
    assert len(second.context["rows"]) == deployment.audit_events.filter(action__startswith="version.").count() - 50


def test_the_csv_has_the_filtered_events_with_named_objects(client, viewer, decided):
    client.force_login(viewer)

    rows = _csv(client.get(reverse("audit-csv", args=["tumour"]), {"kind": "version", "actor": "alice"}))

    assert [(r["action"], r["object"], r["comment"]) for r in rows] == [  # newest first; not oscar's tag
        ("version.approve", "v2 of Tumour classifier", "better F1, same latency"),
        ("version.register", "v1 of Tumour classifier", ""),
    ]
    assert rows[0]["actor"] == "alice" and '"active_version": 2' in rows[0]["after"]
    everything = _csv(client.get(reverse("audit-csv", args=["tumour"])))
    assert len(everything) == AuditEvent.objects.filter(deployment=decided).count()


def test_the_csv_and_the_log_are_the_teams_only(client, outsider, decided):
    client.force_login(outsider)

    assert client.get(reverse("audit-csv", args=["tumour"])).status_code == 404
    assert client.get(reverse("audit", args=["tumour"])).status_code == 404


def test_the_csv_needs_a_login(client, decided):
    response = client.get(reverse("audit-csv", args=["tumour"]))

    assert response.status_code == 302 and response["Location"].startswith("/login/")
