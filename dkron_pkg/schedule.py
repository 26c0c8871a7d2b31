"""Schedule text -> next fire times, in Dkron's syntax, with time zones and a clear DST rule.

Syntax: six-field seconds-first cron as robfig/cron v3 reads it (`* ? , - /`, `a/n` = `a-max/n`,
JAN-DEC and SUN-SAT in any case, 0-6 for days of week, the Vixie OR rule when both day fields
are restricted), `~` hash values from the job name, the descriptors @yearly @annually @monthly
@weekly @daily @midnight @hourly @minutely, `@every <Go duration>`, `@at <RFC 3339 time>`,
`@manually`, `@reboot`, `@crontab <5 fields>`, and the `CRON_TZ=<zone> ` / `TZ=<zone> ` prefixes.

Time zones: a prefix wins over the job's `timezone`, which wins over the server's zone. Unlike
Dkron, the zone applies to descriptors too (`@daily` is midnight in the job's zone), and an
`@at` time written without an offset is read in that zone.

DST rule for cron expressions and the calendar descriptors (the rule of Vixie cron, with
"fixed time" decided by the hour field):
- A spec is *wildcard-hour* when its hour field is written with `*`, `?` or a `/n` step
  (`*`, `*/2`, `0/3`, `@hourly`, `@minutely`); otherwise it is *fixed-hour* (`8`, `1-5`, `@daily`).
- Spring forward (local times that do not exist): a fixed-hour spec whose time falls in the gap
  fires once, at the first instant after the gap (02:30 in Berlin on the last Sunday of March
  fires at 03:00 CEST); a wildcard-hour spec simply has no fire times in the gap.
- Fall back (local times that happen twice): a fixed-hour spec fires once, at the first
  occurrence; a wildcard-hour spec fires at both occurrences (`0 0 * * * *` fires at 02:00 CEST
  and again at 02:00 CET).
Searches look 5 years ahead; a spec with no match in that window (e.g. 30 February) never fires.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

from dkron_pkg.durations import format_duration, parse_duration
from dkron_pkg.schedule_base import (
    Schedule,
    ScheduleError,
    from_epoch,
    parse_error,
    to_epoch,
    zone_name,
)
from dkron_pkg.schedule_describe import describe_fields
from dkron_pkg.schedule_fields import CronFields, parse_fields
from dkron_pkg.schedule_zone import MAX_EPOCH, load_timezone, local_timezone, timeline
from dkron_pkg.timefmt import format_rfc3339, parse_rfc3339

__all__ = [
    "HORIZON_SECONDS",
    "AtSchedule",
    "CronSpecSchedule",
    "CrontabSchedule",
    "EverySchedule",
    "ManualSchedule",
    "RebootSchedule",
    "Schedule",
    "ScheduleError",
    "load_timezone",
    "local_timezone",
    "next_times",
    "parse_schedule",
]

HORIZON_SECONDS = (5 * 365 + 2) * 86400  # "5 years", as robfig/cron searches
_DESCRIPTORS = {
    "@yearly": "0 0 0 1 1 *",
    "@annually": "0 0 0 1 1 *",
    "@monthly": "0 0 0 1 * *",
    "@weekly": "0 0 0 * * 0",
    "@daily": "0 0 0 * * *",
    "@midnight": "0 0 0 * * *",
    "@hourly": "0 0 * * * *",
    "@minutely": "0 * * * * *",
}
_KNOWN = (
    "@yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly, @minutely, "
    "@every <duration>, @at <time>, @manually, @reboot or @crontab <5 fields>"
)
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")


class CronSpecSchedule(Schedule):
    """A six-field cron expression or a calendar descriptor, evaluated in a zone (kind "cron")."""

    kind = "cron"

    def __init__(self, spec: str, tz: tzinfo, fields: CronFields, descriptor: str = "") -> None:
        super().__init__(spec, tz)
        self.fields = fields
        self.descriptor = descriptor

    def next_after_epoch(self, after: int) -> int | None:
        """Walk the constant-offset segments of the zone; in each, jump to the next wall match.

        The DST rule (module docstring) lives here: at the start of a segment that began with a
        gap, fixed-hour specs fire once for any match inside the gap; in a segment that began
        by repeating local times, fixed-hour specs skip the repeated part.
        """
        fields = self.fields
        fixed_hour = not fields.hour_wildcard
        zone = timeline(self.tz)
        horizon = min(after + HORIZON_SECONDS, MAX_EPOCH)
        x = after + 1
        while x <= horizon:
            seg = zone.segment(x, horizon)
            off = seg.offset
            lo = x + off
            if fixed_hour and seg.start is not None:
                if seg.prev_offset < off and x == seg.start:
                    gap = (seg.start + seg.prev_offset, seg.start + off)
                    if fields.next_wall(*gap) is not None:
                        return x
                elif seg.prev_offset > off:
                    lo = max(lo, seg.start + seg.prev_offset)
            end = seg.end if seg.end is not None else horizon + 1
            wall = fields.next_wall(lo, end + off)
            if wall is not None:
                return wall - off
            if seg.end is None:
                return None
            x = seg.end
        return None

    def describe(self) -> str:
        return f"{describe_fields(self.fields)} ({zone_name(self.tz)})"


class EverySchedule(Schedule):
    """`@every <duration>`: a fixed interval counted from the previous scheduled time."""

    kind = "every"

    def __init__(self, spec: str, tz: tzinfo, interval: int) -> None:
        super().__init__(spec, tz)
        self.interval = interval  # whole seconds, at least 1

    def next_after_epoch(self, after: int) -> int | None:
        nxt = after + self.interval
        return nxt if nxt <= MAX_EPOCH else None

    def describe(self) -> str:
        return f"every {format_duration(self.interval)}, counted from the previous run time"


class AtSchedule(Schedule):
    """`@at <time>`: one run at that instant, if it is still ahead."""

    kind = "at"

    def __init__(self, spec: str, tz: tzinfo, at: int) -> None:
        super().__init__(spec, tz)
        self.at = at  # Unix seconds (a fractional time is rounded up to the next second)

    def next_after_epoch(self, after: int) -> int | None:
        return self.at if self.at > after else None

    def describe(self) -> str:
        return f"once at {format_rfc3339(from_epoch(self.at), self.tz)} ({zone_name(self.tz)})"


class ManualSchedule(Schedule):
    """`@manually`: only runs started by a user or by a parent job."""

    kind = "manually"

    def next_after_epoch(self, after: int) -> int | None:
        return None

    def describe(self) -> str:
        return "only when run manually or by a parent job"


class RebootSchedule(Schedule):
    """`@reboot`: once when the agent starts; the agent does that, the clock never fires it."""

    kind = "reboot"

    def next_after_epoch(self, after: int) -> int | None:
        return None

    def describe(self) -> str:
        return "once each time the agent starts"


class CrontabSchedule(Schedule):
    """`@crontab <5 fields>`: crontab(5) meaning, computed by crontab_compat (kind "crontab")."""

    kind = "crontab"

    def __init__(self, spec: str, tz: tzinfo, expr: str, engine: object) -> None:
        super().__init__(spec, tz)
        self.expr = expr
        self.engine = engine

    def next_after_epoch(self, after: int) -> int | None:
        nxt = self.engine.next_after(from_epoch(after))  # type: ignore[attr-defined]
        if nxt is None:
            return None
        seconds = to_epoch(nxt)
        return seconds if seconds > after else seconds + 1

    def describe(self) -> str:
        words = getattr(self.engine, "describe", None)
        if callable(words):
            return str(words())
        return f'crontab schedule "{self.expr}" ({zone_name(self.tz)})'


def parse_schedule(spec: str, timezone: str = "", job_name: str = "") -> Schedule:
    """Parse a job's schedule; `timezone` is the job's field ("" = the server's zone).

    Results are cached by (spec, timezone, job name), so calling this for every job on every
    tick is cheap; the job name only matters when the spec uses `~`.
    """
    if not isinstance(spec, str):
        raise parse_error("the schedule must be a string")
    if not isinstance(timezone, str):
        raise ScheduleError("the time zone must be a string")
    name_key = job_name if "~" in spec else ""
    local_key = os.environ.get("TZ") if timezone in ("", "Local") else None
    return _parse_cached(spec, timezone, name_key, local_key)


@lru_cache(maxsize=16384)
def _parse_cached(spec: str, timezone: str, job_name: str, _local_key: str | None) -> Schedule:
    tz = load_timezone(timezone)
    text = spec.strip()
    if not text:
        raise parse_error("the schedule is empty")
    head, *rest = text.split(None, 1)
    if head.startswith(("TZ=", "CRON_TZ=")):
        tz = _prefix_zone(head)
        text = rest[0] if rest else ""
        if not text:
            raise parse_error(f'nothing follows "{head}"')
    if text.startswith("@"):
        return _parse_descriptor(spec, text, tz)
    return CronSpecSchedule(spec, tz, parse_fields(text, job_name))


def _prefix_zone(head: str) -> tzinfo:
    name = head.split("=", 1)[1]
    if not name or name == "Local":
        if not name:
            raise parse_error(f'"{head}" names no time zone')
        return local_timezone()
    try:
        return load_timezone(name)
    except ScheduleError as err:
        raise parse_error(str(err)) from None


def _parse_descriptor(spec: str, text: str, tz: tzinfo) -> Schedule:
    word, *rest = text.split(None, 1)
    arg = rest[0].strip() if rest else ""
    key = word.lower()
    if key in _DESCRIPTORS:
        if arg:
            raise parse_error(f'"{word}" takes nothing after it, got "{arg}"')
        return CronSpecSchedule(spec, tz, parse_fields(_DESCRIPTORS[key]), key)
    if key in ("@manually", "@reboot"):
        if arg:
            raise parse_error(f'"{word}" takes nothing after it, got "{arg}"')
        return ManualSchedule(spec, tz) if key == "@manually" else RebootSchedule(spec, tz)
    if key == "@every":
        return EverySchedule(spec, tz, _every_interval(arg))
    if key == "@at":
        return AtSchedule(spec, tz, _at_instant(arg, tz))
    if key == "@crontab":
        return _crontab(spec, arg, tz)
    raise parse_error(f'unknown descriptor "{word}"; expected {_KNOWN}')


def _every_interval(arg: str) -> int:
    """Whole seconds of a Go duration; sub-second parts are dropped and 1s is the minimum."""
    if not arg:
        raise parse_error('@every needs a duration, e.g. "@every 1h30m"')
    try:
        seconds = parse_duration(arg)
    except ValueError as err:
        raise parse_error(f"@every: {err}") from None
    if seconds <= 0:
        raise parse_error(f'@every needs a positive duration, got "{arg}"')
    return max(1, round(seconds * 1e9) // 10**9)


def _at_instant(arg: str, tz: tzinfo) -> int:
    """Unix seconds of an RFC 3339 time; a time without offset is read in the schedule's zone."""
    if not arg:
        raise parse_error('@at needs a time, e.g. "@at 2030-01-02T15:04:05Z"')
    if _LOCAL_TIME.match(arg):
        naive = datetime.fromisoformat(arg.replace("t", "T").replace(" ", "T"))
        wall = to_epoch(naive.replace(tzinfo=UTC))  # seconds since the local epoch
        seconds = timeline(tz).first_instant_of_wall(wall)
        return seconds + (1 if naive.microsecond else 0)
    try:
        moment = parse_rfc3339(arg)
    except ValueError as err:
        raise parse_error(f"@at: {err}") from None
    seconds = to_epoch(moment)
    return seconds + (1 if moment.microsecond else 0)


def _crontab(spec: str, expr: str, tz: tzinfo) -> Schedule:
    if not expr.startswith("@") and len(expr.split()) != 5:
        raise parse_error(
            f'@crontab needs 5 fields (minute hour day-of-month month day-of-week), got "{expr}"'
        )
    try:
        from crontab_compat.schedule import CronSchedule
    except ImportError:
        raise ScheduleError("crontab schedules are not available") from None
    try:
        engine = CronSchedule(expr, tz)
    except ValueError as err:
        message = str(err)
        if message.startswith("can't parse job schedule: "):
            raise ScheduleError(message) from None
        raise parse_error(f"@crontab: {message}") from None
    return CrontabSchedule(spec, tz, expr, engine)


def next_times(
    spec: str, timezone: str, after: datetime, count: int, job_name: str = ""
) -> list[datetime]:
    """The next `count` fire times strictly after `after` (fewer if the schedule ends)."""
    schedule = parse_schedule(spec, timezone, job_name)
    out: list[datetime] = []
    current = to_epoch(after)
    for _ in range(count):
        nxt = schedule.next_after_epoch(current)
        if nxt is None:
            break
        out.append(from_epoch(nxt))
        current = nxt
    return out
