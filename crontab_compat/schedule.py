"""Five-field crontab schedules with Debian cron's meaning, including its DST behaviour.

Matching: minute, hour and month must match; for the day, if either day field was written with a
leading `*` both day fields must match, otherwise either may (Vixie's syntactic "star" rule).

Time zones (Debian's "Better-timeskip-handling"): an entry whose minute or hour field starts with
`*` is a *wildcard* entry and simply follows the wall clock (it is skipped in a spring-forward gap
and runs in both passes of a repeated hour). Any other entry is *fixed-time*: a time that falls in
a gap runs at the first instant after the gap, and a time in a repeated hour runs once, in the
first pass. Several fixed times falling in the same gap collapse into one run at the gap's end.
"""

from __future__ import annotations

import bisect
from datetime import UTC, date, datetime, time, timedelta, tzinfo

from crontab_compat.fields import FIELD_SPECS, parse_field

KEYWORDS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_MINUTE = timedelta(minutes=1)
_SEARCH_YEARS = 50
_MAX_MONTH_DAYS = {1: 31, 2: 29, 3: 31, 4: 30, 5: 31, 6: 30, 7: 31, 8: 31, 9: 30, 10: 31}
_MAX_MONTH_DAYS.update({11: 30, 12: 31})


def expand_keyword(expr: str) -> str:
    """Return the five fields a keyword stands for, or the text unchanged."""
    text = expr.strip()
    if text.startswith("@"):
        if text == "@reboot":
            raise ValueError("bad time specifier: @reboot runs at boot and has no time schedule")
        if text not in KEYWORDS:
            raise ValueError(f"bad time specifier: unknown keyword {text!r}")
        return KEYWORDS[text]
    return text


