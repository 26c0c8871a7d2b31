"""Six-field, seconds-first cron expressions (Dkron's dialect of robfig/cron v3).

`parse_fields` turns "sec min hour dom month dow" into `CronFields`: the allowed values of each
field plus "next allowed value >= v" tables, so that `next_wall` finds the next matching local
wall-clock second by jumping from field to field instead of stepping second by second.
Wall times are integers: seconds since 1970-01-01 00:00 on the local clock, with no zone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from dkron_pkg.schedule_base import parse_error

EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
MAX_YEAR = 9998
FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_BOUNDS = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_NAMES = {
    4: {n: i + 1 for i, n in enumerate(MONTH_NAMES)},
    5: {n: i for i, n in enumerate(DAY_NAMES)},
}
_NAME_HINT = {4: " or a month name (JAN-DEC)", 5: " or a day name (SUN-SAT)"}
SIX_FIELDS_HELP = "expected 6 fields (second minute hour day-of-month month day-of-week), got {n}"
CRONTAB_HINT = (
    '; Dkron schedules start with a seconds field, e.g. "0 30 2 * * *" for 02:30 every day, '
    'or write "@crontab 30 2 * * *" to use a standard 5-field crontab line'
)


def hash_values(job_name: str) -> tuple[int, ...]:
    """What `~` stands for in each field: derived from the sum of the name's code points."""
    h = sum(ord(ch) for ch in job_name)
    return (h % 60, h % 60, h % 24, h % 28 + 1, h % 12 + 1, h % 7)


def split_fields(text: str, job_name: str) -> list[str]:
    """The six field texts, with `~` replaced per field; wrong field counts are errors."""
    fields = text.split()
    if len(fields) != 6:
        detail = SIX_FIELDS_HELP.format(n=len(fields))
        raise parse_error(detail + (CRONTAB_HINT if len(fields) == 5 else ""))
    hashed = hash_values(job_name)
    return [f.replace("~", str(hashed[i])) if "~" in f else f for i, f in enumerate(fields)]


@dataclass(frozen=True)
class Field:
    """One parsed field: its text, allowed values, and whether it counts as `*` for days."""

    text: str
    values: tuple[int, ...]
    star: bool  # written as * or ? (without a step above 1): the robfig "star bit"
    wildcard: bool  # written with *, ? or a /n step: "not a fixed time" for the DST rules

    def mask(self) -> int:
        bits = 0
        for v in self.values:
            bits |= 1 << v
        return bits


def _parse_value(token: str, index: int, whole: str) -> int:
    field = FIELD_NAMES[index]
    if not token:
        raise parse_error(f'{field} field: empty value in "{whole}"')
    names = _NAMES.get(index)
    if names is not None and token.upper() in names:
        return names[token.upper()]
    if not (token.isascii() and token.isdigit()):
        hint = _NAME_HINT.get(index, "")
        raise parse_error(f'{field} field: "{token}" is not a number{hint}')
    value = int(token)
    low, high = _BOUNDS[index]
    if value > high:
        extra = " (use 0 or SUN for Sunday)" if index == 5 and value == 7 else ""
        raise parse_error(f"{field} field: {value} is above {high}{extra}")
    if value < low:
        raise parse_error(f"{field} field: {value} is below {low}")
    return value


def _parse_part(part: str, index: int) -> tuple[set[int], bool]:
    """One comma-separated part: `*`, `?`, `a`, `a-b`, each optionally with `/n`."""
    field = FIELD_NAMES[index]
    low, high = _BOUNDS[index]
    range_text, slash, step_text = part.partition("/")
    if "/" in step_text:
        raise parse_error(f'{field} field: "{part}" has more than one "/"')
    step = 1
    if slash:
        if not (step_text.isascii() and step_text.isdigit()):
            raise parse_error(f'{field} field: step "{step_text}" in "{part}" is not a number')
        step = int(step_text)
        if step == 0:
            raise parse_error(f'{field} field: step in "{part}" must be 1 or more')
    star = False
    if range_text in ("*", "?"):
        start, end, star = low, high, step == 1
    else:
        first, dash, last = range_text.partition("-")
        if "-" in last:
            raise parse_error(f'{field} field: "{part}" has more than one "-"')
        start = _parse_value(first, index, part)
        if dash:
            end = _parse_value(last, index, part)
        else:
            end = high if slash else start  # "a/n" means "a-max/n", as in robfig/cron
        if start > end:
            raise parse_error(
                f'{field} field: range "{range_text}" goes backwards ({start} is after {end})'
            )
    return set(range(start, end + 1, step)), star


def parse_field(text: str, index: int) -> Field:
    """Parse one field's text (already hash-substituted)."""
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise parse_error(f'{FIELD_NAMES[index]} field: empty value in "{text}"')
        part_values, part_star = _parse_part(part, index)
        values |= part_values
        star = star or part_star
    wildcard = any(ch in text for ch in "*?/")
    return Field(text, tuple(sorted(values)), star, wildcard)


def _next_table(values: tuple[int, ...], high: int) -> tuple[int, ...]:
    """table[v] = smallest allowed value >= v, or -1; sized so that high + 1 gives -1."""
    table = [-1] * (high + 2)
    nxt = -1
    for v in range(high, -1, -1):
        if v in values:
            nxt = v
        table[v] = nxt
    return tuple(table)


