"""The job store as a deterministic state machine: Dkron's merge, chaining and delete rules,
launch intents (no double launch, forbid), execution bookkeeping, snapshots and durability."""

from __future__ import annotations

import random

import pytest

from dkron_pkg.jobs import normalize_job
from dkron_pkg.store import Store
from dkron_pkg.timefmt import ZERO_TIME

NOW = 1_700_000_000_000_000_000  # a fixed "now" in ns: the store never reads the clock


def job(name: str, **fields) -> dict:
    return normalize_job({"name": name, "schedule": "@every 10s", "executor": "shell", **fields})


def set_job(store: Store, name: str, now=NOW, **fields):
    return store.apply({"op": "set_job", "job": job(name, **fields), "now_ns": now})


def execution(name: str, group: int, attempt: int = 1, node="n1", success=True, at=NOW) -> dict:
    return {
        "id": f"{at}-{node}",
        "job_name": name,
        "started_at": "2023-11-14T22:13:20Z",
        "finished_at": "2023-11-14T22:13:21Z",
        "success": success,
        "output": "out",
        "node_name": node,
        "group": group,
        "attempt": attempt,
        "started_ns": at,
    }


def run_once(store: Store, name: str, group: int, success=True, attempt=1, at=NOW):
    """Launch, start and finish one execution; return the execution_done result."""
    if attempt == 1:
        r = store.apply(
            {
                "op": "launch",
                "name": name,
                "scheduled_ns": at,
                "group": group,
                "cause": "manual",
                "now_ns": at,
            }
        )
        assert r.ok, r.error
    ex = execution(name, group, attempt, success=success, at=at)
    store.apply({"op": "execution_started", "execution": ex})
    return store.apply({"op": "execution_done", "execution": ex})


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state.db"))
    yield s
    s.close()


def test_create_sets_defaults_and_id(store):
    r = set_job(store, "backup")
    assert r.ok and r.status == 201
    stored = store.get_job("backup")
    assert stored["id"] == "backup"
    assert stored["concurrency"] == "allow"
    assert stored["success_count"] == 0 and stored["status"] == ""
    assert stored["next"] is not None


def test_update_keeps_counters_and_is_full_replacement(store):
    set_job(store, "a", displayname="First", owner="me")
    run_once(store, "a", group=1)
    set_job(store, "a", displayname="Second")
    stored = store.get_job("a")
    assert stored["displayname"] == "Second"
    assert stored["owner"] == ""  # PUT/POST replace user fields entirely
    assert stored["success_count"] == 1
    assert stored["status"] == "success"


def test_next_is_recomputed_only_when_schedule_changes(store):
    set_job(store, "a", now=NOW)
    first_next = store.get_job("a")["next"]
    set_job(store, "a", now=NOW + 3 * 10**9, displayname="x")
    assert store.get_job("a")["next"] == first_next
    set_job(store, "a", now=NOW + 3 * 10**9, schedule="@every 1m")
    assert store.get_job("a")["next"] != first_next


def test_parent_must_exist_and_children_are_tracked(store):
    r = set_job(store, "child", parent_job="parent")
    assert not r.ok and r.status == 404 and "parent" in r.error
    assert store.get_job("child") is None
    set_job(store, "parent")
    assert set_job(store, "child", parent_job="parent").ok
    assert store.get_job("parent")["dependent_jobs"] == ["child"]
    # Moving the child to another parent updates both lists.
    set_job(store, "other")
    set_job(store, "child", parent_job="other")
    assert store.get_job("parent")["dependent_jobs"] is None
    assert store.get_job("other")["dependent_jobs"] == ["child"]


def test_parent_cycles_are_refused(store):
    set_job(store, "a")
    set_job(store, "b", parent_job="a")
    r = set_job(store, "a", parent_job="b")
    assert not r.ok and "cycle" in r.error
    assert store.get_job("a")["parent_job"] == ""


def test_delete_rules(store):
    set_job(store, "parent")
    set_job(store, "child", parent_job="parent")
    r = store.apply({"op": "delete_job", "name": "parent"})
    assert not r.ok and "dependent jobs" in r.error
    assert store.get_job("parent") is not None
    run_once(store, "child", group=5)
    assert store.apply({"op": "delete_job", "name": "child"}).ok
    assert store.executions("child") == []
    assert store.get_job("parent")["dependent_jobs"] is None
    assert store.apply({"op": "delete_job", "name": "parent"}).ok
    assert not store.apply({"op": "delete_job", "name": "parent"}).ok


