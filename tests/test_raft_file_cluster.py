"""Three Raft cores on real FileStorage directories: lossy delivery, follower log
replacement, compaction, snapshot installs and restarts from disk keep every acknowledged
write and end with identical state machines."""

from __future__ import annotations

import json
import random

from dkron_pkg.raft_storage import FileStorage, recover_with_voters
from dkron_pkg.raftlog import EntryKind, Proposal, RaftConfig, RaftNode, Role, decode, encode

IDS = ["a", "b", "c"]


class Server:
    def __init__(self, node_id: str, path, rng: random.Random, cfg: RaftConfig) -> None:
        self.id, self.path, self.rng, self.cfg = node_id, path, rng, cfg
        self.start()

    def start(self) -> None:
        self.storage = FileStorage(self.path)
        state = self.storage.load()
        self.kv: dict[str, str] = json.loads(state.snapshot.data) if state.snapshot else {}
        self.node = RaftNode(self.id, IDS, state, random.Random(self.rng.random()), self.cfg)
        self.applied: list[tuple[int, int]] = []

    def stop(self) -> None:
        self.storage.close()

    def drive(self, outbox: list[bytes]) -> None:
        node = self.node
        while node.has_ready():
            rd = node.ready()
            if rd.snapshot is not None:
                self.storage.save_snapshot(rd.snapshot)
                self.kv = json.loads(rd.snapshot.data)
            self.storage.append(rd.entries, rd.hard_state)
            outbox.extend(encode(m) for m in rd.messages)
            for entry in rd.committed_entries:
                if entry.kind == EntryKind.DATA:
                    key, value = entry.data.decode().split("=", 1)
                    self.kv[key] = value
                self.applied.append((entry.index, entry.term))
            node.advance(rd)
            if node.applied_index - node.snapshot_index >= 25:
                snap = json.dumps(self.kv, sort_keys=True).encode()
                self.storage.compact(node.compact(node.applied_index, snap))


def test_cluster_on_real_disks_survives_loss_restarts_and_compaction(tmp_path) -> None:
    rng = random.Random(42)
    cfg = RaftConfig(trailing_entries=5, max_entries_per_message=16)
    servers = {i: Server(i, tmp_path / i, rng, cfg) for i in IDS}
    down: dict[str, int] = {}
    outbox: list[bytes] = []
    acked: list[tuple[Proposal, str]] = []
    pending: list[tuple[Proposal, str, Server]] = []
    now = 0
    for step in range(3000):
        now += 10
        for sid, srv in servers.items():
            if sid in down:
                if now >= down[sid]:
                    del down[sid]
                    srv.start()
                continue
            srv.node.tick(now)
            if srv.node.role == Role.LEADER and step % 2 == 0 and step < 2500:
                write = f"k{step % 7}=v{step}"
                result = srv.node.propose(write.encode())
                if isinstance(result, Proposal):
                    pending.append((result, write, srv))
            srv.drive(outbox)
        frames, outbox[:] = outbox[:], []
        for frame in frames:
            if rng.random() < 0.1:
                continue
            msg = decode(frame)
            if msg.dst in down:
                continue
            servers[msg.dst].node.step(msg)
            servers[msg.dst].drive(outbox)
        for item in list(pending):
            proposal, write, srv = item
            if (proposal.index, proposal.term) in srv.applied:
                acked.append((proposal, write))
                pending.remove(item)
        if step % 400 == 399 and step < 2500:
            victim = rng.choice([i for i in IDS if i not in down])
            servers[victim].stop()
            down[victim] = now + rng.randint(100, 900)
            pending = [p for p in pending if p[2] is not servers[victim]]
    for srv in servers.values():
        if srv.id not in down:
            srv.stop()
    assert len(acked) > 300
    reopened = {i: Server(i, tmp_path / i, rng, cfg) for i in IDS}
    states = {json.dumps(s.kv, sort_keys=True) for s in servers.values()}
    assert len(states) == 1, "state machines diverged"
    final = servers["a"].kv
    last_write = {}
    for proposal, write in sorted(acked, key=lambda item: item[0].index):
        key, value = write.split("=", 1)
        last_write[key] = value
    for key, value in last_write.items():
        assert final[key] == value or int(final[key][1:]) > int(value[1:])
    for srv in reopened.values():
        state = srv.storage.load()
        assert state.snapshot is not None, "compaction wrote a snapshot"
        assert state.hard_state.commit >= max(p.index for p, _ in acked) - 50
        for proposal, _ in acked:
            if proposal.index > state.offset:
                held = state.entries[proposal.index - state.offset - 1]
                assert (held.index, held.term) == (proposal.index, proposal.term)
        srv.stop()


class DictMachine:
    """A minimal StateMachine: `key=value` commands into a dict."""

    def __init__(self) -> None:
        self.kv: dict[str, str] = {}

    def apply(self, index: int, data: bytes) -> None:
        key, value = data.decode().split("=", 1)
        self.kv[key] = value

    def snapshot(self) -> bytes:
        return json.dumps(self.kv, sort_keys=True).encode()

    def restore(self, data: bytes) -> None:
        self.kv = json.loads(data)


def test_lost_quorum_is_recovered_from_a_peers_list(tmp_path) -> None:
    """Two of three servers are gone for good: the survivor is recovered offline with the
    voter list ["a"], keeps its data (committed or not) and serves writes alone."""
    rng = random.Random(7)
    cfg = RaftConfig(trailing_entries=5)
    servers = {i: Server(i, tmp_path / i, rng, cfg) for i in IDS}
    outbox: list[bytes] = []
    now = 0
    writes = 0
    while writes < 60:
        now += 10
        for srv in servers.values():
            srv.node.tick(now)
            if srv.node.role == Role.LEADER and isinstance(
                srv.node.propose(f"k{writes % 5}=v{writes}".encode()), Proposal
            ):
                writes += 1
            srv.drive(outbox)
        frames, outbox[:] = outbox[:], []
        for frame in frames:
            msg = decode(frame)
            servers[msg.dst].node.step(msg)
            servers[msg.dst].drive(outbox)
    survivor = servers["a"]
    expected = dict(survivor.kv)
    for srv in servers.values():
        srv.stop()
    storage = FileStorage(tmp_path / "a")
    fsm = DictMachine()
    snap = recover_with_voters(storage, ["a"], fsm)
    storage.close()
    assert snap.meta.voters == ("a",)
    for key, value in expected.items():  # applied values, or later ones from the log's tail
        assert int(fsm.kv[key][1:]) >= int(value[1:])
    alone = Server("a", tmp_path / "a", rng, cfg)
    assert alone.node.voters == ("a",)
    for t in range(now, now + 400, 10):
        alone.node.tick(t)
        alone.drive([])
    assert alone.node.role == Role.LEADER
    assert isinstance(alone.node.propose(b"after=recovery"), Proposal)
    alone.drive([])
    assert alone.kv["after"] == "recovery"
    assert set(expected) <= set(alone.kv)
    alone.stop()
