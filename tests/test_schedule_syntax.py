"""Schedule syntax: every element of Dkron's cron dialect, descriptors, prefixes and errors."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dkron_pkg.schedule import (
    ScheduleError,
    load_timezone,
    local_timezone,
    next_times,
    parse_schedule,
)

START = datetime(2024, 1, 1, tzinfo=UTC)  # a Monday


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def fires(spec: str, n: int = 3, tz: str = "UTC", start: datetime = START, name: str = ""):
    return next_times(spec, tz, start, n, job_name=name)


# --- cron fields -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("* * * * * *", [utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 2)]),
        ("*/15 * * * * *", [utc(2024, 1, 1, 0, 0, 15), utc(2024, 1, 1, 0, 0, 30)]),
        ("5/20 * * * * *", [utc(2024, 1, 1, 0, 0, 5), utc(2024, 1, 1, 0, 0, 25)]),
        ("10-12 * * * * *", [utc(2024, 1, 1, 0, 0, 10), utc(2024, 1, 1, 0, 0, 11)]),
        ("10-40/15 * * * * *", [utc(2024, 1, 1, 0, 0, 10), utc(2024, 1, 1, 0, 0, 25)]),
        ("1,7,59 * * * * *", [utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 7)]),
        ("0 30 * * * *", [utc(2024, 1, 1, 0, 30), utc(2024, 1, 1, 1, 30)]),
        ("0 0 */6 * * *", [utc(2024, 1, 1, 6), utc(2024, 1, 1, 12)]),
        ("0 0 8 ? * *", [utc(2024, 1, 1, 8), utc(2024, 1, 2, 8)]),
        ("0 0 0 15 * *", [utc(2024, 1, 15), utc(2024, 2, 15)]),
        ("0 0 0 31 * *", [utc(2024, 1, 31), utc(2024, 3, 31)]),  # skips short months
        ("0 0 0 29 2 *", [utc(2024, 2, 29), utc(2028, 2, 29)]),
        ("0 0 0 1 JAN,jul *", [utc(2024, 7, 1), utc(2025, 1, 1)]),
        ("0 0 0 1 Feb-Apr *", [utc(2024, 2, 1), utc(2024, 3, 1)]),
        ("0 0 0 * * SUN", [utc(2024, 1, 7), utc(2024, 1, 14)]),
        ("0 0 0 ? * mon-fri", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("0 0 0 * * 5-6", [utc(2024, 1, 5), utc(2024, 1, 6)]),
        ("0 0 12 * * 0/3", [utc(2024, 1, 3, 12), utc(2024, 1, 6, 12)]),  # Sun, Wed, Sat
        ("59/15 0 0 * * *", [utc(2024, 1, 1, 0, 0, 59), utc(2024, 1, 2, 0, 0, 59)]),
        ("0 0 0 1 * */100", [utc(2024, 1, 7), utc(2024, 1, 14)]),  # Sundays or the 1st
    ],
)
def test_cron_field_syntax(spec, expected):
    assert fires(spec, len(expected)) == expected


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # both day fields restricted: either may match (Vixie OR rule)
        ("0 0 0 13 * FRI", [utc(2024, 1, 5), utc(2024, 1, 12), utc(2024, 1, 13)]),
        ("0 0 0 */10 * 1", [utc(2024, 1, 8), utc(2024, 1, 11), utc(2024, 1, 15)]),
        # one of them is * or ?: both must match
        ("0 0 0 * * FRI", [utc(2024, 1, 5), utc(2024, 1, 12), utc(2024, 1, 19)]),
        ("0 0 0 13 * ?", [utc(2024, 1, 13), utc(2024, 2, 13), utc(2024, 3, 13)]),
        ("0 0 0 13 * *,5", [utc(2024, 1, 13), utc(2024, 2, 13), utc(2024, 3, 13)]),
        ("0 0 0 */1 * 5", [utc(2024, 1, 5), utc(2024, 1, 12), utc(2024, 1, 19)]),
        # written-out full ranges are not *, so OR gives every day
        ("0 0 0 1-31 * 5", [utc(2024, 1, 2), utc(2024, 1, 3), utc(2024, 1, 4)]),
        ("0 0 0 */2 * 0/1", [utc(2024, 1, 2), utc(2024, 1, 3), utc(2024, 1, 4)]),
    ],
)
def test_day_of_month_and_day_of_week_rule(spec, expected):
    assert fires(spec) == expected


def test_results_are_utc_whole_seconds_strictly_after():
    start = datetime(2024, 1, 1, 0, 0, 4, 700000, tzinfo=UTC)
    got = fires("*/5 * * * * *", 2, start=start)
    assert got == [utc(2024, 1, 1, 0, 0, 5), utc(2024, 1, 1, 0, 0, 10)]
    assert all(t.tzinfo is UTC and t.microsecond == 0 for t in got)
    exact = parse_schedule("*/5 * * * * *").next_after(utc(2024, 1, 1, 0, 0, 5))
    assert exact == utc(2024, 1, 1, 0, 0, 10)


def test_after_may_be_in_any_zone():
    berlin = datetime(2024, 1, 1, 1, 0, tzinfo=ZoneInfo("Europe/Berlin"))  # 00:00Z
    assert parse_schedule("0 30 * * * *", "UTC").next_after(berlin) == utc(2024, 1, 1, 0, 30)


def test_naive_after_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("* * * * * *").next_after(datetime(2024, 1, 1))


def test_impossible_date_never_fires():
    schedule = parse_schedule("0 0 0 30 2 *", "UTC")
    assert schedule.next_after(START) is None
    assert fires("0 0 0 31 4,6,9,11 *") == []


def test_horizon_is_five_years():
    # 29 February 2096 is the last leap day before 2104: 8 years away, beyond the horizon
    assert parse_schedule("0 0 0 29 2 *", "UTC").next_after(utc(2096, 3, 1)) is None
    assert parse_schedule("0 0 0 29 2 *", "UTC").next_after(utc(2023, 3, 1)) == utc(2024, 2, 29)


def test_extreme_start_times_do_not_crash():
    assert parse_schedule("0 0 0 1 1 *", "Europe/Berlin").next_after(utc(9998, 6, 1)) is None
    assert parse_schedule("@every 1h").next_after(datetime.max.replace(tzinfo=UTC)) is None
    first = parse_schedule("@daily", "Europe/Berlin").next_after(datetime(1, 1, 1, tzinfo=UTC))
    assert first is not None and first.year <= 2


# --- hash substitution -------------------------------------------------------------------


def test_hash_values_follow_the_job_name():
    # sum of code points of "backup" = 98+97+99+107+117+112 = 630
    h = 630
    got = fires("~ ~ ~ * * *", 1, name="backup")
    assert got == [utc(2024, 1, 1, h % 24, h % 60, h % 60)]
    day = fires("0 0 0 ~ ~ *", 1, name="backup")[0]
    assert (day.day, day.month) == (h % 28 + 1, h % 12 + 1)
    weekday = fires("0 0 0 * * ~", 1, name="backup")[0]
    assert weekday.isoweekday() % 7 == h % 7


def test_hash_inside_a_step_and_with_a_zone_prefix():
    # "ab" = 97 + 98 = 195 -> minute offset 195 % 60 = 15
    got = fires("CRON_TZ=UTC 0 ~/20 * * * *", 3, name="ab")
    assert got == [utc(2024, 1, 1, 0, 15), utc(2024, 1, 1, 0, 35), utc(2024, 1, 1, 0, 55)]


def test_hash_gives_different_times_to_different_jobs():
    a = fires("0 ~ * * * *", 1, name="report-a")
    b = fires("0 ~ * * * *", 1, name="report-b")
    assert a != b


def test_hash_is_ignored_in_descriptors():
    with pytest.raises(ScheduleError, match="@every"):
        parse_schedule("@every ~", job_name="x")


# --- descriptors -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("@yearly", [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@annually", [utc(2025, 1, 1), utc(2026, 1, 1)]),
        ("@monthly", [utc(2024, 2, 1), utc(2024, 3, 1)]),
        ("@weekly", [utc(2024, 1, 7), utc(2024, 1, 14)]),
        ("@daily", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("@midnight", [utc(2024, 1, 2), utc(2024, 1, 3)]),
        ("@hourly", [utc(2024, 1, 1, 1), utc(2024, 1, 1, 2)]),
        ("@minutely", [utc(2024, 1, 1, 0, 1), utc(2024, 1, 1, 0, 2)]),
        ("@DAILY", [utc(2024, 1, 2), utc(2024, 1, 3)]),
    ],
)
def test_calendar_descriptors(spec, expected):
    assert fires(spec, 2) == expected
    assert parse_schedule(spec, "UTC").kind == "cron"


def test_descriptors_use_the_job_time_zone():
    # Dkron #1076: @daily ignored the job's zone; here it is midnight in Tokyo (15:00Z)
    assert fires("@daily", 1, tz="Asia/Tokyo") == [utc(2024, 1, 1, 15)]
    assert fires("CRON_TZ=Asia/Tokyo @daily", 1, tz="UTC") == [utc(2024, 1, 1, 15)]


@pytest.mark.parametrize(
    ("duration", "seconds"),
    [("90s", 90), ("1h30m", 5400), ("1.5s", 1), ("500ms", 1), ("2m0.9s", 120), ("24h", 86400)],
)
def test_every_truncates_to_whole_seconds_with_a_minimum_of_one(duration, seconds):
    schedule = parse_schedule(f"@every {duration}", "Europe/Berlin")
    assert schedule.kind == "every"
    start = datetime(2024, 1, 1, 0, 0, 0, 600000, tzinfo=UTC)
    assert schedule.next_after(start) == utc(2024, 1, 1) + timedelta(seconds=seconds)


def test_every_keeps_its_phase_when_chained():
    got = fires("@every 7m", 4, start=utc(2024, 1, 1, 0, 0, 3))
    assert [t - utc(2024, 1, 1, 0, 0, 3) for t in got] == [
        timedelta(minutes=7 * k) for k in (1, 2, 3, 4)
    ]


def test_at_fires_once_only_if_ahead():
    schedule = parse_schedule("@at 2024-05-01T10:00:00+02:00", "America/New_York")
    assert schedule.kind == "at"
    assert schedule.next_after(START) == utc(2024, 5, 1, 8)
    assert schedule.next_after(utc(2024, 5, 1, 7, 59, 59)) == utc(2024, 5, 1, 8)
    assert schedule.next_after(utc(2024, 5, 1, 8)) is None
    assert fires("@at 2024-05-01T08:00:00Z", 5) == [utc(2024, 5, 1, 8)]


def test_at_with_fraction_rounds_up_and_stays_strictly_after():
    schedule = parse_schedule("@at 2024-05-01T08:00:00.250Z")
    assert schedule.next_after(utc(2024, 5, 1, 8)) == utc(2024, 5, 1, 8, 0, 1)


def test_at_without_offset_is_read_in_the_job_zone():
    assert fires("@at 2024-05-01T10:00:00", 1, tz="Europe/Berlin") == [utc(2024, 5, 1, 8)]
    assert fires("TZ=Asia/Tokyo @at 2024-05-01T09:00", 1, tz="UTC") == [utc(2024, 5, 1)]


def test_manually_and_reboot_never_fire_by_themselves():
    manual = parse_schedule("@manually")
    reboot = parse_schedule("@reboot")
    assert (manual.kind, reboot.kind) == ("manually", "reboot")
    assert manual.next_after(START) is None and reboot.next_after(START) is None


# --- time zones --------------------------------------------------------------------------


def test_fields_may_be_separated_by_any_whitespace():
    assert fires("CRON_TZ=Asia/Tokyo\t0  0\t12 * * *", 1) == [utc(2024, 1, 1, 3)]
    assert fires("  @every\t90s ", 1) == [utc(2024, 1, 1, 0, 1, 30)]


def test_job_zone_moves_the_fire_time():
    assert fires("0 30 8 * * *", 1, tz="Europe/Berlin") == [utc(2024, 1, 1, 7, 30)]
    assert fires("0 30 8 * * *", 1, tz="America/New_York") == [utc(2024, 1, 1, 13, 30)]


@pytest.mark.parametrize("prefix", ["CRON_TZ=Asia/Kolkata", "TZ=Asia/Kolkata"])
def test_prefix_wins_over_the_job_zone(prefix):
    got = fires(f"{prefix} 0 0 12 * * *", 1, tz="America/New_York")
    assert got == [utc(2024, 1, 1, 6, 30)]
    assert parse_schedule(f"{prefix} 0 0 12 * * *", "America/New_York").tz.key == "Asia/Kolkata"


def test_load_timezone():
    assert load_timezone("Europe/Berlin") == ZoneInfo("Europe/Berlin")
    assert load_timezone("UTC").utcoffset(None) == timedelta(0)
    assert load_timezone("") is local_timezone()
    for bad in ("Mars/Olympus", "../etc/passwd", "/etc/localtime", "Europe/"):
        with pytest.raises(ScheduleError) as err:
            load_timezone(bad)
        assert str(err.value) == f'unknown time zone "{bad}"'


def test_local_timezone_follows_tz(monkeypatch):
    monkeypatch.setenv("TZ", "Pacific/Auckland")
    assert local_timezone() == ZoneInfo("Pacific/Auckland")
    assert fires("0 0 12 * * *", 1, tz="") == [utc(2024, 1, 1, 23)]
    monkeypatch.setenv("TZ", ":Asia/Tokyo")
    assert local_timezone() == ZoneInfo("Asia/Tokyo")
    assert fires("0 0 12 * * *", 1, tz="") == [utc(2024, 1, 1, 3)]
    monkeypatch.setenv("TZ", "/usr/share/zoneinfo/America/Denver")
    assert local_timezone() == ZoneInfo("America/Denver")
    monkeypatch.setenv("TZ", "")
    assert local_timezone() == ZoneInfo("UTC")
    monkeypatch.setenv("TZ", "No/Such_Zone")
    assert local_timezone().utcoffset(datetime(2024, 7, 1)) == timedelta(0)
    monkeypatch.delenv("TZ")
    assert local_timezone().utcoffset(datetime(2024, 7, 1)) is not None


def test_unknown_zones_are_errors_naming_the_zone():
    with pytest.raises(ScheduleError, match='unknown time zone "Europe/Berlyn"'):
        parse_schedule("0 0 0 * * *", "Europe/Berlyn")
    with pytest.raises(ScheduleError) as err:
        parse_schedule("CRON_TZ=Atlantis/Main 0 0 0 * * *")
    assert str(err.value) == 'can\'t parse job schedule: unknown time zone "Atlantis/Main"'


# --- errors ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "the schedule is empty"),
        ("   ", "the schedule is empty"),
        ("0 75 * * * *", "minute field: 75 is above 59"),
        ("60 * * * * *", "second field: 60 is above 59"),
        ("0 0 24 * * *", "hour field: 24 is above 23"),
        ("0 0 0 0 * *", "day-of-month field: 0 is below 1"),
        ("0 0 0 32 * *", "day-of-month field: 32 is above 31"),
        ("0 0 0 * 13 *", "month field: 13 is above 12"),
        ("0 0 0 * 0 *", "month field: 0 is below 1"),
        ("0 0 0 * * 7", "day-of-week field: 7 is above 6 (use 0 or SUN for Sunday)"),
        ("0 0 0 * * FUN", 'day-of-week field: "FUN" is not a number or a day name (SUN-SAT)'),
        ("0 0 0 * JANUARY *", '"JANUARY" is not a number or a month name (JAN-DEC)'),
        ("0 0 MON * * *", 'hour field: "MON" is not a number'),
        ("0 x * * * *", 'minute field: "x" is not a number'),
        ("*/0 * * * * *", 'second field: step in "*/0" must be 1 or more'),
        ("*/x * * * * *", 'second field: step "x" in "*/x" is not a number'),
        ("0 0 5-2 * * *", 'hour field: range "5-2" goes backwards (5 is after 2)'),
        ("0 0 0 * * FRI-MON", 'range "FRI-MON" goes backwards'),
        ("0 1-2-3 * * * *", 'minute field: "1-2-3" has more than one "-"'),
        ("0 */2/3 * * * *", 'minute field: "*/2/3" has more than one "/"'),
        ("0 1,,2 * * * *", 'minute field: empty value in "1,,2"'),
        ("0 -5 * * * *", 'minute field: empty value in "-5"'),
        ("0 0 0 1 * * 2024", "expected 6 fields"),
        ("0 0 0", "expected 6 fields (second minute hour day-of-month month day-of-week), got 3"),
        ("@daily 5", '"@daily" takes nothing after it, got "5"'),
        ("@every", '@every needs a duration, e.g. "@every 1h30m"'),
        ("@every 5 minutes", '@every: invalid duration "5 minutes"'),
        ("@every 0s", '@every needs a positive duration, got "0s"'),
        ("@every -1h", '@every needs a positive duration, got "-1h"'),
        ("@at", "@at needs a time"),
        ("@at tomorrow", '@at: invalid time "tomorrow"'),
        ("@at 2024-13-01T00:00:00Z", '@at: invalid time "2024-13-01T00:00:00Z"'),
        ("@fortnightly", 'unknown descriptor "@fortnightly"; expected @yearly'),
        ("@manually now", '"@manually" takes nothing after it'),
        ("CRON_TZ=", '"CRON_TZ=" names no time zone'),
        ("TZ=UTC", 'nothing follows "TZ=UTC"'),
        ("@crontab 0 0 * *", "@crontab needs 5 fields"),
    ],
)
def test_parse_errors_are_clear(spec, message):
    with pytest.raises(ScheduleError) as err:
        parse_schedule(spec)
    text = str(err.value)
    assert text.startswith("can't parse job schedule: ")
    assert message in text


def test_five_field_crontab_lines_are_rejected_with_a_hint():
    with pytest.raises(ScheduleError) as err:
        parse_schedule("30 2 * * *")
    text = str(err.value)
    assert "expected 6 fields" in text and "got 5" in text
    assert '"@crontab 30 2 * * *"' in text


def test_schedule_error_is_a_value_error():
    assert issubclass(ScheduleError, ValueError)


# --- @crontab wiring ---------------------------------------------------------------------


class FakeCronSchedule:
    """Stands in for crontab_compat's engine: fires at minute 0 of every hour."""

    def __init__(self, expr: str, tz) -> None:
        if expr.split()[0] == "99":
            raise ValueError("bad minute: 99")
        self.expr, self.tz = expr, tz

    def next_after(self, after: datetime) -> datetime:
        base = after.astimezone(self.tz).replace(minute=0, second=0, microsecond=0)
        return (base + timedelta(hours=1)).astimezone(UTC)