def test_the_jobs_view_stays_in_name_order_as_jobs_come_go_and_run(store):
    def names() -> list[str]:
        return [j["name"] for j in store.jobs_view()[0]]

    for name in ("c", "a", "b"):
        set_job(store, name)
    assert names() == ["a", "b", "c"]
    assert store.apply({"op": "delete_job", "name": "b"}).ok
    set_job(store, "aa")
    assert names() == ["a", "aa", "c"]
    run_once(store, "c", group=1, success=False)
    view = store.jobs_view()[0]
    assert [j["name"] for j in view] == ["a", "aa", "c"]
    assert view[-1]["error_count"] == 1  # the view shows the job as its run left it
    failed = store.apply({"op": "set_job", "job": {"name": ""}, "now_ns": NOW})
    assert not failed.ok and names() == ["a", "aa", "c"]


def test_scheduled_time_is_never_launched_twice(store):
    set_job(store, "a")
    cmd = {
        "op": "launch",
        "name": "a",
        "scheduled_ns": NOW + 10 * 10**9,
        "group": 1,
        "cause": "schedule",
        "now_ns": NOW + 10 * 10**9,
    }
    assert store.apply(cmd).ok
    again = store.apply({**cmd, "group": 2})
    assert not again.ok and again.status == 409
    earlier = store.apply({**cmd, "group": 3, "scheduled_ns": NOW + 5 * 10**9})
    assert not earlier.ok


def test_forbid_holds_for_manual_runs_and_from_committed_state(store):
    set_job(store, "f", concurrency="forbid")
    launch = {"op": "launch", "name": "f", "scheduled_ns": NOW, "cause": "manual", "now_ns": NOW}
    assert store.apply({**launch, "group": 1}).ok
    # The intent alone (not yet started) already blocks a second run.
    refused = store.apply({**launch, "group": 2})
    assert not refused.ok and "forbid" in refused.error
    ex = execution("f", 1)
    store.apply({"op": "execution_started", "execution": ex})
    assert store.get_job("f")["running"]
    store.apply({"op": "execution_done", "execution": ex})
    assert not store.get_job("f")["running"]
    assert store.apply({**launch, "group": 3}).ok


def test_disabled_expired_and_not_started_jobs_are_not_scheduled(store):
    set_job(store, "d", disabled=True)
    set_job(store, "e", expires_at="2000-01-01T00:00:00Z")
    set_job(store, "s", starts_at="2100-01-01T00:00:00Z")
    for name in ("d", "e", "s"):
        r = store.apply(
            {
                "op": "launch",
                "name": name,
                "scheduled_ns": NOW,
                "group": 1,
                "cause": "schedule",
                "now_ns": NOW,
            }
        )
        assert not r.ok, name
    # A user may still run a disabled job by hand.
    manual = store.apply(
        {
            "op": "launch",
            "name": "d",
            "scheduled_ns": NOW,
            "group": 9,
            "cause": "manual",
            "now_ns": NOW,
        }
    )
    assert manual.ok
    assert store.get_job("s")["next"].startswith("2100-01-01")


def test_retry_then_success_counts_as_success(store):
    set_job(store, "r", retries=2)
    first = run_once(store, "r", group=7, success=False)
    retry = [f for f in first.follow_ups if f["action"] == "retry"]
    assert retry and retry[0]["attempt"] == 2
    assert store.get_job("r")["error_count"] == 0  # not final yet
    assert store.get_job("r")["running"] is False and store.is_busy("r")  # intent still open
    second = run_once(store, "r", group=7, success=True, attempt=2, at=NOW + 1)
    finished = [f for f in second.follow_ups if f["action"] == "finished"]
    assert finished and finished[0]["status"] == "success"
    stored = store.get_job("r")
    assert stored["status"] == "success" and stored["success_count"] == 1
    assert not store.is_busy("r")


