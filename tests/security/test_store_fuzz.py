"""Issue 16, finding 7 (store part), fuzzed: whatever command reaches the store, applying it
never raises, a refused command changes nothing, and every job left in the store is one the
checks accept (so the scheduler and the launch rounds can use it)."""

from __future__ import annotations

import copy

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dkron_pkg.dispatch import parse_job_tags
from dkron_pkg.store import INTERNAL_FAILURE, Store, compute_next
from dkron_pkg.store_commands import (
    MAX_DEPTH,
    _check_value_shape_closely,
    _plainly_valid,
    stored_job_problem,
)
from dkron_pkg.timefmt import ZERO_TIME

NOW = 1_700_000_000_000_000_000
OPS = [
    "set_job", "delete_job", "toggle_job", "launch", "close_intent", "intent_nodes",
    "execution_started", "execution_done", "abandon_running", "delete_executions",
    "delete_execution",
]  # fmt: skip

GOOD_JOB = {
    "name": "keep",
    "schedule": "@every 1m",
    "executor": "shell",
    "executor_config": {"command": "true"},
    "tags": {"role": "web:1"},
    "retries": 2,
}
EXECUTION = {
    "id": f"{NOW}-n1",
    "job_name": "keep",
    "started_at": "2023-11-14T22:13:20Z",
    "finished_at": "2023-11-14T22:13:21Z",
    "success": False,
    "output": "out",
    "node_name": "n1",
    "group": 7,
    "attempt": 1,
    "started_ns": NOW,
    "scheduled_ns": NOW,
}
VALID = [
    {"op": "set_job", "job": GOOD_JOB, "now_ns": NOW},
    {"op": "set_job", "job": {**GOOD_JOB, "name": "child", "parent_job": "keep"}, "now_ns": NOW},
    {"op": "set_job", "job": {**GOOD_JOB, "success_count": 3}, "now_ns": NOW, "restore": True},
    {"op": "delete_job", "name": "keep"},
    {"op": "toggle_job", "name": "keep", "now_ns": NOW},
    {"op": "launch", "name": "keep", "scheduled_ns": NOW, "group": 8, "cause": "manual",
     "now_ns": NOW, "nodes": ["n1"]},
    {"op": "close_intent", "group": 7},
    {"op": "intent_nodes", "group": 7, "nodes": ["n2"],
     "retry": {"slot": "n1", "attempt": 2, "node": "n2", "at": NOW}},
    {"op": "execution_started", "execution": EXECUTION},
    {"op": "execution_done", "execution": EXECUTION, "no_retry": False},
    {"op": "abandon_running", "node": "n1", "now_ns": NOW, "reason": "gone"},
    {"op": "delete_executions", "name": "keep"},
    {"op": "delete_execution", "name": "keep", "id": EXECUTION["id"]},
]  # fmt: skip

texts = st.text(max_size=12) | st.sampled_from(
    ["", "keep", "child", "n1", "\ud800", "2023-11-14T22:13:21Z", ZERO_TIME, "@every 1s", "0001"]
)
numbers = (
    st.integers()
    | st.sampled_from([0, 1, -1, 7, NOW, 2**63 - 1, 2**63, 2**64, 10**400])
    | st.floats(allow_nan=True, allow_infinity=True)
)
scalars = st.none() | st.booleans() | numbers | texts
json_like = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw) -> dict:
    """A valid command with one field (top-level, or in its job/execution) replaced or gone."""
    command = copy.deepcopy(draw(st.sampled_from(VALID)))
    target = command
    nested = [k for k in ("job", "execution", "retry") if isinstance(command.get(k), dict)]
    if nested and draw(st.booleans()):
        target = command[draw(st.sampled_from(nested))]
    key = draw(st.sampled_from(sorted(target)) | texts)
    if draw(st.integers(0, 4)) == 0:
        target.pop(key, None)
    else:
        target[key] = draw(json_like)
    return command


random_commands = st.fixed_dictionaries(
    {"op": st.sampled_from(OPS) | texts}, optional={"name": texts, "group": numbers}
).flatmap(lambda c: st.dictionaries(texts, json_like, max_size=4).map(lambda x: {**x, **c}))
commands = st.one_of(mutated(), mutated(), mutated(), random_commands, json_like)


def fresh_store() -> Store:
    store = Store(":memory:")
    for command in VALID[:2] + VALID[5:6]:
        assert store.apply(command).ok
    assert store.apply({"op": "launch", "name": "keep", "scheduled_ns": NOW, "group": 7,
                        "cause": "manual", "now_ns": NOW}).ok  # fmt: skip
    assert store.apply(VALID[8]).ok
    return store


@given(st.lists(commands, min_size=1, max_size=6))
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_applying_any_command_never_raises_and_keeps_the_store_usable(batch: list) -> None:
    store = fresh_store()
    try:
        for command in batch:
            before = store.snapshot()
            result = store.apply(command)
            assert not result.error.startswith(INTERNAL_FAILURE), result.error
            if not result.ok:
                assert store.snapshot() == before, "a refused command changed the store"
        for job in store.list_jobs():
            stored = {k: v for k, v in job.items() if k != "running"}
            assert stored_job_problem(stored) is None, (stored_job_problem(stored), job)
            parse_job_tags(job.get("tags"))  # what every launch round does with each job
            compute_next(job)
            store.executions(job["name"])
            store.is_busy(job["name"])
        store.open_intents()
        store.running_executions()
    finally:
        store.close()


@given(st.lists(mutated(), min_size=1, max_size=8))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_batch_of_commands_applies_each_alone(batch: list) -> None:
    """One transaction, one result per command: a bad one never fails the others."""
    one_by_one = fresh_store()
    together = fresh_store()
    try:
        expected = [one_by_one.apply(c) for c in batch]
        results = together.apply_batch(batch, last_index=5)
        assert [(r.ok, r.error) for r in results] == [(r.ok, r.error) for r in expected]
        assert together.snapshot() == one_by_one.snapshot()
        assert together.last_applied == 5
    finally:
        one_by_one.close()
        together.close()


JSONISH = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**65), max_value=2**65)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
    | st.binary(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.tuples(inner)
        | st.dictionaries(st.text(max_size=4) | st.integers(0, 3), inner, max_size=4)
    ),
    max_leaves=40,
)


@settings(max_examples=400, deadline=None)
@given(JSONISH)
def test_the_quick_shape_walk_never_clears_what_the_close_walk_refuses(value):
    """The quick walk may only say "plainly fine" of what the close walk accepts too."""
    if not _plainly_valid(value):
        return
    _check_value_shape_closely(value)  # raises CommandError if the quick walk was wrong


def test_the_quick_shape_walk_leaves_each_kind_of_problem_to_the_close_walk():
    deep: dict = {}
    for _ in range(MAX_DEPTH + 1):
        deep = {"d": deep}
    for bad in ({"n": 2**64}, {"f": float("nan")}, {1: "key"}, {"s": "\ud800"}, deep, {"b": b""}):
        assert not _plainly_valid(bad)
    assert _plainly_valid({"op": "set_job", "job": {"name": "ok", "tags": ["é" * 0, 1, 2.5]}})