def test_crontab_delegates_to_crontab_compat(monkeypatch):
    module = types.ModuleType("crontab_compat.schedule")
    module.CronSchedule = FakeCronSchedule
    monkeypatch.setitem(sys.modules, "crontab_compat.schedule", module)
    schedule = parse_schedule("@crontab 0 * * * *", "Asia/Kolkata")
    assert schedule.kind == "crontab"
    assert schedule.engine.tz == ZoneInfo("Asia/Kolkata")
    assert schedule.next_after(utc(2024, 1, 1, 0, 10)) == utc(2024, 1, 1, 0, 30)
    prefixed = parse_schedule("CRON_TZ=Europe/Berlin @crontab 0 * * * *", "UTC")
    assert prefixed.engine.tz == ZoneInfo("Europe/Berlin")
    with pytest.raises(ScheduleError, match="can't parse job schedule: @crontab: bad minute: 99"):
        parse_schedule("@crontab 99 * * * *", "UTC")


def test_crontab_with_the_real_engine_uses_cron_semantics_and_the_job_zone():
    schedule = parse_schedule("@crontab 30 2 * * *", "Europe/Berlin")
    assert schedule.kind == "crontab"
    got = next_times("@crontab 30 2 * * *", "Europe/Berlin", utc(2024, 3, 30), 2)
    assert got == [utc(2024, 3, 30, 1, 30), utc(2024, 3, 31, 1, 0)]  # 03:00 CEST after the gap
    assert "Europe/Berlin" in schedule.describe()
    assert next_times("@crontab @daily", "Asia/Tokyo", utc(2024, 1, 1), 1) == [utc(2024, 1, 1, 15)]
    with pytest.raises(ScheduleError, match=r"^can't parse job schedule: @crontab: "):
        parse_schedule("@crontab 61 * * * *")