def test_a_failure_recorded_for_an_attempt_that_already_ended_is_ignored(store):
    """The leader's run request went unanswered and the node, restarted since, no longer
    knows the launch: the leader records the attempt as failed. The node's own report of that
    attempt is already in: the failure must neither be stored nor retry the launch (a forbid
    job would run twice, once beside the next launch)."""
    set_job(store, "r", retries=2, concurrency="forbid")
    done = run_once(store, "r", group=7, success=True)
    assert [f["action"] for f in done.follow_ups] == ["finished"]
    failed = execution("r", 7, success=False, at=NOW + 5)
    failed["id"] += "-unanswered"
    assert store.apply({"op": "execution_started", "execution": failed}).value is None
    late = store.apply({"op": "execution_done", "execution": failed})
    assert late.ok and not late.follow_ups
    assert [e["success"] for e in store.executions("r")] == [True]
    job = store.get_job("r")
    assert (job["status"], job["error_count"]) == ("success", 0)
    assert not store.is_busy("r")
    # The next attempt of the same launch on the same node still counts.
    retry = execution("r", 7, attempt=2, success=False, at=NOW + 9)
    assert store.apply({"op": "execution_done", "execution": retry}).ok
    assert len(store.executions("r")) == 2


def test_final_failure_counts_and_no_retry_when_stopped(store):
    set_job(store, "r", retries=3)
    store.apply(
        {
            "op": "launch",
            "name": "r",
            "scheduled_ns": NOW,
            "group": 1,
            "cause": "manual",
            "now_ns": NOW,
        }
    )
    ex = execution("r", 1, success=False)
    store.apply({"op": "execution_started", "execution": ex})
    r = store.apply({"op": "execution_done", "execution": ex, "no_retry": True})
    assert not [f for f in r.follow_ups if f["action"] == "retry"]
    stored = store.get_job("r")
    assert stored["status"] == "failed" and stored["error_count"] == 1
    assert stored["last_error"] == "2023-11-14T22:13:21Z"


def test_group_status_partially_failed_across_nodes(store):
    set_job(store, "m")
    store.apply(
        {
            "op": "launch",
            "name": "m",
            "scheduled_ns": NOW,
            "group": 1,
            "cause": "manual",
            "now_ns": NOW,
        }
    )
    ok = execution("m", 1, node="a", success=True, at=NOW)
    bad = execution("m", 1, node="b", success=False, at=NOW + 1)
    for ex in (ok, bad):
        store.apply({"op": "execution_started", "execution": ex})
    store.apply({"op": "execution_done", "execution": ok})
    store.apply({"op": "execution_done", "execution": bad})
    assert store.get_job("m")["status"] == "partially_failed"


def test_dependents_and_ephemeral_follow_success_only(store):
    set_job(store, "p", ephemeral=True)
    set_job(store, "c", parent_job="p")
    failed = run_once(store, "p", group=1, success=False)
    assert not [
        f for f in failed.follow_ups if f["action"] in ("run_dependent", "delete_ephemeral")
    ]
    ok = run_once(store, "p", group=2, success=True, at=NOW + 5)
    actions = {(f["action"], f["job_name"]) for f in ok.follow_ups}
    assert ("run_dependent", "c") in actions and ("delete_ephemeral", "p") in actions


def test_duplicate_final_report_is_ignored(store):
    set_job(store, "a")
    done = run_once(store, "a", group=1)
    assert done.ok
    again = store.apply({"op": "execution_done", "execution": execution("a", 1)})
    assert again.ok and again.value is None
    assert store.get_job("a")["success_count"] == 1


def test_only_newest_executions_are_kept(tmp_path):
    s = Store(str(tmp_path / "s.db"), executions_per_job=5)
    set_job(s, "a")
    for i in range(8):
        run_once(s, "a", group=i + 1, at=NOW + i)
    kept = s.executions("a")
    assert [e["group"] for e in kept] == [4, 5, 6, 7, 8]
    s.close()


def test_abandon_running_marks_failed_and_triggers_retry(store):
    set_job(store, "a", retries=1)
    store.apply(
        {
            "op": "launch",
            "name": "a",
            "scheduled_ns": NOW,
            "group": 1,
            "cause": "manual",
            "now_ns": NOW,
        }
    )
    store.apply({"op": "execution_started", "execution": execution("a", 1)})
    r = store.apply({"op": "abandon_running", "node": "n1", "now_ns": NOW + 10, "reason": "gone"})
    assert [f["action"] for f in r.follow_ups] == ["retry"]
    ex = store.executions("a")[0]
    assert ex["finished_at"] != ZERO_TIME and not ex["success"] and ex["output"] == "gone"
    assert not store.get_job("a")["running"]


