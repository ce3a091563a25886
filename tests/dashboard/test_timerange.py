"""dashboard/timerange.py: the charts' range and auto-refresh, read from the URL (no database)."""

from __future__ import annotations

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.timerange import RangeError, parse_time_range

TOKYO = zoneinfo.ZoneInfo("Asia/Tokyo")
NOW = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)


def test_no_range_is_the_last_30_days_without_auto_refresh():
    span = parse_time_range({}, tz=UTC, now=NOW)

    assert (span.start, span.end, span.days, span.refresh_seconds) == (NOW - timedelta(days=30), NOW, 30, None)


def test_a_preset_is_that_many_days_up_to_now():
    span = parse_time_range({"days": "7"}, tz=UTC, now=NOW)

    assert (span.start, span.end, span.is_custom) == (NOW - timedelta(days=7), NOW, False)


def test_a_custom_range_is_read_as_wall_clock_time_in_the_viewers_zone():
    span = parse_time_range({"from": "2026-07-01T09:00", "to": "2026-07-02T09:00"}, tz=TOKYO, now=NOW)

    assert span.is_custom
    assert span.start == datetime(2026, 7, 1, 0, 0, tzinfo=UTC)  # 09:00 in Tokyo is midnight UTC
    assert span.end - span.start == timedelta(days=1)
    assert span.local_input(TOKYO) == ("2026-07-01T09:00", "2026-07-02T09:00")


def test_a_custom_range_survives_a_round_trip_through_its_query_string():
    from urllib.parse import parse_qsl

    span = parse_time_range({"from": "2026-07-01T09:00", "to": "2026-07-02T18:30", "refresh": "1m"}, tz=TOKYO, now=NOW)
    again = parse_time_range(dict(parse_qsl(span.query(TOKYO, window="day"))), tz=TOKYO, now=NOW)

    assert again == span
    assert "window=day" in span.query(TOKYO, window="day")


@pytest.mark.parametrize(("params", "says"), [
    ({"days": "3"}, "'days' must be one of 1, 7, 30, 90"),
    ({"days": "week"}, "'days' must be one of"),
    ({"from": "2026-07-01T09:00"}, "needs both 'from' and 'to'"),
    ({"from": "yesterday", "to": "2026-07-02T09:00"}, "'from' must be a date and time like 2026-07-01T09:30"),
    ({"from": "2026-07-02T09:00", "to": "2026-07-01T09:00"}, "'from' must be before 'to'"),
    ({"from": "2024-01-01T00:00", "to": "2026-07-01T00:00"}, "at most 366 days"),
    ({"refresh": "1s"}, "Auto-refresh must be one of 30s, 1m, 5m, 15m"),
])
def test_bad_input_is_refused_with_a_message_that_says_what_to_send(params, says):
    with pytest.raises(RangeError, match=says.replace("(", r"\(")):
        parse_time_range(params, tz=UTC, now=NOW)


def test_auto_refresh_is_kept_with_a_preset():
    span = parse_time_range({"days": "1", "refresh": "30s"}, tz=UTC, now=NOW)

    assert span.refresh_seconds == 30 and "refresh=30s" in span.query(UTC)