def test_crontab_reports_when_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "crontab_compat.schedule", None)
    with pytest.raises(ScheduleError) as err:
        parse_schedule("@crontab 30 2 * * *", "Europe/Paris")
    assert str(err.value) == "crontab schedules are not available"


# --- caching and describe ----------------------------------------------------------------


def test_parsed_schedules_are_cached_per_spec_zone_and_hashed_name():
    assert parse_schedule("0 0 8 * * *", "Europe/Berlin") is parse_schedule(
        "0 0 8 * * *", "Europe/Berlin"
    )
    assert parse_schedule("0 0 8 * * *", "UTC") is not parse_schedule(
        "0 0 8 * * *", "Europe/Berlin"
    )
    # the job name matters only when the spec uses ~
    assert parse_schedule("0 0 8 * * *", "UTC", "a") is parse_schedule("0 0 8 * * *", "UTC", "b")
    assert parse_schedule("0 ~ 8 * * *", "UTC", "a") is not parse_schedule(
        "0 ~ 8 * * *", "UTC", "b"
    )


@pytest.mark.parametrize(
    ("spec", "tz", "words"),
    [
        ("0 30 8 * * *", "Europe/Berlin", "at 08:30:00 every day (Europe/Berlin)"),
        ("@daily", "Asia/Tokyo", "at 00:00:00 every day (Asia/Tokyo)"),
        ("*/10 * * * * *", "UTC", "every 10 seconds (UTC)"),
        (
            "0 */5 9-17 * * MON-FRI",
            "UTC",
            "every 5 minutes during hours 9-17 on Monday to Friday (UTC)",
        ),
        ("0 0 * * * *", "UTC", "every hour at minute 0 (UTC)"),
        ("0 30 9-17 * * *", "UTC", "at minute 30 of hours 9-17 every day (UTC)"),
        ("0 0 0 1 * MON", "UTC", "at 00:00:00 on day 1 of the month or on Monday (UTC)"),
        (
            "0 0 0 1,15 JAN,JUL *",
            "UTC",
            "at 00:00:00 on days 1, 15 of the month in January, July (UTC)",
        ),
        ("@every 1h30m", "UTC", "every 1h30m0s, counted from the previous run time"),
        ("@at 2030-01-02T03:04:05Z", "UTC", "once at 2030-01-02T03:04:05"),
        ("@manually", "UTC", "only when run manually"),
        ("@reboot", "UTC", "once each time the agent starts"),
    ],
)
def test_describe(spec, tz, words):
    assert parse_schedule(spec, tz).describe().startswith(words)
