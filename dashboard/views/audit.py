"""A deployment's audit log: filtered by kind, actor and time, paginated, and exported as CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, time, timedelta

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET

from dashboard.access import get_deployment_for
from monitoring import selectors
from monitoring.models import AuditEvent, Deployment

AUDIT_PAGE_SIZE = 50
# The CSV is written in chunks of this many events, each with one name lookup per object type: memory stays
# flat however long the log is.
CSV_CHUNK = 500


class AuditFilterForm(forms.Form):
    kind = forms.ChoiceField(required=False, label="Kind")
    actor = forms.ChoiceField(required=False, label="Who")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To (inclusive)", widget=forms.DateInput(attrs={"type": "date"}))

    def __init__(self, *args, actors: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["kind"].choices = [("", "Everything"), *selectors.AUDIT_KINDS.items()]
        self.fields["actor"].choices = [("", "Anyone"), *((a, a) for a in actors)]

    def clean(self):
        data = super().clean()
        if data.get("since") and data.get("until") and data["since"] > data["until"]:
            raise forms.ValidationError("The start date is after the end date; swap them.")
        return data


def _filtered(request: HttpRequest, deployment: Deployment) -> tuple[AuditFilterForm, QuerySet[AuditEvent]]:
    """The log as the query string filters it; dates are days in the viewer's time zone."""
    form = AuditFilterForm(request.GET or None, actors=selectors.audit_actors(deployment=deployment))
    if not form.is_bound or not form.is_valid():
        return form, selectors.audit_events(deployment=deployment) if not form.is_bound else AuditEvent.objects.none()
    tz = timezone.get_current_timezone()
    since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    return form, selectors.audit_events(
        deployment=deployment,
        kind=form.cleaned_data["kind"],
        actor=form.cleaned_data["actor"],
        since=datetime.combine(since, time.min, tzinfo=tz) if since else None,
        until=datetime.combine(until + timedelta(days=1), time.min, tzinfo=tz) if until else None,
    )


@dataclass(frozen=True)
class Change:
    key: str
    before: str | None  # None: the key is new, or unchanged
    after: str


def _display(value: object) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(map(str, value)) or "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_display(v)}" for k, v in value.items()) or "none"
    text = str(value)
    # sha256 digests and the like: the first 12 characters identify them on screen.
    return text[:12] + "…" if len(text) > 24 and " " not in text else text


def _changes(before: dict | None, after: dict | None) -> list[Change]:
    """before → after as one line per key, in the order the service wrote them."""
    before, after = before or {}, after or {}
    keys = list(before) + [k for k in after if k not in before]
    changes = []
    for key in keys:
        label = key.replace("_", " ")
        if key in before and key in after and before[key] != after[key]:
            changes.append(Change(label, _display(before[key]), _display(after[key])))
        elif key in after:
            changes.append(Change(label, None, _display(after[key])))
        else:
            changes.append(Change(label, _display(before[key]), "—"))
    return changes


def _object_url(deployment: Deployment, named: selectors.NamedObject | None) -> str:
    if named is None or named.number is None:
        return ""
    if named.kind == "version":
        return reverse("version", args=[deployment.slug, named.number])
    if named.kind == "alert":
        return reverse("alert-detail", args=[named.number])
    if named.kind == "job":
        return reverse("deployment", args=[deployment.slug]) + "#jobs"
    return ""


@dataclass(frozen=True)
class AuditRow:
    event: AuditEvent
    object_label: str
    object_url: str
    changes: list[Change]


def _rows(deployment: Deployment, events: list[AuditEvent]) -> list[AuditRow]:
    names = selectors.audit_object_names(events)
    rows = []
    for event in events:
        named = names.get((event.object_type, event.object_id))
        label = named.label if named else (f"{event.object_type} #{event.object_id}" if event.object_id else "")
        rows.append(AuditRow(event, label, _object_url(deployment, named), _changes(event.before, event.after)))
    return rows


@login_required
@require_GET
def audit_log(request: HttpRequest, slug: str) -> HttpResponse:
    deployment = get_deployment_for(request.user, slug)
    form, events = _filtered(request, deployment)
    page = Paginator(events, AUDIT_PAGE_SIZE).get_page(request.GET.get("page"))
    query = request.GET.copy()
    query.pop("page", None)
    context = {
        "deployment": deployment,
        "form": form,
        "page": page,
        "rows": _rows(deployment, list(page.object_list)),
        "filtered": any(request.GET.get(name) for name in form.fields),
        "query": query.urlencode(),
    }
    return render(request, "deployments/audit.html", context, status=200 if not form.errors else 400)


class _Echo:
    """csv.writer writes into this and gets the line back, so each row streams as soon as it is written."""

    def write(self, value: str) -> str:
        return value


CSV_COLUMNS = ["time", "actor", "action", "object", "object_type", "object_id", "before", "after", "comment"]


def _csv_lines(deployment: Deployment, events: QuerySet[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    tz = timezone.get_current_timezone()
    chunk: list[AuditEvent] = []
    for event in events.iterator(chunk_size=CSV_CHUNK):
        chunk.append(event)
        if len(chunk) == CSV_CHUNK:
            yield from _csv_chunk(writer, chunk, tz)
            chunk = []
    yield from _csv_chunk(writer, chunk, tz)


def _csv_chunk(writer, events: list[AuditEvent], tz) -> Iterator[str]:
    names = selectors.audit_object_names(events)
    for event in events:
        named = names.get((event.object_type, event.object_id))
        yield writer.writerow([
            event.at.astimezone(tz).isoformat(timespec="seconds"), event.actor_label, event.action,
            named.label if named else "", event.object_type, event.object_id,
            json.dumps(event.before, sort_keys=True) if event.before is not None else "",
            json.dumps(event.after, sort_keys=True) if event.after is not None else "", event.comment,
        ])


@login_required
@require_GET
def audit_csv(request: HttpRequest, slug: str) -> HttpResponse | StreamingHttpResponse:
    """The log as CSV, with the page's filters (its query string); the team's viewers and up, as the page."""
    deployment = get_deployment_for(request.user, slug)
    form, events = _filtered(request, deployment)
    if form.errors:
        message = " ".join(str(e) for errors in form.errors.values() for e in errors)
        return HttpResponse(f"{message} Fix the filter and export again.\n", status=400, content_type="text/plain")
    response = StreamingHttpResponse(_csv_lines(deployment, events), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}-audit-{timezone.localdate():%Y%m%d}.csv"'
    return response
