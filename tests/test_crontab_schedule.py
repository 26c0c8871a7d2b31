"""Table tests for CronSchedule: the star rule, keywords, errors and Debian's DST behaviour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from crontab_compat.schedule import CronSchedule

BERLIN = ZoneInfo("Europe/Berlin")


def fires(expr: str, zone: str, start: str, count: int) -> list[str]:
    """`count` fires after local time `start`, as local ISO strings with offsets."""
    tz = ZoneInfo(zone)
    sched = CronSchedule(expr, tz)
    current = datetime.fromisoformat(start).replace(tzinfo=tz)
    out = []
    for _ in range(count):
        current = sched.next_after(current)
        assert current is not None
        out.append(current.astimezone(tz).isoformat(timespec="minutes"))
    return out


# -- the day-of-month / day-of-week rule (reference §1.4) -------------------------------------


def test_both_days_restricted_means_either() -> None:
    # 30 4 1,15 * 5: the 1st, the 15th and every Friday (March 2024: Fri 1st, 8th, 15th, 22nd...)
    assert fires("30 4 1,15 * 5", "UTC", "2024-03-01T00:00", 5) == [
        "2024-03-01T04:30+00:00",
        "2024-03-08T04:30+00:00",
        "2024-03-15T04:30+00:00",
        "2024-03-22T04:30+00:00",
        "2024-03-29T04:30+00:00",
    ]
    assert fires("0 0 1,15 * 3", "UTC", "2024-01-01T01:00", 4) == [
        "2024-01-03T00:00+00:00",
        "2024-01-10T00:00+00:00",
        "2024-01-15T00:00+00:00",
        "2024-01-17T00:00+00:00",
    ]


def test_star_bug_step_in_day_of_month_means_both() -> None:
    # */2 starts with '*': Sundays that are odd dates (2024-01-07 is a Sunday).
    assert fires("0 0 */2 * sun", "UTC", "2024-01-01T00:00", 4) == [
        "2024-01-07T00:00+00:00",
        "2024-01-21T00:00+00:00",
        "2024-02-11T00:00+00:00",
        "2024-02-25T00:00+00:00",
    ]


def test_explicit_full_range_is_not_star() -> None:
    # 1-31 is written without '*', so the OR rule applies and every day matches.
    assert fires("0 0 1-31 * mon", "UTC", "2024-01-01T00:00", 3) == [
        "2024-01-02T00:00+00:00",
        "2024-01-03T00:00+00:00",
        "2024-01-04T00:00+00:00",
    ]


def test_star_day_of_week_with_day_of_month() -> None:
    assert fires("0 0 13 * *", "UTC", "2024-01-01T00:00", 2) == [
        "2024-01-13T00:00+00:00",
        "2024-02-13T00:00+00:00",
    ]


@pytest.mark.parametrize(
    ("keyword", "same_as"),
    [
        ("@yearly", "0 0 1 1 *"),
        ("@annually", "0 0 1 1 *"),
        ("@monthly", "0 0 1 * *"),
        ("@weekly", "0 0 * * 0"),
        ("@daily", "0 0 * * *"),
        ("@midnight", "0 0 * * *"),
        ("@hourly", "0 * * * *"),
    ],
)
def test_keywords(keyword: str, same_as: str) -> None:
    assert fires(keyword, "UTC", "2024-02-10T10:10", 3) == fires(
        same_as, "UTC", "2024-02-10T10:10", 3
    )
    assert CronSchedule(keyword, UTC).spec == keyword
    assert CronSchedule(keyword, UTC).kind == "crontab"


def test_weekday_seven_and_zero_are_sunday() -> None:
    assert fires("0 12 * * 7", "UTC", "2024-01-01T00:00", 2) == fires(
        "0 12 * * 0", "UTC", "2024-01-01T00:00", 2
    )


def test_steps_count_within_the_field() -> None:
    # */35 in minutes gives :00 and :35, never carrying into the next hour.
    assert fires("*/35 * * * *", "UTC", "2024-01-01T00:00", 4) == [
        "2024-01-01T00:35+00:00",
        "2024-01-01T01:00+00:00",
        "2024-01-01T01:35+00:00",
        "2024-01-01T02:00+00:00",
    ]


def test_trailing_garbage_is_ignored_like_debian() -> None:
    # 5#3 is read as 5: every Friday, not the third Friday.
    assert fires("0 0 * * 5#3", "UTC", "2024-01-01T00:00", 3) == [
        "2024-01-05T00:00+00:00",
        "2024-01-12T00:00+00:00",
        "2024-01-19T00:00+00:00",
    ]


@pytest.mark.parametrize("expr", ["0 0 * * fri-sun", "10-5 * * * *", "0 0 30 2 *", "0 0 31 4,6 *"])
def test_never_matching_schedules(expr: str) -> None:
    sched = CronSchedule(expr, UTC)
    assert sched.next_after(datetime(2024, 1, 1, tzinfo=UTC)) is None
    assert "never" in sched.describe()


@pytest.mark.parametrize(
    ("expr", "word"),
    [
        ("60 * * * *", "bad minute"),
        ("* 24 * * *", "bad hour"),
        ("* * 0 * *", "bad day-of-month"),
        ("* * * 13 *", "bad month"),
        ("* * * * 8", "bad day-of-week"),
        ("5/10 * * * *", "bad minute"),
        ("*/0 * * * *", "bad minute"),
        ("* * * * sunday", "bad day-of-week"),
        ("* * * january *", "bad month"),
        ("* * L * *", "bad day-of-month"),
        ("* * * *", "bad day-of-week"),
        ("@Daily", "bad time specifier"),
        ("@reboot", "bad time specifier"),
        ("@every 5m", "bad time specifier"),
        ("", "bad minute"),
    ],
)
def test_errors_use_cron_words(expr: str, word: str) -> None:
    with pytest.raises(ValueError, match=word):
        CronSchedule(expr, UTC)


def test_next_after_is_strict_and_utc() -> None:
    sched = CronSchedule("30 6 * * *", BERLIN)
    at = datetime(2024, 6, 1, 6, 30, tzinfo=BERLIN)
    nxt = sched.next_after(at)
    assert nxt == datetime(2024, 6, 2, 4, 30, tzinfo=UTC)
    assert nxt.utcoffset() == timedelta(0)
    assert sched.next_after(at - timedelta(seconds=1)) == at.astimezone(UTC)
    with pytest.raises(ValueError):
        sched.next_after(datetime(2024, 1, 1))


# -- DST (reference §1.9, §2.5): Europe/Berlin 2024, 03-31 02:00->03:00, 10-27 03:00->02:00 ---


def test_fixed_time_in_skipped_hour_runs_right_after_it() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00", 2) == [
        "2024-03-31T03:00+02:00",
        "2024-04-01T02:30+02:00",
    ]


def test_several_fixed_times_in_the_gap_collapse_into_one_run() -> None:
    assert fires("0,15,30,45 2 * * *", "Europe/Berlin", "2024-03-31T01:50", 2) == [
        "2024-03-31T03:00+02:00",
        "2024-04-01T02:00+02:00",
    ]


def test_fixed_time_in_repeated_hour_runs_once() -> None:
    assert fires("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00", 2) == [
        "2024-10-27T02:30+02:00",
        "2024-10-28T02:30+01:00",
    ]
    assert fires("0 1,2,3,4 * * *", "Europe/Berlin", "2024-10-27T00:30", 4) == [
        "2024-10-27T01:00+02:00",
        "2024-10-27T02:00+02:00",
        "2024-10-27T03:00+01:00",
        "2024-10-27T04:00+01:00",
    ]


def test_wildcard_jobs_follow_the_wall_clock() -> None:
    # Hourly job: runs in both passes of the repeated hour.
    assert fires("0 * * * *", "Europe/Berlin", "2024-10-27T01:30", 3) == [
        "2024-10-27T02:00+02:00",
        "2024-10-27T02:00+01:00",
        "2024-10-27T03:00+01:00",
    ]
    # Minute field starts with '*': not caught up after the gap, so nothing on 03-31.
    assert fires("*/30 2 * * *", "Europe/Berlin", "2024-03-30T12:00", 3) == [
        "2024-04-01T02:00+02:00",
        "2024-04-01T02:30+02:00",
        "2024-04-02T02:00+02:00",
    ]


def test_fixed_time_southern_hemisphere() -> None:
    # Australia/Sydney 2024: 04-07 03:00 -> 02:00, 10-06 02:00 -> 03:00.
    assert fires("30 2 * * *", "Australia/Sydney", "2024-04-06T12:00", 2) == [
        "2024-04-07T02:30+11:00",
        "2024-04-08T02:30+10:00",
    ]
    assert fires("30 2 * * *", "Australia/Sydney", "2024-10-05T12:00", 2) == [
        "2024-10-06T03:00+11:00",
        "2024-10-07T02:30+11:00",
    ]


def test_half_hour_dst_lord_howe() -> None:
    # Lord Howe 2024-04-07: 02:00 (+11) -> 01:30 (+10:30); wildcard job repeats 01:30-01:59 only.
    assert fires("*/30 1,2 * * *", "Australia/Lord_Howe", "2024-04-07T00:50", 5) == [
        "2024-04-07T01:00+11:00",
        "2024-04-07T01:30+11:00",
        "2024-04-07T01:30+10:30",
        "2024-04-07T02:00+10:30",
        "2024-04-07T02:30+10:30",
    ]
    # 2024-10-06: 02:00 -> 02:30; a fixed 02:15 runs at 02:30.
    assert fires("15 2 * * *", "Australia/Lord_Howe", "2024-10-05T12:00", 2) == [
        "2024-10-06T02:30+11:00",
        "2024-10-07T02:15+11:00",
    ]


def test_midnight_transition_santiago() -> None:
    # America/Santiago 2024-09-08: 00:00 -> 01:00. A fixed midnight job runs at 01:00; a
    # wildcard job at 01:xx runs normally from 01:00.
    assert fires("0 0 * * *", "America/Santiago", "2024-09-07T12:00", 2) == [
        "2024-09-08T01:00-03:00",
        "2024-09-09T00:00-03:00",
    ]
    assert fires("* 1 * * sun", "America/Santiago", "2024-09-07T12:00", 2) == [
        "2024-09-08T01:00-03:00",
        "2024-09-08T01:01-03:00",
    ]


def test_start_inside_second_pass_skips_already_passed_first_pass() -> None:
    tz = ZoneInfo("Europe/Berlin")
    second_pass = datetime(2024, 10, 27, 2, 10, tzinfo=tz, fold=1)
    sched = CronSchedule("30 2 * * *", tz)
    assert sched.next_after(second_pass) == datetime(2024, 10, 28, 1, 30, tzinfo=UTC)
    wildcard = CronSchedule("30 * * * *", tz)
    assert wildcard.next_after(second_pass) == datetime(2024, 10, 27, 1, 30, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expr", "words"),
    [
        ("25 6 * * *", "at 06:25 every day"),
        ("17 * * * *", "at minute 17 past every hour"),
        ("*/15 9-17 * * mon-fri", "every 15 minutes during hours 9 to 17 on Monday to Friday"),
        ("0 0 */2 * sun", "on Sundays that fall on days 1, 3"),
        ("30 4 1,15 * 5", "on days 1 and 15 of the month or on Friday (either matches)"),
        ("52 6 1 * *", "at 06:52 on day 1 of the month"),
        ("0 0 1 jan *", "in January"),
    ],
)
def test_describe(expr: str, words: str) -> None:
    text = CronSchedule(expr, BERLIN).describe()
    assert words in text
    assert "Europe/Berlin" in text
