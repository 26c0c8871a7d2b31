"""Time zones for schedules: loading by name, the server's own zone, and offset transitions.

zoneinfo answers "what is the offset at instant x" but does not list its transitions, and the
DST rules of the schedule engine need them (where a gap or a repeated hour starts and ends).
`ZoneTimeline` finds them once per zone by probing the offset every few hours and bisecting to
the exact second, then keeps them in a sorted list that later calls search with bisect.
"""

from __future__ import annotations

import bisect
import os
import threading
from datetime import datetime, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dkron_pkg.schedule_base import ScheduleError

# Instants outside this range are clamped before asking zoneinfo (datetime covers years 1-9999).
MIN_EPOCH = -62104060800  # 0002-01-01T00:00:00Z
MAX_EPOCH = 253370764800  # 9998-12-31T00:00:00Z
_CHUNK_BITS = 25  # transitions are found in chunks of 2**25 s (about 388 days)
_PROBE_STEP = 6 * 3600  # no zone has two transitions that cancel out within 6 hours


def load_timezone(name: str) -> tzinfo:
    """The zone called `name` ("" and "Local" mean the server's zone); unknown names are errors."""
    if name in ("", "Local"):
        return local_timezone()
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise ScheduleError(f'unknown time zone "{name}"') from None


def local_timezone() -> tzinfo:
    """The server's zone as a DST-aware ZoneInfo: TZ, then /etc/localtime, else UTC."""
    return _local_zone(os.environ.get("TZ"))


@lru_cache(maxsize=8)
def _local_zone(tz_env: str | None) -> tzinfo:
    if tz_env is not None:
        name = tz_env.removeprefix(":")
        if not name:
            return ZoneInfo("UTC")  # POSIX: an empty TZ means UTC
        return _zone_from_path(Path(name)) if name.startswith("/") else _zone_or_utc(name)
    localtime = Path("/etc/localtime")
    if localtime.exists():
        return _zone_from_path(localtime)
    try:
        return _zone_or_utc(Path("/etc/timezone").read_text().strip())
    except OSError:
        return ZoneInfo("UTC")


def _zone_or_utc(name: str) -> tzinfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return ZoneInfo("UTC")


def _zone_from_path(path: Path) -> tzinfo:
    """A zone file, named by its IANA key when the path shows it (…/zoneinfo/Europe/Berlin)."""
    resolved = str(path.resolve())
    if "/zoneinfo/" in resolved:
        key = resolved.split("/zoneinfo/", 1)[1].removeprefix("posix/").removeprefix("right/")
        try:
            return ZoneInfo(key)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            pass
    try:
        with open(path, "rb") as fobj:
            return ZoneInfo.from_file(fobj, key=path.name)
    except (OSError, ValueError):
        return ZoneInfo("UTC")


class Segment:
    """A stretch of time with one UTC offset, and how it began (the previous offset)."""

    __slots__ = ("end", "offset", "prev_offset", "start")

    def __init__(self, start: int | None, prev_offset: int, offset: int, end: int | None):
        self.start = start  # instant of the transition that began it (None: none nearby)
        self.prev_offset = prev_offset  # offset before `start` (equals `offset` when None)
        self.offset = offset  # seconds east of UTC
        self.end = end  # first instant of the next segment (None: none before the horizon)


class ZoneTimeline:
    """The offset transitions of one zone, found lazily and cached for the process lifetime."""

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._fixed = isinstance(tz, timezone)
        self._done: set[int] = set()
        # (transition instants, (offset before, offset after) of each); replaced as a whole,
        # so that readers in other threads always see the two lists agree
        self._state: tuple[list[int], list[tuple[int, int]]] = ([], [])
        self._lock = threading.Lock()

    def offset_at(self, instant: int) -> int:
        """UTC offset in seconds at a Unix instant."""
        instant = min(max(instant, MIN_EPOCH), MAX_EPOCH)
        off = datetime.fromtimestamp(instant, self.tz).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    def segment(self, instant: int, horizon: int) -> Segment:
        """The constant-offset segment holding `instant`, looking for its end up to `horizon`."""
        offset = self.offset_at(instant)
        if self._fixed:
            return Segment(None, offset, offset, None)
        first = (instant - 3 * 86400) >> _CHUNK_BITS
        for chunk in range(first, (instant >> _CHUNK_BITS) + 1):
            self._ensure(chunk)
        # walk forward chunk by chunk: a transition found earlier far ahead must not hide
        # transitions in chunks nobody has looked at yet
        chunk = instant >> _CHUNK_BITS
        while True:
            self._ensure(chunk)
            times, changes = self._state
            i = bisect.bisect_right(times, instant)
            chunk_end = (chunk + 1) << _CHUNK_BITS
            if (i < len(times) and times[i] <= chunk_end) or chunk_end > horizon:
                break
            chunk += 1
        start, prev = None, offset
        if i > 0 and times[i - 1] >= instant - 2 * 86400:
            start, prev = times[i - 1], changes[i - 1][0]
        end = times[i] if i < len(times) and times[i] <= min(chunk_end, horizon) else None
        return Segment(start, prev, offset, end)

    def _ensure(self, chunk: int) -> None:
        """Find the transitions T with chunk start < T <= chunk end, once per chunk."""
        if chunk in self._done:
            return
        with self._lock:
            if chunk in self._done:
                return
            lo = chunk << _CHUNK_BITS
            hi = (chunk + 1) << _CHUNK_BITS
            found = []
            prev_t, prev_off = lo, self.offset_at(lo)
            t = lo
            while t < hi:
                t = min(t + _PROBE_STEP, hi)
                off = self.offset_at(t)
                if off != prev_off:
                    found.append(self._bisect(prev_t, t, prev_off))
                prev_t, prev_off = t, off
            times, changes = list(self._state[0]), list(self._state[1])
            for when, before, after in found:
                if MIN_EPOCH < when < MAX_EPOCH:
                    j = bisect.bisect_left(times, when)
                    times.insert(j, when)
                    changes.insert(j, (before, after))
            self._state = (times, changes)
            self._done.add(chunk)

    def _bisect(self, lo: int, hi: int, lo_off: int) -> tuple[int, int, int]:
        """The first instant in (lo, hi] whose offset differs from lo_off."""
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if self.offset_at(mid) == lo_off:
                lo = mid
            else:
                hi = mid
        return hi, lo_off, self.offset_at(hi)

    def first_instant_of_wall(self, wall: int) -> int:
        """The instant a local wall time (seconds since the local epoch) first happens.

        A wall time in a spring-forward gap gives the first instant after the gap.
        """
        probes = {wall - self.offset_at(wall - 86400), wall - self.offset_at(wall + 86400)}
        existing = [p for p in probes if p + self.offset_at(p) == wall]
        if existing:
            return min(existing)
        seg = self.segment(min(probes), max(probes))
        return seg.end if seg.end is not None else max(probes)


_timelines: dict[tzinfo, ZoneTimeline] = {}


def timeline(tz: tzinfo) -> ZoneTimeline:
    """The shared timeline of a zone."""
    found = _timelines.get(tz)
    if found is None:
        found = _timelines.setdefault(tz, ZoneTimeline(tz))
    return found
