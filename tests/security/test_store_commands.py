"""Issue 16, finding 7 (store part): the store applied whatever it was given. A job with `tags`
as a list, committed through the open RPC, was stored and made every launch round fail.

Now every command is checked before it is applied: a bad one is refused whole (the store does
not change), the error names what is wrong, a log line names the op, and the commands around
it apply as usual, on every server alike.
"""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import time
from pathlib import Path

import pytest

from dkron_pkg.agent import Agent
from dkron_pkg.config import Config
from dkron_pkg.jobs import normalize_job
from dkron_pkg.raftnode import NotLeaderError, RaftReplicator, raft_config
from dkron_pkg.rpc import RpcClient, RpcServer
from dkron_pkg.store import Store
from dkron_pkg.store_commands import decode_command_list

NOW = 1_700_000_000_000_000_000
KEY = b"k" * 32


def job(name: str, **fields) -> dict:
    return {"name": name, "schedule": "@every 1h", "executor": "shell", **fields}


def set_job(name: str, **fields) -> dict:
    return {"op": "set_job", "job": job(name, **fields), "now_ns": NOW}


def state(store: Store) -> bytes:
    return store.snapshot()


@pytest.fixture
def store(tmp_path):
    s = Store(str(tmp_path / "state.db"))
    assert s.apply(set_job("keep")).ok
    yield s
    s.close()


def test_a_job_with_tags_as_a_list_is_refused_and_the_store_is_unchanged(store, caplog):
    before = state(store)
    with caplog.at_level(logging.WARNING, logger="dkron.store"):
        result = store.apply(set_job("evil", tags=["role", "web"]))
    assert not result.ok and result.status == 400
    assert "tags must be an object of strings" in result.error
    assert result.value == {"field": "job.tags"}
    assert state(store) == before and store.get_job("evil") is None
    assert any(
        "refused a set_job command" in r.message and "tags" in r.message for r in caplog.records
    )
    assert store.apply(set_job("after", tags={"role": "web"})).ok  # the next one applies
    assert store.get_job("after")["tags"] == {"role": "web"}


HUGE_NAME = "a" * 100_000
DEEP: list = []
for _ in range(100):
    DEEP = [DEEP]

BAD_COMMANDS = {
    "missing name": ({"op": "set_job", "job": {"schedule": "@every 1h"}, "now_ns": NOW}, "name"),
    "NaN retries": (set_job("x", retries=float("nan")), "nan"),
    "retries 1e308": (set_job("x", retries=1e308), "retries"),
    "huge name": (set_job(HUGE_NAME), "256"),
    "unknown op": ({"op": "drop_everything"}, "unknown store command drop_everything"),
    "no op": ({"name": "keep"}, "unknown store command None"),
    "not an object": (["set_job"], "must be an object"),
    "job not an object": ({"op": "set_job", "job": "x", "now_ns": NOW}, "job must be an object"),
    "missing now_ns": ({"op": "set_job", "job": job("x")}, "now_ns is missing"),
    "lone surrogate": (set_job("x", displayname="\ud800"), "not valid Unicode"),
    "nested 100 deep": ({"op": "delete_job", "name": "keep", "x": DEEP}, "nested deeper"),
    "int over 64 bits": ({"op": "close_intent", "group": 2**64}, "64-bit"),
    "group as text": ({"op": "close_intent", "group": "1"}, "group must be a whole number"),
    "launch cause": (
        {"op": "launch", "name": "keep", "scheduled_ns": NOW, "group": 1, "now_ns": NOW,
         "cause": "evil"},
        "cause must be one of",
    ),
    "execution without success": (
        {"op": "execution_done", "execution": {"id": "1-n1", "job_name": "keep", "group": 1,
         "started_ns": NOW, "finished_at": "2023-11-14T22:13:21Z"}},
        "execution.success is missing",
    ),
    "execution with a bad time": (
        {"op": "execution_done", "execution": {"id": "1-n1", "job_name": "keep", "group": 1,
         "started_ns": NOW, "success": True, "finished_at": "yesterday"}},
        "execution.finished_at",
    ),
    "attempt as text": (
        {"op": "execution_started", "execution": {"id": "1-n1", "job_name": "keep", "group": 1,
         "started_ns": NOW, "attempt": "1"}},
        "execution.attempt must be a whole number",
    ),
    "restore with a bad time": (
        {"op": "set_job", "job": job("keep", last_success="soon"), "now_ns": NOW,
         "restore": True},
        "job.last_success",
    ),
    "nodes not names": (
        {"op": "intent_nodes", "group": 1, "nodes": [{"n": 1}]}, "nodes.0 must be a node name"
    ),
}  # fmt: skip


@pytest.mark.parametrize("name", list(BAD_COMMANDS))
def test_malformed_commands_are_refused_whole_with_the_problem_named(store, caplog, name):
    command, problem = BAD_COMMANDS[name]
    before = state(store)
    with caplog.at_level(logging.WARNING, logger="dkron.store"):
        result = store.apply(command)
    assert not result.ok and result.status == 400, result
    assert problem in result.error
    assert state(store) == before
    assert any("store: refused a" in r.message for r in caplog.records)
    assert store.apply(set_job("after")).ok


def test_a_bad_command_fails_alone_in_its_batch(store):
    """One transaction holds many commands (a launch round, a group commit): before, a command
    that made the store raise failed all of them ("commit failed")."""
    batch = [set_job("a"), {"op": "set_job", "now_ns": NOW}, set_job("b")]
    results = store.apply_batch(batch, last_index=7)
    assert [r.ok for r in results] == [True, False, True]
    assert "job must be an object" in results[1].error
    assert {"a", "b", "keep"} == set(store.job_names())
    assert store.last_applied == 7


