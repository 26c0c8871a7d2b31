"""The settlement decision a new leader takes for launches that have no outcome yet."""

from __future__ import annotations

from dkron_pkg.launch.settle import (
    CLOSE,
    DISPATCH_NOW,
    LOST,
    REQUEUE,
    RETRY,
    SKIPPED,
    Action,
    settle,
)

SECOND = 1_000_000_000
NOW = 1_000 * SECOND
GRACE = 5 * SECOND


def intent(group: int, job: str = "backup", cause: str = "schedule", at: int = NOW) -> dict:
    return {"group": group, "job_name": job, "scheduled_ns": at, "cause": cause, "attempt": 1}


def execution(group: int, attempt: int, success: bool, running: bool = False) -> dict:
    return {
        "group": group,
        "attempt": attempt,
        "success": success,
        "node_name": "agent-2",
        "finished_at": "0001-01-01T00:00:00Z" if running else "2024-01-01T00:00:00Z",
    }


def decide(
    intents: list[dict],
    jobs: dict[str, dict],
    executions: dict[int, list[dict]] | None = None,
    known: set[int] | None = None,
) -> list[Action]:
    runs = executions or {}
    return settle(
        intents, jobs.get, lambda _name, group: runs.get(group, []), known or set(), NOW, GRACE
    )


def test_recent_launch_without_a_run_is_queued_for_its_own_time() -> None:
    actions = decide([intent(1, at=NOW - 2 * SECOND)], {"backup": {"name": "backup"}})
    assert actions == [Action(REQUEUE, 1, "backup", scheduled_ns=NOW - 2 * SECOND)]


def test_missed_launch_follows_the_skip_policy() -> None:
    actions = decide([intent(1, at=NOW - 60 * SECOND)], {"backup": {"missed_runs": "skip"}})
    assert [(a.kind, a.reason) for a in actions] == [(CLOSE, SKIPPED)]


def test_missed_launch_runs_now_under_once_and_all() -> None:
    for policy in ("once", "all"):
        actions = decide([intent(1, at=NOW - 60 * SECOND)], {"backup": {"missed_runs": policy}})
        assert [(a.kind, a.attempt) for a in actions] == [(DISPATCH_NOW, 1)], policy
        # run late, it is still the run of its scheduled time (DKRON_SCHEDULED_AT, scheduled_at)
        assert actions[0].scheduled_ns == NOW - 60 * SECOND, policy


def test_manual_launch_interrupted_runs_now_even_with_skip() -> None:
    actions = decide([intent(1, cause="manual", at=NOW - 60 * SECOND)], {"backup": {}})
    assert [a.kind for a in actions] == [DISPATCH_NOW]
    assert actions[0].scheduled_ns is None  # a manual run has no scheduled time


def test_failed_attempt_with_retries_left_is_retried_on_its_node() -> None:
    runs = {1: [execution(1, 1, False)]}
    actions = decide([intent(1)], {"backup": {"retries": 2}}, runs)
    assert [(a.kind, a.attempt, a.node) for a in actions] == [(RETRY, 2, "agent-2")]


def test_group_that_ended_is_closed() -> None:
    jobs = {"backup": {"retries": 1}}
    ended_ok = decide([intent(1)], jobs, {1: [execution(1, 1, False), execution(1, 2, True)]})
    out_of_attempts = decide([intent(1)], jobs, {1: [execution(1, 2, False)]})
    assert [a.kind for a in ended_ok + out_of_attempts] == [CLOSE, CLOSE]


def test_deleted_job_closes_its_intent() -> None:
    assert [a.kind for a in decide([intent(1, job="gone")], {})] == [CLOSE]


def test_running_or_known_groups_are_left_to_their_node() -> None:
    jobs = {"backup": {"missed_runs": "all"}}
    running = decide([intent(1, at=0)], jobs, {1: [execution(1, 1, False, running=True)]})
    known = decide([intent(2, at=0)], jobs, known={2})
    assert running == [] and known == []


def test_each_intent_is_settled_on_its_own() -> None:
    jobs = {"a": {"missed_runs": "skip"}, "b": {"missed_runs": "once"}}
    actions = decide(
        [intent(1, "a", at=NOW - 60 * SECOND), intent(2, "b", at=NOW - 60 * SECOND), intent(3)],
        jobs,
        known={3},
    )
    assert [(a.group, a.kind) for a in actions] == [(1, CLOSE), (2, DISPATCH_NOW)]


def test_intent_whose_node_died_is_recorded_lost_not_launched_again() -> None:
    jobs = {"backup": {"missed_runs": "once"}}
    chosen = {**intent(1, at=NOW - 60 * SECOND), "nodes": ["agent-2"], "created_ns": NOW - SECOND}
    dead = decide_with_nodes([chosen], jobs, {"agent-1": 0})
    restarted = decide_with_nodes([chosen], jobs, {"agent-2": NOW})
    assert [(a.kind, a.node, a.attempt) for a in dead + restarted] == [
        (LOST, "agent-2", 1),
        (LOST, "agent-2", 1),
    ]


