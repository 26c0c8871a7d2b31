"""The scheduler's decision core, driven by a simulated clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dkron_pkg.scheduler import SchedulerCore
from dkron_pkg.timefmt import datetime_to_ns

T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)


def job(name="j", schedule="@every 10s", anchor=T0, last=None, **kw) -> dict:
    return {
        "name": name,
        "schedule": schedule,
        "timezone": kw.pop("timezone", ""),
        "anchor_ns": datetime_to_ns(anchor),
        "last_scheduled_ns": datetime_to_ns(last) if last else None,
        **kw,
    }


def run_clock(core: SchedulerCore, start: datetime, end: datetime, step=timedelta(seconds=1)):
    launches = []
    t = start
    while t <= end:
        launches.extend(core.due(t))
        t += step
    return launches


def test_every_fires_on_its_phase_from_the_cursor():
    core = SchedulerCore()
    core.upsert(job(anchor=T0 + timedelta(seconds=3)))
    launches = run_clock(core, T0, T0 + timedelta(seconds=40))
    assert [launch.scheduled for launch in launches] == [
        T0 + timedelta(seconds=s) for s in (13, 23, 33, 43) if s <= 40
    ]
    assert all(launch.cause == "schedule" for launch in launches)


def test_a_new_leader_computes_the_same_times_from_the_stored_cursor():
    first = SchedulerCore()
    first.upsert(job(anchor=T0 + timedelta(seconds=3)))
    seen = run_clock(first, T0, T0 + timedelta(seconds=25))
    last = seen[-1].scheduled
    # Failover: another server arms the job from the committed cursor and continues the phase.
    second = SchedulerCore()
    second.upsert(job(anchor=T0 + timedelta(seconds=3), last=last))
    nxt = run_clock(second, last + timedelta(seconds=1), last + timedelta(seconds=20))
    assert [launch.scheduled for launch in nxt] == [
        last + timedelta(seconds=10),
        last + timedelta(seconds=20),
    ]


def test_cron_schedule_fires_at_matching_seconds():
    core = SchedulerCore()
    core.upsert(job(schedule="*/15 * * * * *"))
    launches = run_clock(core, T0, T0 + timedelta(seconds=59))
    assert [launch.scheduled.second for launch in launches] == [15, 30, 45]


def test_missed_runs_skip_by_default():
    core = SchedulerCore()
    core.upsert(job(schedule="@every 1m"))
    # The node was down for an hour: nothing from the past is launched, the schedule goes on.
    later = T0 + timedelta(hours=1, seconds=30)
    assert core.due(later) == []
    assert core.next_wakeup() == T0 + timedelta(hours=1, minutes=1)


def test_missed_runs_once_launches_the_latest_missed_time():
    core = SchedulerCore()
    core.upsert(job(schedule="@every 1m", missed_runs="once"))
    later = T0 + timedelta(hours=1, seconds=30)
    launches = core.due(later)
    assert [(launch.scheduled, launch.cause) for launch in launches] == [
        (T0 + timedelta(hours=1), "catchup")
    ]


def test_missed_runs_all_is_bounded_by_the_limit():
    core = SchedulerCore()
    core.upsert(job(schedule="@every 1m", missed_runs="all", missed_runs_limit=5))
    launches = core.due(T0 + timedelta(hours=1, seconds=30))
    assert [launch.scheduled for launch in launches] == [
        T0 + timedelta(minutes=m) for m in range(56, 61)
    ]
    assert {launch.cause for launch in launches} == {"catchup"}


def test_late_but_within_grace_is_not_missed():
    core = SchedulerCore()
    core.upsert(job(schedule="@every 10s"))
    launches = core.due(T0 + timedelta(seconds=12))
    assert [(launch.scheduled, launch.cause) for launch in launches] == [
        (T0 + timedelta(seconds=10), "schedule")
    ]


def test_disabled_child_and_manual_jobs_are_not_armed():
    core = SchedulerCore()
    core.upsert(job("d", disabled=True))
    core.upsert(job("c", parent_job="p"))
    core.upsert(job("m", schedule="@manually"))
    assert core.next_wakeup() is None
    assert run_clock(core, T0, T0 + timedelta(minutes=1), timedelta(seconds=5)) == []


def test_removing_or_rescheduling_a_job_drops_its_old_time():
    core = SchedulerCore()
    core.upsert(job("a", schedule="@every 10s"))
    core.upsert(job("b", schedule="@every 30s"))
    core.remove("a")
    core.upsert(job("b", schedule="@every 45s"))
    launches = run_clock(core, T0, T0 + timedelta(seconds=50))
    assert [(launch.job_name, launch.scheduled) for launch in launches] == [
        ("b", T0 + timedelta(seconds=45))
    ]


def test_starts_at_delays_the_first_run():
    core = SchedulerCore()
    core.upsert(job(schedule="@every 10s", starts_at="2026-03-02T12:05:00Z"))
    assert core.next_wakeup() >= T0 + timedelta(minutes=5)


def test_many_jobs_due_together_are_returned_in_one_batch():
    core = SchedulerCore()
    for i in range(1000):
        core.upsert(job(f"j{i}", schedule="0 * * * * *"))
    launches = core.due(T0 + timedelta(minutes=1))
    assert len(launches) == 1000
    assert {launch.scheduled for launch in launches} == {T0 + timedelta(minutes=1)}
    assert core.due(T0 + timedelta(minutes=1, seconds=30)) == []
