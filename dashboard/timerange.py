"""The time range a deployment's charts show, read from the URL: a preset (`?days=7`) or a custom range
(`?from=2026-07-01T00:00&to=2026-07-08T12:00`, wall-clock times in the viewer's zone, as an
<input type="datetime-local"> sends them), plus the auto-refresh interval (`?refresh=1m`).

The URL keeps the range, so a link shows a colleague the same picture. Nothing here queries the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from urllib.parse import urlencode

PRESET_DAYS = (1, 7, 30, 90)
DEFAULT_DAYS = 30
# A year of points is still fast to draw (traces are downsampled); beyond that a range is a mistake.
MAX_RANGE = timedelta(days=366)
# Auto-refresh choices, off by default: a chart a person watches, not a load test.
REFRESH_CHOICES = {"30s": 30, "1m": 60, "5m": 300, "15m": 900}
INPUT_FORMAT = "%Y-%m-%dT%H:%M"  # what <input type="datetime-local"> sends and shows


class RangeError(ValueError):
    """Bad range input, with a message that says what to send instead."""


@dataclass(frozen=True)
class TimeRange:
    start: datetime  # aware
    end: datetime  # aware
    days: int | None  # the preset, or None for a custom range
    refresh: str = ""  # a REFRESH_CHOICES key, or "" for off

    @property
    def is_custom(self) -> bool:
        return self.days is None

    def local_input(self, tz: tzinfo) -> tuple[str, str]:
        """(from, to) as the picker's inputs show them."""
        return self.start.astimezone(tz).strftime(INPUT_FORMAT), self.end.astimezone(tz).strftime(INPUT_FORMAT)

    def query(self, tz: tzinfo, **extra: str) -> str:
        """The query string that reproduces this range (and `extra`, e.g. window=day)."""
        if self.is_custom:
            start, end = self.local_input(tz)
            params = {"from": start, "to": end}
        else:
            params = {"days": str(self.days)}
        if self.refresh:
            params["refresh"] = self.refresh
        return urlencode(params | {k: v for k, v in extra.items() if v})

    @property
    def refresh_seconds(self) -> int | None:
        return REFRESH_CHOICES.get(self.refresh)


def _parse_local(value: str, name: str, tz: tzinfo) -> datetime:
    try:
        naive = datetime.strptime(value.strip(), INPUT_FORMAT)
    except ValueError:
        try:
            naive = datetime.strptime(value.strip(), INPUT_FORMAT + ":%S")
        except ValueError:
            raise RangeError(
                f"'{name}' must be a date and time like 2026-07-01T09:30 (in your time zone), not {value[:40]!r}."
            ) from None
    return naive.replace(tzinfo=tz)


def parse_time_range(params, *, tz: tzinfo, now: datetime) -> TimeRange:
    """The range in `params` (a QueryDict or dict), or the default 30 days. Raises RangeError on bad input."""
    refresh = params.get("refresh", "") or ""
    if refresh and refresh not in REFRESH_CHOICES:
        raise RangeError(f"Auto-refresh must be one of {', '.join(REFRESH_CHOICES)} (or left off), not {refresh[:20]!r}.")
    raw_from, raw_to = params.get("from", ""), params.get("to", "")
    if raw_from or raw_to:
        if not (raw_from and raw_to):
            raise RangeError("A custom range needs both 'from' and 'to'; or pick one of the presets.")
        start, end = _parse_local(raw_from, "from", tz), _parse_local(raw_to, "to", tz)
        if start >= end:
            raise RangeError("'from' must be before 'to'.")
        if end - start > MAX_RANGE:
            raise RangeError(f"A range can span at most {MAX_RANGE.days} days; narrow 'from' and 'to'.")
        return TimeRange(start=start, end=end, days=None, refresh=refresh)
    raw_days = params.get("days", "")
    if not raw_days:
        days = DEFAULT_DAYS
    else:
        try:
            days = int(raw_days)
        except ValueError:
            days = -1
        if days not in PRESET_DAYS:
            choices = ", ".join(map(str, PRESET_DAYS))
            raise RangeError(f"'days' must be one of {choices}, or give a custom range with 'from' and 'to'.")
    return TimeRange(start=now - timedelta(days=days), end=now, days=days, refresh=refresh)
