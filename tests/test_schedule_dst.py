"""The DST rule: fixed-hour specs fire once (after a gap, at the first occurrence of a repeat);
wildcard-hour specs follow the wall clock (nothing in a gap, both occurrences of a repeat).

Transitions used (2024): Berlin 03-31 02:00->03:00 and 10-27 03:00->02:00; New York 03-10
02:00->03:00 and 11-03 02:00->01:00; Sydney 04-07 03:00->02:00 and 10-06 02:00->03:00; Lord Howe
shifts by 30 minutes; Santiago and Havana spring forward at midnight.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dkron_pkg.schedule import next_times, parse_schedule


def at(text: str) -> datetime:
    """A local time with its offset, e.g. "2024-03-31 03:00+02:00", as UTC."""
    return datetime.fromisoformat(text).astimezone(UTC)


# fmt: off
CASES = [
    # --- Europe/Berlin, spring forward: 02:00-02:59 does not exist on 03-31 ---------------
    ("Europe/Berlin", "0 30 2 * * *", "2024-03-30 12:00+01:00",
     ["2024-03-31 03:00+02:00", "2024-04-01 02:30+02:00"]),
    ("Europe/Berlin", "0 0,20,40 2 * * *", "2024-03-31 01:00+01:00",
     ["2024-03-31 03:00+02:00", "2024-04-01 02:00+02:00"]),
    ("Europe/Berlin", "0 0 2,3 * * *", "2024-03-31 01:00+01:00",
     ["2024-03-31 03:00+02:00", "2024-04-01 02:00+02:00"]),
    ("Europe/Berlin", "0 30 * * * *", "2024-03-31 01:00+01:00",
     ["2024-03-31 01:30+01:00", "2024-03-31 03:30+02:00", "2024-03-31 04:30+02:00"]),
    ("Europe/Berlin", "0 0 */2 * * *", "2024-03-31 00:30+01:00",
     ["2024-03-31 04:00+02:00", "2024-03-31 06:00+02:00"]),
    ("Europe/Berlin", "0 0 0/2 * * *", "2024-03-31 00:30+01:00",
     ["2024-03-31 04:00+02:00", "2024-03-31 06:00+02:00"]),
    ("Europe/Berlin", "* * * * * *", "2024-03-31 01:59:58+01:00",
     ["2024-03-31 01:59:59+01:00", "2024-03-31 03:00:00+02:00", "2024-03-31 03:00:01+02:00"]),
    # --- Europe/Berlin, fall back: 02:00-02:59 happens twice on 10-27 --------------------
    ("Europe/Berlin", "0 30 2 * * *", "2024-10-26 12:00+02:00",
     ["2024-10-27 02:30+02:00", "2024-10-28 02:30+01:00"]),
    ("Europe/Berlin", "0 0 1-3 * * *", "2024-10-27 00:30+02:00",
     ["2024-10-27 01:00+02:00", "2024-10-27 02:00+02:00", "2024-10-27 03:00+01:00"]),
    ("Europe/Berlin", "0 0 * * * *", "2024-10-27 01:30+02:00",
     ["2024-10-27 02:00+02:00", "2024-10-27 02:00+01:00", "2024-10-27 03:00+01:00"]),
    ("Europe/Berlin", "0 */20 * * * *", "2024-10-27 02:30+02:00",
     ["2024-10-27 02:40+02:00", "2024-10-27 02:00+01:00", "2024-10-27 02:20+01:00"]),
    ("Europe/Berlin", "* * * * * *", "2024-10-27 02:59:58+02:00",
     ["2024-10-27 02:59:59+02:00", "2024-10-27 02:00:00+01:00", "2024-10-27 02:00:01+01:00"]),
    # starting inside the repeat: a fixed-hour spec already fired at the first occurrence
    ("Europe/Berlin", "0 30 2 * * *", "2024-10-27 02:40+02:00", ["2024-10-28 02:30+01:00"]),
    ("Europe/Berlin", "0 30 2 * * *", "2024-10-27 02:10+01:00", ["2024-10-28 02:30+01:00"]),
    ("Europe/Berlin", "0 30 * * * *", "2024-10-27 02:40+02:00",
     ["2024-10-27 02:30+01:00", "2024-10-27 03:30+01:00"]),
    # --- America/New_York ----------------------------------------------------------------
    ("America/New_York", "0 30 2 * * *", "2024-03-09 12:00-05:00",
     ["2024-03-10 03:00-04:00", "2024-03-11 02:30-04:00"]),
    ("America/New_York", "0 */30 * * * *", "2024-03-10 01:00-05:00",
     ["2024-03-10 01:30-05:00", "2024-03-10 03:00-04:00", "2024-03-10 03:30-04:00"]),
    ("America/New_York", "0 30 1 * * *", "2024-11-02 12:00-04:00",
     ["2024-11-03 01:30-04:00", "2024-11-04 01:30-05:00"]),
    ("America/New_York", "0 30 * * * *", "2024-11-03 00:00-04:00",
     ["2024-11-03 00:30-04:00", "2024-11-03 01:30-04:00", "2024-11-03 01:30-05:00",
      "2024-11-03 02:30-05:00"]),
    ("America/New_York", "@daily", "2024-11-02 12:00-04:00",
     ["2024-11-03 00:00-04:00", "2024-11-04 00:00-05:00"]),
    # --- Australia/Sydney (southern hemisphere) ------------------------------------------
    ("Australia/Sydney", "0 30 2 * * *", "2024-10-05 12:00+10:00",
     ["2024-10-06 03:00+11:00", "2024-10-07 02:30+11:00"]),
    ("Australia/Sydney", "0 30 2 * * *", "2024-04-06 12:00+11:00",
     ["2024-04-07 02:30+11:00", "2024-04-08 02:30+10:00"]),
    ("Australia/Sydney", "0 0 * * * *", "2024-04-07 01:30+11:00",
     ["2024-04-07 02:00+11:00", "2024-04-07 02:00+10:00", "2024-04-07 03:00+10:00"]),
    ("Australia/Sydney", "0 0 */1 * * *", "2024-10-06 01:30+10:00",
     ["2024-10-06 03:00+11:00", "2024-10-06 04:00+11:00"]),
    # --- Australia/Lord_Howe: 30-minute shifts --------------------------------------------
    ("Australia/Lord_Howe", "0 15 2 * * *", "2024-10-05 12:00+10:30",
     ["2024-10-06 02:30+11:00", "2024-10-07 02:15+11:00"]),
    ("Australia/Lord_Howe", "0 */15 * * * *", "2024-10-06 01:40+10:30",
     ["2024-10-06 01:45+10:30", "2024-10-06 02:30+11:00", "2024-10-06 02:45+11:00"]),
    ("Australia/Lord_Howe", "0 45 1 * * *", "2024-04-06 12:00+11:00",
     ["2024-04-07 01:45+11:00", "2024-04-08 01:45+10:30"]),
    ("Australia/Lord_Howe", "0 45 * * * *", "2024-04-07 01:00+11:00",
     ["2024-04-07 01:45+11:00", "2024-04-07 01:45+10:30", "2024-04-07 02:45+10:30"]),
    # --- midnight gaps: @daily fires at the first instant of the day ----------------------
    ("America/Santiago", "@daily", "2024-09-06 12:00-04:00",
     ["2024-09-07 00:00-04:00", "2024-09-08 01:00-03:00", "2024-09-09 00:00-03:00"]),
    ("America/Havana", "@midnight", "2024-03-09 12:00-05:00",
     ["2024-03-10 01:00-04:00", "2024-03-11 00:00-04:00"]),
    # --- Europe/Dublin: tzdata's negative DST must not confuse anything ------------------
    ("Europe/Dublin", "0 30 1 * * *", "2024-03-30 12:00+00:00",
     ["2024-03-31 02:00+01:00", "2024-04-01 01:30+01:00"]),
    ("Europe/Dublin", "0 30 1 * * *", "2024-10-26 12:00+01:00",
     ["2024-10-27 01:30+01:00", "2024-10-28 01:30+00:00"]),
]
# fmt: on


@pytest.mark.parametrize(("zone", "spec", "start", "expected"), CASES)
def test_dst_rule(zone, spec, start, expected):
    got = next_times(spec, zone, at(start), len(expected))
    assert got == [at(e) for e in expected]


@pytest.mark.parametrize(
    ("spec", "wildcard"),
    [
        ("0 0 2 * * *", False),
        ("0 */5 2 * * *", False),
        ("0 0 1-5 * * *", False),
        ("0 0 0-23 * * *", False),
        ("0 0 * * * *", True),
        ("0 0 ? * * *", True),
        ("0 0 */3 * * *", True),
        ("0 0 1/3 * * *", True),
        ("0 0 1,*/6 * * *", True),
        ("@hourly", True),
        ("@minutely", True),
        ("@daily", False),
        ("@weekly", False),
    ],
)
def test_which_specs_count_as_wildcard_hour(spec, wildcard):
    assert parse_schedule(spec, "UTC").fields.hour_wildcard is wildcard


def test_written_out_hours_count_as_fixed_and_fire_once_in_a_repeat():
    got = next_times("0 0 0-23 * * *", "Europe/Berlin", at("2024-10-27 01:30+02:00"), 3)
    assert got == [
        at("2024-10-27 02:00+02:00"),
        at("2024-10-27 03:00+01:00"),
        at("2024-10-27 04:00+01:00"),
    ]


def test_at_without_offset_in_a_gap_and_in_a_repeat():
    gap = parse_schedule("@at 2024-03-31T02:30:00", "Europe/Berlin")
    assert gap.next_after(at("2024-01-01 00:00+00:00")) == at("2024-03-31 03:00+02:00")
    repeat = parse_schedule("@at 2024-10-27T02:30:00", "Europe/Berlin")
    assert repeat.next_after(at("2024-01-01 00:00+00:00")) == at("2024-10-27 02:30+02:00")


def test_job_zone_keeps_local_time_across_transitions():
    got = next_times("0 0 9 * * MON-FRI", "America/New_York", at("2024-03-07 12:00-05:00"), 3)
    assert got == [
        at("2024-03-08 09:00-05:00"),
        at("2024-03-11 09:00-04:00"),
        at("2024-03-12 09:00-04:00"),
    ]


def test_result_does_not_depend_on_what_was_asked_before():
    """A far-future question first must not hide nearer transitions from a later one.

    Transitions are found in chunks of 2**25 s; one boundary is 2024-03-24 10:27Z, so the
    Berlin transition of 2024-03-31 sits in the chunk after the start time asked below.
    """
    from zoneinfo import ZoneInfo

    from dkron_pkg.schedule import CronSpecSchedule
    from dkron_pkg.schedule_fields import parse_fields

    spec = "0 0 12 1 7 *"  # noon on 1 July
    fresh = CronSpecSchedule(spec, ZoneInfo.no_cache("Europe/Berlin"), parse_fields(spec))
    assert fresh.next_after(at("2031-01-01 00:00+00:00")) == at("2031-07-01 12:00+02:00")
    assert fresh.next_after(at("2024-03-20 12:00+01:00")) == at("2024-07-01 12:00+02:00")
    assert fresh.next_after(at("2021-01-01 00:00+01:00")) == at("2021-07-01 12:00+02:00")
