"""Plain-words descriptions of crontab schedules, for import plans and the UI.

The text states the star rule explicitly when it matters ("on day 1 or on Friday" versus "on
Sundays that fall on day 1, 3, ..."), because that is the rule users most often get wrong.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from crontab_compat.schedule import CronSchedule

MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _runs(values: list[int]) -> list[tuple[int, int]]:
    """Group sorted values into consecutive runs."""
    runs: list[tuple[int, int]] = []
    for value in values:
        if runs and value == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], value)
        else:
            runs.append((value, value))
    return runs


def _join(words: list[str]) -> str:
    if len(words) <= 2:
        return " and ".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def _list(values: list[int], name=str, dash: str = " to ") -> str:
    parts = []
    for first, last in _runs(values):
        if first == last:
            parts.append(name(first))
        elif last == first + 1:
            parts.extend((name(first), name(last)))
        else:
            parts.append(f"{name(first)}{dash}{name(last)}")
    return _join(parts)


def _step(values: list[int], low: int, high: int) -> int | None:
    """The step n when values are exactly low, low+n, ... (as `*/n` writes), else None."""
    if len(values) < 2 or values[0] != low:
        return None
    step = values[1] - values[0]
    expected = list(range(low, high + 1, step))
    return step if values == expected else None


def _time_part(sched: CronSchedule) -> str:
    minutes, hours = sched.minutes, sched.hours
    all_minutes = len(minutes) == 60
    all_hours = len(hours) == 24
    if len(minutes) == 1 and len(hours) <= 6:
        return "at " + _join([f"{h:02d}:{minutes[0]:02d}" for h in hours])
    if all_minutes:
        minute_text = "every minute"
    elif (step := _step(minutes, 0, 59)) is not None:
        minute_text = f"every {step} minutes"
    elif len(minutes) == 1:
        minute_text = f"at minute {minutes[0]}"
    else:
        minute_text = "at minutes " + _list(minutes, dash="-")
    if all_hours:
        return minute_text if not minute_text.startswith("at") else minute_text + " past every hour"
    if (step := _step(hours, 0, 23)) is not None:
        return f"{minute_text} of every {step} hours"
    return f"{minute_text} during hour{'s' if len(hours) > 1 else ''} " + _list(hours)


def _day_part(sched: CronSchedule) -> str:
    doms = sorted(sched.doms)
    dows = sorted(sched.dows)
    all_doms = len(doms) == 31
    all_dows = len(dows) == 7
    dom_text = "day " + _list(doms) if len(doms) == 1 else "days " + _list(doms)
    dow_text = _list(dows, name=lambda d: WEEKDAYS[d])
    if not doms and sched.day_and or (not doms and not dows):
        return "never (no day can match)"
    if sched.day_and:
        if all_doms and all_dows:
            return "every day"
        if all_doms:
            return "on " + dow_text
        if all_dows:
            return "on " + dom_text + " of the month"
        plural = _list(dows, name=lambda d: WEEKDAYS[d] + "s")
        return f"on {plural} that fall on {dom_text} of the month (both must match)"
    if all_doms or all_dows:
        return "every day"
    return f"on {dom_text} of the month or on {dow_text} (either matches)"


def describe_schedule(sched: CronSchedule) -> str:
    """Describe a CronSchedule in plain English."""
    if sched.never:
        return "never runs (no date matches)"
    words = [_time_part(sched), _day_part(sched)]
    months = sorted(sched.months)
    if len(months) < 12:
        words.append("in " + _list(months, name=lambda m: MONTHS[m - 1]))
    zone = getattr(sched.tz, "key", None) or str(sched.tz)
    words.append(f"({zone} time)")
    return " ".join(words)