class CronSchedule:
    """A crontab time specification evaluated in one time zone with Debian cron's rules."""

    kind = "crontab"

    def __init__(self, expr: str, tz: tzinfo) -> None:
        if not isinstance(expr, str) or not expr.strip():
            raise ValueError("bad minute: empty crontab schedule")
        fields_text = expand_keyword(expr).split()
        if len(fields_text) != 5:
            if len(fields_text) < 5:
                missing = FIELD_SPECS[len(fields_text)].error
                raise ValueError(f"{missing}: expected 5 time fields, got {len(fields_text)}")
            raise ValueError(f"bad command: expected 5 time fields, got {len(fields_text)}")
        parsed = []
        for text, spec in zip(fields_text, FIELD_SPECS, strict=True):
            try:
                parsed.append(parse_field(text, spec))
            except ValueError as exc:
                raise ValueError(f"{exc} in {text!r}") from None
        self.spec = expr.strip() if expr.strip().startswith("@") else " ".join(fields_text)
        self.tz = tz
        self.fields = parsed
        minute, hour, dom, month, dow = parsed
        self.minutes = sorted(minute.values)
        self.hours = sorted(hour.values)
        self.doms = dom.values
        self.months = month.values
        self.dows = frozenset(v % 7 for v in dow.values)
        self.dom_star = dom.star
        self.dow_star = dow.star
        self.day_and = dom.star or dow.star
        self.wildcard = minute.star or hour.star
        self.never = not self._can_ever_match()

    def __repr__(self) -> str:
        return f"CronSchedule({self.spec!r}, {self.tz!r})"

    def describe(self) -> str:
        from crontab_compat.describe import describe_schedule

        return describe_schedule(self)

    # -- calendar matching in wall-clock (naive) time -------------------------------------

    def _can_ever_match(self) -> bool:
        if not (self.minutes and self.hours and self.months):
            return False
        dom_possible = any(d <= _MAX_MONTH_DAYS[m] for m in self.months for d in self.doms)
        if self.day_and:
            return dom_possible and bool(self.dows)
        return dom_possible or bool(self.dows)

    def day_matches(self, day: date) -> bool:
        dom_ok = day.day in self.doms
        dow_ok = (day.isoweekday() % 7) in self.dows
        return (dom_ok and dow_ok) if self.day_and else (dom_ok or dow_ok)

    def matches_wall(self, wall: datetime) -> bool:
        """True when a naive wall-clock minute matches the five fields."""
        return (
            wall.minute in self.minutes
            and wall.hour in self.hours
            and wall.month in self.months
            and self.day_matches(wall.date())
        )

    def _first_time_from(self, hour: int, minute: int) -> time | None:
        index = bisect.bisect_left(self.hours, hour)
        while index < len(self.hours):
            h = self.hours[index]
            start = minute if h == hour else 0
            m_index = bisect.bisect_left(self.minutes, start)
            if m_index < len(self.minutes):
                return time(h, self.minutes[m_index])
            index += 1
        return None

    def next_wall(self, start: datetime) -> datetime | None:
        """First naive wall-clock minute at or after `start` (naive) that matches."""
        if self.never:
            return None
        day = start.date()
        hour, minute = start.hour, start.minute
        if start.second or start.microsecond:
            hour, minute = (start.replace(second=0, microsecond=0) + _MINUTE).timetuple()[3:5]
            day = (start.replace(second=0, microsecond=0) + _MINUTE).date()
        last_year = day.year + _SEARCH_YEARS
        while day.year <= last_year:
            if day.month not in self.months:
                day = _first_of_next_month(day)
                hour = minute = 0
                continue
            if self.day_matches(day):
                found = self._first_time_from(hour, minute)
                if found is not None:
                    return datetime.combine(day, found)
            day += timedelta(days=1)
            hour = minute = 0
        return None

    # -- mapping wall-clock times to instants -----------------------------------------------

    def _instants(self, wall: datetime) -> list[datetime]:
        """Every real instant (aware, in tz) whose local wall time is `wall`: zero, one or two."""
        found: list[datetime] = []
        for fold in (0, 1):
            candidate = wall.replace(tzinfo=self.tz, fold=fold)
            back = candidate.astimezone(UTC).astimezone(self.tz)
            if back.replace(tzinfo=None) == wall and all(
                back.astimezone(UTC) != f.astimezone(UTC) for f in found
            ):
                found.append(back)
        return found

    def _fixed_instant(self, wall: datetime) -> datetime:
        """The instant a fixed-time entry runs for `wall`: the first pass, or the gap's end."""
        probe = wall
        for _ in range(24 * 60):
            instants = self._instants(probe)
            if instants:
                return min(instants, key=lambda i: i.astimezone(UTC))
            probe += _MINUTE
        raise ValueError(f"time zone {self.tz} has no valid time near {wall}")

    def next_after(self, after: datetime) -> datetime | None:
        """First run strictly after `after` (aware), as an aware UTC datetime; None if never."""
        if after.tzinfo is None:
            raise ValueError("next_after needs an aware datetime")
        local = after.astimezone(self.tz)
        wall = local.replace(tzinfo=None, second=0, microsecond=0)
        if self.wildcard:
            return self._next_wildcard(after, local, wall)
        return self._next_fixed(after, wall)

    def _next_fixed(self, after: datetime, wall: datetime) -> datetime | None:
        probe = wall + _MINUTE
        while True:
            candidate = self.next_wall(probe)
            if candidate is None:
                return None
            instant = self._fixed_instant(candidate).astimezone(UTC)
            if instant > after:
                return instant
            probe = candidate + _MINUTE

    def _next_wildcard(self, after: datetime, local: datetime, wall: datetime) -> datetime | None:
        probe = wall + _MINUTE
        if local.fold == 0 and len(self._instants(wall)) == 2:
            # In the first pass of a repeated hour: earlier wall times come again in the second.
            probe = wall - timedelta(hours=3)
        best: datetime | None = None
        while True:
            candidate = self.next_wall(probe)
            if candidate is None:
                return best
            instants = self._instants(candidate)
            for instant in instants:
                utc = instant.astimezone(UTC)
                if utc > after and (best is None or utc < best):
                    best = utc
            if best is not None and len(instants) == 1 and candidate > wall:
                return best
            probe = candidate + _MINUTE


def _first_of_next_month(day: date) -> date:
    if day.month == 12:
        return date(day.year + 1, 1, 1)
    return date(day.year, day.month + 1, 1)


__all__ = ["KEYWORDS", "CronSchedule", "expand_keyword"]