def test_intent_whose_node_was_up_all_along_follows_the_usual_rules() -> None:
    jobs = {"backup": {"missed_runs": "once"}}
    chosen = {**intent(1, at=NOW - 60 * SECOND), "nodes": ["agent-2"], "created_ns": NOW - SECOND}
    actions = decide_with_nodes([chosen], jobs, {"agent-2": NOW - 3600 * SECOND})
    assert [a.kind for a in actions] == [DISPATCH_NOW]


def decide_with_nodes(
    intents: list[dict], jobs: dict[str, dict], up_since: dict[str, int]
) -> list[Action]:
    return settle(intents, jobs.get, lambda _n, _g: [], set(), NOW, GRACE, up_since)


def test_a_lost_node_of_a_launch_on_several_nodes_leaves_the_others_to_run_it() -> None:
    """The leader died after recording the launch and before sending it: a node that restarted
    since may have started it (a lost attempt there), the others never got it and still run it
    (found by the chaos bench with jobs that run on every node)."""
    every = {**intent(1), "nodes": ["a1", "a2", "a3"], "created_ns": NOW - SECOND}
    up = {"a1": NOW - 10 * SECOND, "a2": NOW, "a3": NOW - 10 * SECOND}  # a2 restarted since
    actions = settle([every], {"backup": {}}.get, lambda n, g: [], set(), NOW, GRACE, up)
    assert [(a.kind, a.node, a.nodes) for a in actions] == [
        (LOST, "a2", ()),
        (REQUEUE, "", ("a1", "a3")),
    ]


def test_a_tagged_launch_runs_on_no_more_nodes_than_its_count() -> None:
    """A `:2` launch names its stand-in too (a3 stood in for a2): a1 ran, a2 is lost, so no
    node is left to run it; a node that ran is retried, never started again."""
    pair = {**intent(1), "nodes": ["a1", "a2", "a3"], "created_ns": NOW - SECOND}
    job = {"backup": {"tags": {"role": "agent:2"}, "retries": 1}}
    ran = {**execution(1, 1, False), "node_name": "a1", "finished_at": "2024-01-01T00:00:00Z"}
    up = {"a1": 0, "a3": 0}  # a2 is dead
    actions = settle([pair], job.get, lambda n, g: [ran], set(), NOW, GRACE, up)
    assert [(a.kind, a.node, a.attempt) for a in actions] == [(RETRY, "a1", 2), (LOST, "a2", 1)]


def test_a_node_that_never_got_the_launch_still_runs_it_beside_a_retry() -> None:
    """a1's run failed (retry due) while a2 never got the launch: both go on."""
    every = {**intent(1), "nodes": ["a1", "a2"], "created_ns": NOW - SECOND}
    failed = {**execution(1, 1, False), "node_name": "a1", "finished_at": "2024-01-01T00:00:00Z"}
    up = {"a1": 0, "a2": 0}
    actions = settle(
        [every], {"backup": {"retries": 1}}.get, lambda n, g: [failed], set(), NOW, GRACE, up
    )
    assert [(a.kind, a.node, a.nodes) for a in actions] == [
        (RETRY, "a1", ()),
        (REQUEUE, "", ("a2",)),
    ]


def test_a_stand_in_that_ran_another_nodes_run_is_not_owed_its_own() -> None:
    """a1 stood in for a2 (unreachable) and its attempt failed; a1 restarted since. The new
    leader retries a2's run only: a1 has no run of its own in this launch to lose or to run
    (found by the launch simulation, seed 218: a1 ran attempt 2 twice)."""
    pair = {**intent(1), "nodes": ["a2", "a1"], "created_ns": NOW - SECOND}
    job = {"backup": {"tags": {"role": "agent:2"}, "retries": 1}}
    ran = {
        **execution(1, 1, False),
        "node_name": "a1",
        "for_node": "a2",
        "finished_at": "2024-01-01T00:00:00Z",
    }
    up = {"a1": NOW, "a2": 0}
    actions = settle([pair], job.get, lambda n, g: [ran], set(), NOW, GRACE, up)
    assert [(a.kind, a.node, a.slot, a.attempt) for a in actions] == [(RETRY, "a1", "a2", 2)]


def test_a_lost_node_of_a_tagged_launch_counts_before_another_is_sent_it() -> None:
    """A `:1` launch named a1 and then its stand-in s2; s2 restarted since (it may have run
    the launch), a1 answered without it: s2's attempt is lost and the launch is not sent to
    a1 as well (found by the launch simulation, seeds 6607 and 6701: run on two servers)."""
    one = {**intent(1), "nodes": ["a1", "s2"], "created_ns": NOW - SECOND}
    job = {"backup": {"tags": {"role": "agent:1"}, "retries": 1}}
    up = {"a1": 0, "s2": NOW}
    actions = settle([one], job.get, lambda n, g: [], set(), NOW, GRACE, up)
    assert [(a.kind, a.node) for a in actions] == [(LOST, "s2")]
