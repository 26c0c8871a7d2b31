"""Raft driver (RaftReplicator) with real sockets on 127.0.0.1, real stores and real disks.

Each test runs a few replicators in this process, each with its own RpcServer (port 0), RPC
client, job store and data directory, and checks what a user of the cluster would notice:
a leader is elected, writes land on every server, no acknowledged write is lost when the
leader stops or nodes restart, lagging nodes catch up, membership changes, recovery from
peers.json, and frames from a process without the cluster key are dropped.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from dkron_pkg import rpc
from dkron_pkg.raft_envelope import read_peers_file
from dkron_pkg.raftnode import NotLeaderError, RaftError, RaftReplicator, raft_config
from dkron_pkg.rpc import RpcClient, RpcServer
from dkron_pkg.store import Store

KEY = b"k" * 32
WAIT_S = 15.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _release_port(port: int) -> None:
    """RpcServer.stop() closes its listener while the accept thread still blocks in accept(),
    which keeps the port listening until one more connection arrives: send that connection so
    the port is really free for a restart on the same address."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        pass
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            socket.create_server(("127.0.0.1", port)).close()
            return
        except OSError:
            time.sleep(0.02)


def wait_for(pred: Callable[[], object], what: str, timeout: float = WAIT_S) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def job_cmd(name: str) -> dict:
    job = {
        "name": name,
        "schedule": "@every 1h",
        "executor": "shell",
        "executor_config": {"command": "true"},
    }
    return {"op": "set_job", "job": job, "now_ns": 1_700_000_000_000_000_000}


class Server:
    """One server: store + RPC server + client + replicator, restartable from its directory."""

    def __init__(self, node_id: str, base: Path, port: int, **kwargs) -> None:
        self.id = node_id
        self.dir = base / node_id
        self.port = port
        self.addr = f"127.0.0.1:{port}"
        self.kwargs = kwargs
        self.raft: RaftReplicator | None = None
        self.running = False

    def start(self, bootstrap: dict[str, str] | None) -> Server:
        self.store = Store(str(self.dir / "store.db"))
        self.client = RpcClient(KEY, connect_timeout=1.0)
        # multiplier 2 (300-600 ms elections): no spurious elections on a loaded CI machine
        kwargs = {"config": raft_config(2), "fsync": False, **self.kwargs}
        self.raft = RaftReplicator(
            self.id,
            self.addr,
            str(self.dir),
            self.store,
            self.client,
            bootstrap=bootstrap,
            **kwargs,
        )
        self.server = RpcServer(
            "127.0.0.1", self.port, KEY, self.raft.handle_rpc, self.raft.on_raft_frame
        )
        self.raft.start()
        self.server.start()
        self.running = True
        return self

    def stop(self) -> None:
        if not self.running:
            return
        self.running = False
        self.server.stop()
        _release_port(self.port)
        self.raft.close()
        self.client.close()
        self.store.close()

    def job_names(self) -> set[str]:
        return {j["name"] for j in self.store.list_jobs()}


class Cluster:
    def __init__(self, base: Path, n: int, **kwargs) -> None:
        self.base = base
        ids = [f"n{i}" for i in range(1, n + 1)]
        self.servers = {i: Server(i, base, _free_port(), **kwargs) for i in ids}
        self.bootstrap = {s.id: s.addr for s in self.servers.values()}

    def start(self) -> Cluster:
        for s in self.servers.values():
            s.start(self.bootstrap)
        return self

    def running(self) -> list[Server]:
        return [s for s in self.servers.values() if s.running]

    def leader(self, timeout: float = WAIT_S) -> Server:
        def one() -> Server | None:
            leaders = [s for s in self.running() if s.raft.is_leader()]
            return leaders[0] if len(leaders) == 1 else None

        return wait_for(one, "a single leader", timeout)  # type: ignore[return-value]

    def followers(self) -> list[Server]:
        leader = self.leader()
        return [s for s in self.running() if s is not leader]

    def stop(self) -> None:
        for s in self.servers.values():
            s.stop()