def test_delete_executions_resets_counters_not_status(store):
    set_job(store, "a")
    run_once(store, "a", group=1)
    r = store.apply({"op": "delete_executions", "name": "a"})
    assert r.ok
    stored = store.get_job("a")
    assert stored["success_count"] == 0 and stored["last_success"] is None
    assert stored["status"] == "success"
    assert store.executions("a") == []


def test_failed_command_in_batch_changes_nothing_else(store):
    results = store.apply_batch(
        [
            {"op": "set_job", "job": job("ok1"), "now_ns": NOW},
            {"op": "set_job", "job": job("bad", parent_job="missing"), "now_ns": NOW},
            {"op": "set_job", "job": job("ok2"), "now_ns": NOW},
        ]
    )
    assert [r.ok for r in results] == [True, False, True]
    assert sorted(store.job_names()) == ["ok1", "ok2"]


def test_state_survives_reopen(tmp_path):
    path = str(tmp_path / "state.db")
    s = Store(path)
    set_job(s, "a")
    run_once(s, "a", group=1)
    s.apply({"op": "set_job", "job": job("b"), "now_ns": NOW}, index=42)
    s.close()
    again = Store(path)
    assert sorted(again.job_names()) == ["a", "b"]
    assert again.get_job("a")["success_count"] == 1
    assert again.executions("a")[0]["output"] == "out"
    assert again.last_applied == 42
    again.close()


def test_same_commands_give_same_snapshot_and_restore_round_trips(tmp_path):
    rng = random.Random(7)
    commands = []
    for i in range(60):
        name = f"j{rng.randrange(6)}"
        kind = rng.choice(["set", "set", "run", "delete", "toggle"])
        if kind == "set":
            commands.append(
                {"op": "set_job", "job": job(name, retries=rng.randrange(2)), "now_ns": NOW + i}
            )
        elif kind == "run":
            commands.append(
                {
                    "op": "launch",
                    "name": name,
                    "scheduled_ns": NOW + i,
                    "group": i,
                    "cause": "manual",
                    "now_ns": NOW + i,
                }
            )
            ex = execution(name, i, at=NOW + i, success=rng.random() < 0.7)
            commands.append({"op": "execution_started", "execution": ex})
            commands.append({"op": "execution_done", "execution": ex})
        elif kind == "delete":
            commands.append({"op": "delete_job", "name": name})
        else:
            commands.append({"op": "toggle_job", "name": name, "now_ns": NOW + i})
    a, b = Store(str(tmp_path / "a.db")), Store(str(tmp_path / "b.db"))
    for c in commands:
        a.apply(c)
    b.apply_batch(commands)
    assert a.snapshot() == b.snapshot()
    c = Store(str(tmp_path / "c.db"))
    c.restore(a.snapshot(), last_index=60)
    assert c.snapshot() == a.snapshot()
    assert c.last_applied == 60
    by_name = lambda s: sorted(s.list_jobs(), key=lambda j: j["name"])
    assert by_name(c) == by_name(a)
    for s in (a, b, c):
        s.close()


def test_a_start_committed_after_its_end_does_not_revive_the_run():
    store = Store()
    set_job(store, "fast", concurrency="forbid")
    ex = execution("fast", 1)
    assert store.apply({"op": "execution_done", "execution": ex}).ok
    late = store.apply({"op": "execution_started", "execution": ex})
    assert late.ok
    [stored] = store.executions("fast")
    assert stored["success"] is True and not stored["finished_at"].startswith("0001")
    assert store.running_executions() == []
    # The job is not blocked by a phantom run: forbid lets the next launch through.
    launch = {"op": "launch", "name": "fast", "scheduled_ns": NOW, "group": 2}
    assert store.apply({**launch, "cause": "schedule", "now_ns": NOW}).ok


def test_a_duplicate_start_counts_the_run_once():
    store = Store()
    set_job(store, "dup", concurrency="forbid")
    ex = execution("dup", 1)
    store.apply({"op": "execution_started", "execution": ex})
    store.apply({"op": "execution_started", "execution": ex})
    store.apply({"op": "execution_done", "execution": ex})
    assert store.running_executions() == []
    launch = {"op": "launch", "name": "dup", "scheduled_ns": NOW, "group": 2}
    assert store.apply({**launch, "cause": "schedule", "now_ns": NOW}).ok
