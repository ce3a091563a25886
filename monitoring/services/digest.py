"""The weekly digest: who wants it (opt-in per user), and the claim that makes one week's digest go once."""

from __future__ import annotations

from datetime import date

from django.contrib.auth.models import AbstractBaseUser
from django.db import IntegrityError, transaction
from django.utils import timezone

from monitoring.models import DigestPreference, DigestSent, Team
from monitoring.services.audit import audit_record


@transaction.atomic
def digest_preference_set(*, user: AbstractBaseUser, weekly_digest: bool) -> DigestPreference:
    preference, _ = DigestPreference.objects.select_for_update().get_or_create(user=user)
    if preference.weekly_digest != weekly_digest:
        audit_record(action="user.digest", actor=user, obj=preference,
                     before={"weekly_digest": preference.weekly_digest}, after={"weekly_digest": weekly_digest})
        preference.weekly_digest, preference.updated_at = weekly_digest, timezone.now()
        preference.save()
    return preference


def digest_claim(*, user_id: int, team: Team, week_start: date) -> DigestSent | None:
    """Claim the digest of this week for this user; None if it is already claimed (sent, or being sent)."""
    try:
        with transaction.atomic():
            return DigestSent.objects.create(user_id=user_id, team=team, week_start=week_start)
    except IntegrityError:
        return None


def digest_mark_sent(*, claim: DigestSent) -> None:
    DigestSent.objects.filter(pk=claim.pk).update(sent_at=timezone.now())


def digest_release(*, claim: DigestSent) -> None:
    """The mail could not be sent: give the claim back, so the next run tries again."""
    DigestSent.objects.filter(pk=claim.pk, sent_at__isnull=True).delete()
