"""The weekly digest's figures for one team: each deployment's health, the week's alerts, candidates waiting."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from django.conf import settings
from django.urls import reverse

from monitoring.models import Alert, Deployment, EvaluationRun, Membership, ModelVersion, Team


def week_bounds(week_start: date) -> tuple[datetime, datetime]:
    """[Monday 00:00, next Monday 00:00) UTC."""
    start = datetime.combine(week_start, time.min, tzinfo=UTC)
    return start, start + timedelta(days=7)


def last_full_week(now: datetime) -> date:
    """The Monday that starts the last complete week before `now` (UTC)."""
    today = now.astimezone(UTC).date()
    return today - timedelta(days=today.weekday() + 7)


@dataclass(frozen=True)
class DeploymentWeek:
    name: str
    url: str
    active_version: int | None
    accuracy: float | None  # the latest successful evaluation's, on any source
    open_alerts: int
    opened: list[dict[str, str]] = field(default_factory=list)  # {"title", "severity", "url"}
    resolved: int = 0
    candidates: list[dict[str, str]] = field(default_factory=list)  # {"number", "url"}

    @property
    def health(self) -> str:
        if self.active_version is None:
            return "not serving"
        return "needs attention" if self.open_alerts else "healthy"


@dataclass(frozen=True)
class TeamWeek:
    team: str
    week_start: date
    week_end: date  # the Sunday, inclusive, for people
    deployments: list[DeploymentWeek]
    alerting_url: str

    @property
    def opened(self) -> int:
        return sum(len(d.opened) for d in self.deployments)

    @property
    def resolved(self) -> int:
        return sum(d.resolved for d in self.deployments)

    @property
    def candidates(self) -> int:
        return sum(len(d.candidates) for d in self.deployments)


def _absolute(path: str) -> str:
    return settings.PUBLIC_URL + path


def team_week(*, team: Team, week_start: date) -> TeamWeek:
    start, end = week_bounds(week_start)
    rows = []
    for deployment in Deployment.objects.filter(team=team).order_by("name"):
        active = deployment.active_version()
        latest = (
            EvaluationRun.objects.filter(deployment=deployment, status=EvaluationRun.Status.SUCCEEDED, version=active)
            .order_by("-measured_at").first() if active else None
        )
        alerts = Alert.objects.filter(deployment=deployment)
        opened = alerts.filter(created_at__gte=start, created_at__lt=end).order_by("created_at")
        rows.append(DeploymentWeek(
            name=deployment.name,
            url=_absolute(reverse("deployment", args=[deployment.slug])),
            active_version=active.number if active else None,
            accuracy=(latest.metrics or {}).get("accuracy") if latest else None,
            open_alerts=alerts.unresolved().count(),
            opened=[{"title": a.title, "severity": a.severity, "url": _absolute(reverse("alert-detail", args=[a.pk]))}
                    for a in opened],
            resolved=alerts.filter(resolved_at__gte=start, resolved_at__lt=end).count(),
            candidates=[
                {"number": str(v.number), "url": _absolute(reverse("version-compare", args=[deployment.slug, v.number]))}
                for v in deployment.versions.filter(status=ModelVersion.Status.CANDIDATE).order_by("number")
            ],
        ))
    return TeamWeek(team=team.name, week_start=week_start, week_end=week_start + timedelta(days=6), deployments=rows,
                    alerting_url=_absolute(reverse("team-alerting", args=[team.slug])))


def digest_recipients(*, team: Team) -> list[tuple[int, str]]:
    """(user id, address) of the team's members who opted in and have an address."""
    members = Membership.objects.filter(
        team=team, user__is_active=True, user__digest_preference__weekly_digest=True
    ).exclude(user__email="").select_related("user")
    return sorted((m.user_id, m.user.email) for m in members)


def digest_wanted(*, user: object) -> bool:
    from monitoring.models import DigestPreference

    user_id = getattr(user, "pk", None)
    return user_id is not None and DigestPreference.objects.filter(user_id=user_id, weekly_digest=True).exists()
