"""Plain-words descriptions of cron fields ("at 08:30:00 every day (Europe/Berlin)").

Shown by the API and the UI so that a user can check what a schedule means before it fires.
"""

from __future__ import annotations

from dkron_pkg.schedule_fields import CronFields, Field

_MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
_DAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


def _runs(values: tuple[int, ...]) -> list[tuple[int, int]]:
    """Consecutive runs of sorted values: (1, 2, 3, 7) -> [(1, 3), (7, 7)]."""
    runs: list[tuple[int, int]] = []
    for v in values:
        if runs and runs[-1][1] == v - 1:
            runs[-1] = (runs[-1][0], v)
        else:
            runs.append((v, v))
    return runs


def _listing(values: tuple[int, ...], names: tuple[str, ...] | None = None, base: int = 0) -> str:
    def show(v: int) -> str:
        return names[v - base] if names else str(v)

    out = []
    for a, b in _runs(values):
        if a == b:
            out.append(show(a))
        elif b == a + 1:
            out += [show(a), show(b)]
        else:
            out.append(f"{show(a)} to {show(b)}" if names else f"{a}-{b}")
    return ", ".join(out)


def _step(field: Field, low: int, high: int) -> int:
    """n when the field is exactly every n-th value from the bottom of its range, else 0."""
    v = field.values
    if len(v) > 1 and v[0] == low:
        n = v[1] - v[0]
        if n > 1 and v == tuple(range(low, high + 1, n)):
            return n
    return 0


def _unit_words(field: Field, unit: str, low: int, high: int) -> str:
    """'every second', 'every 10 seconds', 'second 5' or 'seconds 0-10, 30'."""
    if len(field.values) == high - low + 1:
        return f"every {unit}"
    n = _step(field, low, high)
    if n:
        return f"every {n} {unit}s"
    if len(field.values) == 1:
        return f"{unit} {field.values[0]}"
    return f"{unit}s {_listing(field.values)}"


def _time_words(fields: CronFields) -> str:
    sec, minute, hour = fields.fields[:3]
    singles = [len(f.values) == 1 for f in (sec, minute, hour)]
    if all(singles):
        return f"at {hour.values[0]:02d}:{minute.values[0]:02d}:{sec.values[0]:02d}"
    hour_w = _unit_words(hour, "hour", 0, 23)
    if singles[0] and singles[1]:
        at = f"at minute {minute.values[0]}"
        if sec.values[0]:
            at += f", second {sec.values[0]}"
        return f"{hour_w} {at}" if hour_w.startswith("every") else f"{at} of {hour_w}"
    sec_w = _unit_words(sec, "second", 0, 59)
    min_w = _unit_words(minute, "minute", 0, 59)
    words = []
    if not (singles[0] and sec.values[0] == 0):
        words.append(sec_w if sec_w.startswith("every") else "at " + sec_w)
    if not (min_w == "every minute" and words):
        words.append(min_w if min_w.startswith("every") or not words else "in " + min_w)
    if hour_w != "every hour":
        words.append(("at " if len(words) == 0 else "during ") + hour_w)
    return " ".join(words)


def _day_words(fields: CronFields) -> str:
    dom, month, dow = fields.fields[3:]
    dom_part = "" if len(dom.values) == 31 and dom.star else f"on day {_listing(dom.values)}"
    if dom_part and len(dom.values) > 1:
        dom_part = "on days " + _listing(dom.values)
    if dom_part:
        dom_part += " of the month"
    dow_part = "" if len(dow.values) == 7 and dow.star else "on " + _listing(dow.values, _DAYS)
    if fields.days_and:
        days = " and ".join(p for p in (dom_part, dow_part) if p) or "every day"
    else:
        days = f"{dom_part} or {dow_part}"
    if len(month.values) < 12:
        days += " in " + _listing(month.values, _MONTHS, base=1)
    return days


def describe_fields(fields: CronFields) -> str:
    """Time of day, then days, e.g. 'every 5 minutes during hours 9-17 on Monday to Friday'."""
    time_words, day_words = _time_words(fields), _day_words(fields)
    if day_words == "every day" and time_words.startswith("every"):
        return time_words
    return f"{time_words} {day_words}"
