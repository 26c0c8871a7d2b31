"""The scheduler's decision core: which (job, scheduled time) launches are due at `now`.

Pure and deterministic: it is given jobs and the time and answers with launches; it never reads
the clock. Next fire times come from each job's cursor (its last scheduled time, else the time
its schedule was set), never from wall-clock now, so any server that takes over computes the
same times and `@every` keeps its phase. Scheduled times found more than `late_grace` in the
past were missed (the node was down or not leader) and follow the job's `missed_runs` policy:
`skip` (Dkron's behaviour), `once` (one catch-up run for the latest missed time) or `all`
(each missed time, newest `missed_runs_limit` of them).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from datetime import datetime, timedelta

from dkron_pkg.schedule import Schedule, parse_schedule
from dkron_pkg.timefmt import ns_to_datetime, parse_rfc3339

MAX_MISSED_SCAN = 100_000


@dataclass(frozen=True)
class Launch:
    """One due run: named by (job, scheduled time); cause is "schedule" or "catchup"."""

    job_name: str
    scheduled: datetime
    cause: str = "schedule"


@dataclass
class _Entry:
    schedule: Schedule
    next: datetime | None
    policy: str
    limit: int
    starts_at: datetime | None
    version: int


def is_schedulable(job: dict) -> bool:
    """Jobs the scheduler arms: enabled, not children (they run after their parent)."""
    return not job.get("disabled") and not job.get("parent_job")


class SchedulerCore:
    """A heap of next fire times with lazy invalidation (O(log n) per launch)."""

    def __init__(self, late_grace: timedelta = timedelta(seconds=5)):
        self.late_grace = late_grace
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._version = 0

    def __len__(self) -> int:
        return len(self._entries)

    def upsert(self, job: dict) -> None:
        """(Re)arm a job from its stored record: schedule, cursor, policy."""
        name = job["name"]
        if not is_schedulable(job):
            self.remove(name)
            return
        try:
            schedule = parse_schedule(job["schedule"], job.get("timezone", ""), name)
        except ValueError:
            self.remove(name)
            return
        cursor_ns = job.get("last_scheduled_ns") or job.get("anchor_ns")
        if cursor_ns is None:
            self.remove(name)
            return
        starts_at = parse_rfc3339(job["starts_at"]) if job.get("starts_at") else None
        nxt = self._first_after(schedule, ns_to_datetime(int(cursor_ns)), starts_at)
        self._version += 1
        entry = _Entry(
            schedule,
            nxt,
            job.get("missed_runs", "skip"),
            int(job.get("missed_runs_limit", 10)),
            starts_at,
            self._version,
        )
        self._entries[name] = entry
        if nxt is not None:
            heapq.heappush(self._heap, (nxt.timestamp(), entry.version, name))

    @staticmethod
    def _first_after(
        schedule: Schedule, after: datetime, starts_at: datetime | None
    ) -> datetime | None:
        nxt = schedule.next_after(after)
        if nxt is not None and starts_at is not None and nxt < starts_at:
            nxt = schedule.next_after(starts_at - timedelta(microseconds=1))
        return nxt

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    def next_for(self, name: str) -> datetime | None:
        entry = self._entries.get(name)
        return entry.next if entry else None

    def next_wakeup(self) -> datetime | None:
        """The earliest armed fire time (stale heap items are dropped on the way)."""
        while self._heap:
            _ts, version, name = self._heap[0]
            entry = self._entries.get(name)
            if entry is None or entry.version != version or entry.next is None:
                heapq.heappop(self._heap)
                continue
            return entry.next
        return None

    def due(self, now: datetime) -> list[Launch]:
        """Pop every launch due at `now`, applying the missed-run policy, and re-arm."""
        launches: list[Launch] = []
        cutoff = now.timestamp()
        while self._heap and self._heap[0][0] <= cutoff:
            _, version, name = heapq.heappop(self._heap)
            entry = self._entries.get(name)
            if entry is None or entry.version != version or entry.next is None:
                continue
            launches.extend(self._collect(name, entry, now))
            self._version += 1
            entry.version = self._version
            if entry.next is not None:
                heapq.heappush(self._heap, (entry.next.timestamp(), entry.version, name))
        return launches

    def _collect(self, name: str, entry: _Entry, now: datetime) -> list[Launch]:
        """All fire times <= now for one job, split into missed and on-time ones."""
        missed: list[datetime] = []
        on_time: list[datetime] = []
        t = entry.next
        scanned = 0
        oldest_on_time = now - self.late_grace
        while t is not None and t <= now:
            (on_time if t >= oldest_on_time else missed).append(t)
            if len(missed) > max(entry.limit, 1):
                missed.pop(0)
            scanned += 1
            if scanned >= MAX_MISSED_SCAN:
                t = entry.schedule.next_after(oldest_on_time - timedelta(seconds=1))
                continue
            t = entry.schedule.next_after(t)
        entry.next = t
        out: list[Launch] = []
        if missed and entry.policy == "once" and not on_time:
            out.append(Launch(name, missed[-1], "catchup"))
        elif missed and entry.policy == "all":
            out.extend(Launch(name, m, "catchup") for m in missed[-entry.limit :])
        out.extend(Launch(name, t, "schedule") for t in on_time)
        return out