# ----- through Raft, on every server ---------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(pred, what: str, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_bad_job_committed_through_raft_is_refused_the_same_way_on_every_server(tmp_path):
    ids = ["n1", "n2", "n3"]
    addrs = {i: f"127.0.0.1:{_free_port()}" for i in ids}
    servers = []
    try:
        for i in ids:
            store = Store(str(tmp_path / i / "state.db"))
            client = RpcClient(KEY, connect_timeout=1.0)
            raft = RaftReplicator(
                i, addrs[i], str(tmp_path / i), store, client, bootstrap=addrs,
                config=raft_config(2), fsync=False,
            )  # fmt: skip
            rpc = RpcServer(
                "127.0.0.1", int(addrs[i].rsplit(":", 1)[1]), KEY, raft.handle_rpc,
                raft.on_raft_frame,
            )  # fmt: skip
            raft.start()
            rpc.start()
            servers.append((raft, rpc, client, store))
        leader = _wait(lambda: [s for s in servers if s[0].is_leader()], "a leader")[0]
        follower = next(s for s in servers if s is not leader)
        commands = [set_job("good1"), set_job("evil", tags=["a", "b"]), set_job("good2")]
        deadline = time.monotonic() + 15
        while True:
            try:
                results = follower[0].submit(commands, timeout=5)
                break
            except NotLeaderError:
                assert time.monotonic() < deadline
        assert [r.ok for r in results] == [True, False, True]
        assert "tags must be an object of strings" in results[1].error
        after = leader[0].submit([set_job("after")], timeout=5)
        assert after[0].ok
        for raft, _, _, store in servers:
            raft.barrier(timeout=5)
            assert set(store.job_names()) == {"good1", "good2", "after"}
    finally:
        for raft, rpc, client, store in servers:
            rpc.stop()
            raft.close()
            client.close()
            store.close()


# ----- the launch rounds go on ---------------------------------------------------------------


def test_launch_rounds_go_on_beside_a_bad_job_sent_to_the_store(tmp_path: Path):
    """The reported symptom: with a job whose tags were a list in the store, every launch
    round failed, so no job ran any more. The bad job is now refused and others keep running."""
    config = Config(
        server=True, bootstrap_expect=1, data_dir=str(tmp_path / "data"), node_name="node1",
        http_addr="127.0.0.1:0", bind_addr="127.0.0.1:0", rpc_port=0, profile="local",
        shutdown_timeout="5s",
    )  # fmt: skip
    agent = Agent(config)
    agent.start()
    try:
        good = normalize_job(
            {"name": "good", "schedule": "@every 1s", "executor": "shell",
             "executor_config": {"command": "true"}}
        )  # fmt: skip
        assert agent.submit_job(good).ok
        _wait(lambda: agent.store.executions("good"), "a first run")
        bad = {**good, "name": "bad", "tags": ["node", "node1"]}
        commands = [{"op": "set_job", "job": bad, "now_ns": NOW}]
        results = agent.committer.submit(commands)
        agent.on_applied(commands, results)  # what the Raft apply does after every entry
        ran_before = len(agent.store.executions("good"))
        _wait(lambda: len(agent.store.executions("good")) >= ran_before + 2, "two more runs")
        assert not results[0].ok and "tags" in results[0].error
        assert agent.store.get_job("bad") is None
    finally:
        agent.stop(graceful=False)


def test_a_bad_job_stored_by_an_older_version_is_named_at_start(tmp_path, caplog):
    """A store written before these checks may hold such a job: the start names it, so the
    operator can delete it (deleting needs only its name)."""
    path = str(tmp_path / "state.db")
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute(
        "INSERT INTO jobs(name, body) VALUES('old', ?)",
        (json.dumps({**job("old"), "tags": ["role", "web"]}),),
    )
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="dkron.store"):
        store = Store(path)
    assert any("job old is not valid" in r.message and "tags" in r.message for r in caplog.records)
    assert store.apply({"op": "delete_job", "name": "old"}).ok
    store.close()


def test_a_command_nested_too_deep_for_json_fails_alone_and_the_node_keeps_going(tmp_path):
    """Before, a command nested 5,000 deep stopped the Raft loop for good (RecursionError):
    every later write failed with "node stopped after an error"."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        addr = f"127.0.0.1:{s.getsockname()[1]}"
    store = Store(str(tmp_path / "state.db"))
    client = RpcClient(KEY)
    node = RaftReplicator(
        "n1", addr, str(tmp_path), store, client, bootstrap={"n1": addr}, config=raft_config(1),
        fsync=False,
    )  # fmt: skip
    node.start()
    try:
        _wait(node.is_leader, "leadership")
        deep: list = []
        for _ in range(5000):
            deep = [deep]
        with pytest.raises(ValueError, match="not JSON-serialisable"):
            node.submit([{"op": "delete_job", "name": "keep", "x": deep}], timeout=5)
        assert node.submit([set_job("after")], timeout=5)[0].ok
    finally:
        node.close()
        client.close()
        store.close()


@pytest.mark.parametrize("depth", [50, 900, 990, 999, 5_000])
def test_a_deep_raft_entry_reads_the_same_from_any_thread_depth(depth):
    """How deep json.loads may go depends on the caller's stack: servers applying the same
    entry from different places must still agree on whether it is a command list."""
    entry = ("[" * depth + "]" * depth).encode()

    def from_depth(frames: int):
        return decode_command_list(entry) if frames == 0 else from_depth(frames - 1)

    answers = {from_depth(frames) is None for frames in (0, 100, 400)}
    assert len(answers) == 1