def submit_retrying(server: Server, commands: list[dict], timeout: float = WAIT_S) -> list:
    """Like a client would: retry while no leader is known (elections under test load)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return server.raft.submit(commands, timeout=max(0.5, deadline - time.monotonic()))
        except NotLeaderError:
            if time.monotonic() > deadline:
                raise


@pytest.fixture
def cluster_factory(tmp_path):
    made: list[Cluster] = []

    def make(n: int = 3, **kwargs) -> Cluster:
        c = Cluster(tmp_path, n, **kwargs).start()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stop()


# ----- tests ------------------------------------------------------------------------------------


def test_elects_one_leader_and_replicates_reads_on_every_node(cluster_factory):
    c = cluster_factory(3)
    leader = c.leader()
    results = submit_retrying(leader, [job_cmd("on-leader")])
    assert results[0].ok and results[0].status == 201
    # The leader applied it before submit returned (read-your-writes on the leader).
    assert "on-leader" in leader.job_names()
    follower = c.followers()[0]
    results = submit_retrying(follower, [job_cmd("via-follower")])
    assert results[0].ok
    # Forwarded to the leader, and applied on the follower before submit returned.
    assert "via-follower" in follower.job_names()
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert {"on-leader", "via-follower"} <= s.job_names()
    peers = leader.raft.peers()
    assert sorted(p["id"] for p in peers) == ["n1", "n2", "n3"]
    assert [p["state"] for p in peers].count("leader") == 1
    assert {p["id"]: p["address"] for p in peers} == c.bootstrap
    leader = c.leader()
    wait_for(
        lambda: all(
            s.raft.leader_id() == leader.id and s.raft.leader_addr() == leader.addr
            for s in c.running()
        ),
        "every node knows the leader and its address",
    )


def test_store_errors_come_back_to_the_submitter_of_a_follower(cluster_factory):
    c = cluster_factory(3)
    follower = c.followers()[0]
    results = submit_retrying(follower, [{"op": "delete_job", "name": "missing"}, job_cmd("x")])
    assert not results[0].ok and results[0].status == 404 and "missing" in results[0].error
    assert results[1].ok and results[1].value["name"] == "x"


def test_many_concurrent_submits_are_all_applied_in_order(cluster_factory):
    c = cluster_factory(3)
    leader = c.leader()
    futures = [leader.raft.submit_async([job_cmd(f"j{i}")]) for i in range(300)]
    for fut in futures:
        assert fut.result(timeout=WAIT_S)[0].ok
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert len(s.job_names()) == 300
    # Group commit: 300 submits needed far fewer log entries than submits.
    assert leader.raft.applied_index() < 150


def test_leader_stop_new_leader_takes_writes_and_nothing_acknowledged_is_lost(cluster_factory):
    c = cluster_factory(3)
    old = c.leader()
    acked = []
    for i in range(20):
        submit_retrying(old, [job_cmd(f"before-{i}")])
        acked.append(f"before-{i}")
    old.stop()
    new = c.leader()
    assert new is not old
    for i in range(20):
        target = c.running()[i % 2]
        submit_retrying(target, [job_cmd(f"after-{i}")])
        acked.append(f"after-{i}")
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert set(acked) <= s.job_names()


def test_a_new_leader_logs_why_it_took_over(cluster_factory, caplog):
    c = cluster_factory(3)
    old = c.leader()
    old_id = old.raft.id
    with caplog.at_level("INFO", logger="dkron.raft"):
        old.stop()
        new = c.leader()
    line = f"raft: {new.raft.id} is leader in term {new.raft.term()}"
    took_over = [r.getMessage() for r in caplog.records if r.getMessage().startswith(line)]
    assert took_over, caplog.text
    # The first election after the stop says why (a split vote may need a second term, whose
    # winner then says only that no leader was known).
    why = f"no word from leader {old_id} for "
    assert any(why in r.getMessage() for r in caplog.records), caplog.text


def test_writes_racing_a_leader_stop_lose_nothing_acknowledged(cluster_factory):
    c = cluster_factory(3, fsync=True)
    old = c.leader()
    acked: list[str] = []
    stop = threading.Event()

    def writer(wid: int) -> None:
        i = 0
        while not stop.is_set() and i < 400:
            server = c.running()[(wid + i) % len(c.running())]
            name = f"w{wid}-{i}"
            i += 1
            try:
                server.raft.submit([job_cmd(name)], timeout=5)
            except (NotLeaderError, RaftError, TimeoutError):
                continue  # not acknowledged: the client does not count it
            acked.append(name)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    wait_for(lambda: len(acked) >= 40, "writes before the stop")
    old.stop()
    count_at_stop = len(acked)
    wait_for(lambda: len(acked) >= count_at_stop + 40, "writes after the stop")
    stop.set()
    for t in threads:
        t.join(timeout=WAIT_S)
    assert c.leader() is not old
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert set(acked) <= s.job_names()


def test_leader_removing_itself_hands_over(cluster_factory):
    c = cluster_factory(3)
    old = c.leader()
    submit_retrying(old, [job_cmd("before")])
    old.raft.remove_server(old.id)
    new = wait_for(
        lambda: next((s for s in c.running() if s is not old and s.raft.is_leader()), None),
        "a leader among the others",
    )
    assert old.id not in new.raft.voters()
    submit_retrying(new, [job_cmd("after")])
    assert {"before", "after"} <= new.job_names()


def test_restarted_node_catches_up_from_its_disk_and_the_leader(cluster_factory):
    c = cluster_factory(3, fsync=True)
    submit_retrying(c.leader(), [job_cmd(f"a{i}") for i in range(10)])
    victim = c.followers()[0]
    victim.raft.barrier(timeout=5)
    victim.stop()
    for i in range(10):
        submit_retrying(c.leader(), [job_cmd(f"b{i}")])
    victim.start(c.bootstrap)
    # Its store kept what it had applied; the log replay and the leader bring the rest.
    assert {f"a{i}" for i in range(10)} <= victim.job_names()
    victim.raft.barrier(timeout=WAIT_S)
    assert {f"b{i}" for i in range(10)} <= victim.job_names()
    submit_retrying(victim, [job_cmd("after-restart")])
    assert "after-restart" in victim.job_names()


def test_whole_cluster_restart_keeps_every_acknowledged_write(cluster_factory):
    c = cluster_factory(3, fsync=True)
    for i in range(15):
        submit_retrying(c.running()[i % 3], [job_cmd(f"w{i}")])
    c.stop()
    for s in c.servers.values():
        s.start(c.bootstrap)
    c.leader()
    for s in c.running():
        s.raft.barrier(timeout=WAIT_S)
        assert {f"w{i}" for i in range(15)} <= s.job_names()


def test_restart_with_lost_store_restores_from_snapshot_and_log(cluster_factory):
    c = cluster_factory(1, snapshot_every=20)
    (s,) = c.running()
    c.leader()
    for i in range(50):
        submit_retrying(s, [job_cmd(f"s{i}")])
    s.stop()
    for name in os.listdir(s.dir):
        if name.startswith("store.db"):
            os.unlink(s.dir / name)
    s.start(c.bootstrap)
    wait_for(lambda: s.raft.applied_index() >= 50, "replay")
    s.raft.barrier(timeout=5)
    assert s.job_names() == {f"s{i}" for i in range(50)}


def test_lagging_follower_catches_up_by_snapshot(cluster_factory):
    c = cluster_factory(3, snapshot_every=30, config=raft_config(2, trailing_entries=5))
    lagger = c.followers()[0]
    lagger.stop()
    leader = c.leader()
    for i in range(80):
        submit_retrying(leader, [job_cmd(f"l{i}")])
    # The leader's log no longer holds what the lagger misses: it must get a snapshot.
    wait_for(lambda: leader.raft._node.first_index > 2, "leader compaction")
    lagger.start(c.bootstrap)
    lagger.raft.barrier(timeout=WAIT_S)
    assert {f"l{i}" for i in range(80)} <= lagger.job_names()
    assert lagger.raft.addresses() == c.bootstrap
    submit_retrying(lagger, [job_cmd("after")])
    assert "after" in lagger.job_names()


def test_a_snapshot_many_frames_long_reaches_a_lagging_follower(cluster_factory, monkeypatch):
    """A store that outgrew one RPC frame (jobs with long commands, executions with output)
    still reaches a follower that needs it: the snapshot goes in authenticated parts."""
    monkeypatch.setattr(rpc, "MAX_FRAME", 64 * 1024)
    monkeypatch.setattr(rpc, "RAFT_PART_BYTES", 16 * 1024)
    c = cluster_factory(3, snapshot_every=30, config=raft_config(2, trailing_entries=5))
    lagger = c.followers()[0]
    lagger.stop()
    leader = c.leader()
    for i in range(80):
        cmd = job_cmd(f"big{i}")
        cmd["job"]["executor_config"]["command"] = "echo " + "x" * 4000
        submit_retrying(leader, [cmd])
    wait_for(lambda: leader.raft._node.first_index > 2, "leader compaction")
    assert len(leader.raft._node.snapshot.data) > 4 * 64 * 1024
    lagger.start(c.bootstrap)
    lagger.raft.barrier(timeout=WAIT_S)
    assert {f"big{i}" for i in range(80)} <= lagger.job_names()


def test_add_and_remove_server(cluster_factory, tmp_path):
    c = cluster_factory(3)
    leader = c.leader()
    submit_retrying(leader, [job_cmd(f"pre{i}") for i in range(5)])
    newcomer = Server("n4", tmp_path, _free_port())
    newcomer.start(None)  # waits to be added
    try:
        assert not newcomer.raft.is_leader()
        follower = c.followers()[0]
        follower.raft.add_server("n4", newcomer.addr)  # forwarded to the leader
        leader.raft.add_server("n4", newcomer.addr)  # idempotent
        wait_for(lambda: "n4" in c.leader().raft.voters(), "n4 voter")
        newcomer.raft.barrier(timeout=WAIT_S)
        assert {f"pre{i}" for i in range(5)} <= newcomer.job_names()
        # The newcomer learned every address through the log.
        assert newcomer.raft.addresses() == {**c.bootstrap, "n4": newcomer.addr}
        submit_retrying(newcomer, [job_cmd("from-n4")])
        assert "from-n4" in newcomer.job_names()
        # Remove a follower; the rest keeps taking writes with the new majority.
        gone = next(s for s in c.followers() if s.id != "n4")
        c.leader().raft.remove_server(gone.id)
        wait_for(lambda: gone.id not in c.leader().raft.voters(), "removal")
        assert len(c.leader().raft.peers()) == 3
        gone.stop()
        submit_retrying(newcomer, [job_cmd("after-removal")])
        assert "after-removal" in newcomer.job_names()
    finally:
        newcomer.stop()


def test_transfer_leadership_hands_over_and_writes_continue(cluster_factory):
    changes: list[bool] = []
    c = cluster_factory(3, on_leadership=changes.append)
    old = c.leader()
    wait_for(lambda: changes == [True], "on_leadership(True) once")  # only the leader is told
    submit_retrying(old, [job_cmd("t1")])
    assert old.raft.transfer_leadership(timeout=5)
    new = c.leader()
    assert new is not old
    assert not old.raft.is_leader()
    # The old leader was told it lost leadership, the new one that it won.
    # (each server calls back from its own thread: the two may arrive in either order)
    wait_for(lambda: changes.count(False) >= 1 and changes.count(True) >= 2, "leadership callbacks")
    assert changes.count(True) - changes.count(False) == 1
    submit_retrying(old, [job_cmd("t2")])
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert {"t1", "t2"} <= s.job_names()


def test_peers_json_recovers_one_survivor_of_three(cluster_factory):
    c = cluster_factory(3, fsync=True)
    leader = c.leader()
    submit_retrying(leader, [job_cmd(f"r{i}") for i in range(10)])
    for s in c.running():
        s.raft.barrier(timeout=5)
    c.stop()
    survivor = c.servers["n2"]
    peers_file = survivor.dir / "raft" / "peers.json"
    peers_file.write_text(json.dumps([{"id": "n2", "address": survivor.addr}]))
    survivor.start(c.bootstrap)
    assert survivor.raft.recovered_from_peers_file
    assert not peers_file.exists()
    wait_for(survivor.raft.is_leader, "survivor leads alone")
    assert survivor.raft.voters() == ["n2"]
    assert {f"r{i}" for i in range(10)} <= survivor.job_names()
    submit_retrying(survivor, [job_cmd("after-recovery")])
    assert "after-recovery" in survivor.job_names()
    # It stays recovered across a normal restart.
    survivor.stop()
    survivor.start(c.bootstrap)
    wait_for(survivor.raft.is_leader, "survivor leads again")
    assert survivor.raft.voters() == ["n2"]
    assert "after-recovery" in survivor.job_names()


def test_bad_peers_json_is_reported_with_the_file_and_the_problem(tmp_path):
    path = tmp_path / "peers.json"
    for text, fragment in [
        ("{", "not valid JSON"),
        ("[]", "non-empty list"),
        ('[{"address": "1.2.3.4:6868"}]', 'no "id"'),
        ('[{"id": "a", "address": "nowhere"}]', "ip:6868"),
        ('[{"id": "a", "address": "h:1"}, {"id": "a", "address": "h:2"}]', "twice"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError) as err:
            read_peers_file(path)
        assert str(path) in str(err.value) and fragment in str(err.value)
    store = Store(":memory:")
    (tmp_path / "n" / "raft").mkdir(parents=True)
    (tmp_path / "n" / "raft" / "peers.json").write_text("[]")
    node = RaftReplicator("n", "127.0.0.1:1", str(tmp_path / "n"), store, RpcClient(KEY))
    with pytest.raises(ValueError, match="non-empty list"):
        node.start()
    store.close()


def test_frames_without_the_key_or_garbage_are_dropped(cluster_factory):
    c = cluster_factory(3)
    leader = c.leader()
    term = leader.raft.term()
    target = c.followers()[0]
    before = sum(rpc.DROPPED.values())
    intruder = RpcClient(b"x" * 32, connect_timeout=1.0)
    from dkron_pkg.raft_messages import RequestVote, encode

    forged = encode(RequestVote(term + 50, "n9", target.id, 10**6, 10**6))
    intruder.send_raft(target.addr, forged)
    with pytest.raises(rpc.RpcError):
        intruder.call(target.addr, "raft.submit", {"commands": [job_cmd("evil")]}, timeout=2)
    intruder.close()
    wait_for(lambda: sum(rpc.DROPPED.values()) > before, "rpc drop counted")
    # Garbage that did get through authentication is dropped by the driver with a reason.
    target.raft.on_raft_frame(b"\x01\x63garbage", "test")
    target.raft.on_raft_frame(encode(RequestVote(1, "n1", "someone-else", 0, 0)), "test")
    assert sum(target.raft.dropped.values()) == 2
    # Nothing changed: same leader, same term, no evil job, writes still work.
    submit_retrying(target, [job_cmd("good")])
    assert c.leader() is leader and leader.raft.term() == term
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert "good" in s.job_names() and "evil" not in s.job_names()


def test_no_leader_gives_a_clear_error(tmp_path):
    lonely = Server("n1", tmp_path, _free_port())
    other = f"127.0.0.1:{_free_port()}"
    lonely.start({"n1": lonely.addr, "n2": other})
    try:
        with pytest.raises(NotLeaderError, match="no leader elected within"):
            lonely.raft.submit([job_cmd("x")], timeout=0.5)
        with pytest.raises(NotLeaderError, match="quorum"):
            lonely.raft.barrier(timeout=0.3)
    finally:
        lonely.stop()
    with pytest.raises(RaftError, match="closed"):
        lonely.raft.submit([job_cmd("x")], timeout=0.5)


def test_raft_multiplier_is_checked():
    assert raft_config(3).election_timeout_min_ms == 450
    with pytest.raises(ValueError, match="between 1 and 10"):
        raft_config(11)


def test_random_frames_never_crash_a_node(tmp_path):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from dkron_pkg.raft_messages import Heartbeat, encode

    solo = Server("n1", tmp_path, _free_port())
    solo.start({"n1": solo.addr})
    try:
        wait_for(solo.raft.is_leader, "solo leader")
        valid = encode(Heartbeat(1, "n2", "n1", 0))

        @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
        @given(
            st.one_of(st.binary(max_size=200), st.binary(max_size=40).map(lambda b: valid[:5] + b))
        )
        def feed(data: bytes) -> None:
            solo.raft.on_raft_frame(data, "fuzz")

        feed()
        assert sum(solo.raft.dropped.values()) > 0
        assert all(isinstance(k, str) and k for k in solo.raft.dropped)
        results = submit_retrying(solo, [job_cmd("still-works")])
        assert results[0].ok and "still-works" in solo.job_names()
    finally:
        solo.stop()


def test_node_restarted_on_a_new_port_announces_its_address(cluster_factory):
    c = cluster_factory(3)
    submit_retrying(c.leader(), [job_cmd("one")])
    mover = c.followers()[0]
    mover.raft.barrier(timeout=5)
    mover.stop()
    mover.port = _free_port()
    mover.addr = f"127.0.0.1:{mover.port}"
    mover.start({**c.bootstrap, mover.id: mover.addr})
    # The others only knew the old port: the mover's announcement, committed through the log,
    # tells every server where it listens now.
    wait_for(
        lambda: all(s.raft.addresses()[mover.id] == mover.addr for s in c.running()),
        "new address known everywhere",
    )
    submit_retrying(c.leader(), [job_cmd("two")])
    mover.raft.barrier(timeout=WAIT_S)
    assert {"one", "two"} <= mover.job_names()


def test_malformed_command_fails_alone_and_the_cluster_keeps_going(cluster_factory):
    c = cluster_factory(3)
    follower = c.followers()[0]
    cmds = [job_cmd("ok1"), {"op": "close_intent"}, job_cmd("ok2")]  # "group" is missing
    results = submit_retrying(follower, cmds)
    assert results[0].ok and results[2].ok
    assert not results[1].ok and "close_intent" in results[1].error
    submit_retrying(c.leader(), [job_cmd("after")])
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert {"ok1", "ok2", "after"} <= s.job_names()


def test_callbacks_run_in_order_off_the_raft_threads_and_may_submit(tmp_path):
    ready = threading.Event()
    applied: list[tuple[str, bool]] = []
    holder: dict[str, Server] = {}

    def on_leadership(leading: bool) -> None:
        ready.wait(5)
        if leading:  # a callback that writes must not deadlock the node
            holder["s"].raft.submit([job_cmd("written-by-callback")], timeout=5)

    def on_applied(commands: list[dict], results: list) -> None:
        applied.extend((c["job"]["name"], r.ok) for c, r in zip(commands, results, strict=True))

    solo = Server("n1", tmp_path, _free_port(), on_leadership=on_leadership, on_applied=on_applied)
    holder["s"] = solo
    solo.start({"n1": solo.addr})
    ready.set()
    try:
        wait_for(lambda: "written-by-callback" in solo.job_names(), "callback's write")
        submit_retrying(solo, [job_cmd("a"), job_cmd("b")])
        wait_for(lambda: len(applied) == 3, "on_applied calls")
        assert applied == [("written-by-callback", True), ("a", True), ("b", True)]
    finally:
        solo.stop()


def test_bootstrap_voters_survive_restarts_without_bootstrap(cluster_factory):
    c = cluster_factory(3, fsync=True)
    submit_retrying(c.leader(), [job_cmd("x")])
    c.stop()
    for s in c.servers.values():
        s.start(None)  # later boots of the servers do not pass the bootstrap set again
    leader = c.leader()
    assert sorted(leader.raft.voters()) == ["n1", "n2", "n3"]
    submit_retrying(leader, [job_cmd("y")])
    for s in c.running():
        s.raft.barrier(timeout=5)
        assert {"x", "y"} <= s.job_names()


def test_forwarded_answer_arriving_after_the_apply_still_gets_its_results(tmp_path):
    """A follower may apply a forwarded write before the leader's answer (index, term) reaches
    it: the results then come from the node's record of recent entries."""
    from concurrent.futures import Future

    solo = Server("n1", tmp_path, _free_port())
    solo.start({"n1": solo.addr})
    try:
        wait_for(solo.raft.is_leader, "solo leader")
        fut = solo.raft.submit_async([job_cmd("a"), {"op": "delete_job", "name": "nope"}])
        results = fut.result(timeout=WAIT_S)
        index, term = fut.index, solo.raft.term()  # where the write landed in the log
        assert index > 0
        late: Future = Future()
        solo.raft._add_waiter(index, term, [(late, 1, 1)], time.monotonic() + 5)
        (again,) = late.result(timeout=5)
        assert not again.ok and again.status == results[1].status == 404
        stale: Future = Future()
        solo.raft._add_waiter(index, term + 1, [(stale, 0, 1)], time.monotonic() + 5)
        with pytest.raises(Exception) as err:  # the internal retry signal
            stale.result(timeout=5)
        assert type(err.value).__name__ == "_Retry"  # another entry took the slot: resubmit
    finally:
        solo.stop()
