"""What the management commands share: finding a deployment and turning service errors into CommandError."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from django.core.management.base import CommandError

from monitoring.models import Deployment
from monitoring.services import ServiceError


def deployment_named(slug: str) -> Deployment:
    deployment = Deployment.objects.select_related("team").filter(slug=slug).first()
    if deployment is None:
        raise CommandError(f"No deployment with the slug {slug!r}.")
    return deployment


def read_file(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise CommandError(f"Cannot read {path}: {exc.strerror}.") from None


@contextmanager
def service_errors() -> Iterator[None]:
    """Show a service's refusal as the command's error (exit status 1), with its per-row details."""
    try:
        yield
    except ServiceError as exc:
        details = [
            " ".join(str(part) for part in (f"row {e['row']}:" if e.get("row") is not None else "", e.get("field", ""), e.get("message", "")) if part)
            for e in exc.errors[:10]
            if e.get("message") != exc.message  # a single error that is the message itself
        ]
        raise CommandError("\n  ".join([exc.message, *details])) from None