def days_in_month(year: int, month: int) -> int:
    if month == 2:
        return 29 if year % 4 == 0 and (year % 100 != 0 or year % 400 == 0) else 28
    return 30 if month in (4, 6, 9, 11) else 31


class CronFields:
    """The six fields of one expression, with fast "next matching wall second" search."""

    def __init__(self, fields: list[Field]) -> None:
        self.fields = fields
        sec, minute, hour, dom, month, dow = fields
        self.second_next = _next_table(sec.values, 59)
        self.minute_next = _next_table(minute.values, 59)
        self.hour_next = _next_table(hour.values, 23)
        self.dom_next = _next_table(dom.values, 31)
        self.month_next = _next_table(month.values, 12)
        self.first_month = month.values[0]
        self.dom_mask = dom.mask()
        self.dow_mask = dow.mask()
        # robfig: when either day field is * or ?, both must match; otherwise either may.
        self.days_and = dom.star or dow.star
        all_dom, all_dow = len(dom.values) == 31, len(dow.values) == 7
        self.every_day = all_dom and all_dow
        self.dom_only = self.days_and and all_dow  # weekday never restricts
        self.hour_wildcard = hour.wildcard

    def day_matches(self, year: int, month: int, day: int) -> bool:
        """Whether a calendar day matches the day-of-month and day-of-week fields."""
        dom_ok = bool(self.dom_mask >> day & 1)
        dow_ok = bool(self.dow_mask >> (date(year, month, day).isoweekday() % 7) & 1)
        return (dom_ok and dow_ok) if self.days_and else (dom_ok or dow_ok)

    def matches_wall(self, wall: int) -> bool:
        """Whether a local wall-clock second matches all six fields."""
        days, secs = divmod(wall, 86400)
        d = date.fromordinal(days + EPOCH_ORDINAL)
        hour, rest = divmod(secs, 3600)
        minute, second = divmod(rest, 60)
        return (
            self.second_next[second] == second
            and self.minute_next[minute] == minute
            and self.hour_next[hour] == hour
            and self.month_next[d.month] == d.month
            and self.day_matches(d.year, d.month, d.day)
        )

    def _next_day(self, year: int, month: int, day: int, dim: int) -> int:
        """First matching day >= `day` in the month, or -1."""
        if day > dim:
            return -1
        if self.every_day:
            return day
        if self.dom_only:
            nxt = self.dom_next[day]
            return nxt if 0 < nxt <= dim else -1
        weekday = date(year, month, day).isoweekday() % 7
        dom_mask, dow_mask, days_and = self.dom_mask, self.dow_mask, self.days_and
        for d in range(day, dim + 1):
            dom_ok = dom_mask >> d & 1
            dow_ok = dow_mask >> weekday & 1
            if (dom_ok and dow_ok) if days_and else (dom_ok or dow_ok):
                return d
            weekday = 0 if weekday == 6 else weekday + 1
        return -1

    def next_wall(self, lo: int, hi: int) -> int | None:
        """Smallest matching wall second w with lo <= w < hi, or None."""
        if lo >= hi:
            return None
        days, secs = divmod(lo, 86400)
        start = date.fromordinal(days + EPOCH_ORDINAL)
        y, mo, d = start.year, start.month, start.day
        h, rest = divmod(secs, 3600)
        mi, s = divmod(rest, 60)
        last_ordinal = (hi - 1) // 86400 + EPOCH_ORDINAL
        while True:
            m2 = self.month_next[mo]
            if m2 != mo:
                if m2 < 0:
                    y, m2 = y + 1, self.first_month
                mo, d, h, mi, s = m2, 1, 0, 0, 0
                if y > MAX_YEAR or date(y, mo, 1).toordinal() > last_ordinal:
                    return None
            dim = days_in_month(y, mo)
            d2 = self._next_day(y, mo, d, dim)
            if d2 < 0:
                mo, d, h, mi, s = mo + 1, 1, 0, 0, 0
                if mo > 12:
                    y, mo = y + 1, 1
                if y > MAX_YEAR or date(y, mo, 1).toordinal() > last_ordinal:
                    return None
                continue
            if d2 != d:
                d, h, mi, s = d2, 0, 0, 0
            ordinal = date(y, mo, d).toordinal()
            if ordinal > last_ordinal:
                return None
            h2 = self.hour_next[h]
            if h2 < 0:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if h2 != h:
                h, mi, s = h2, 0, 0
            mi2 = self.minute_next[mi]
            if mi2 < 0:
                h, mi, s = h + 1, 0, 0
                continue
            if mi2 != mi:
                mi, s = mi2, 0
            s2 = self.second_next[s]
            if s2 < 0:
                mi, s = mi + 1, 0
                continue
            wall = (ordinal - EPOCH_ORDINAL) * 86400 + h * 3600 + mi * 60 + s2
            return wall if wall < hi else None


def parse_fields(text: str, job_name: str = "") -> CronFields:
    """Parse a six-field expression; `~` takes the job's hash values."""
    texts = split_fields(text, job_name)
    return CronFields([parse_field(t, i) for i, t in enumerate(texts)])
