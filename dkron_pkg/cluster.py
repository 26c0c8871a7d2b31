"""Servers in a Raft group: bootstrap, growing from one server, keeping members in step with
gossip, and saying what is misconfigured.

Every server runs Raft. One started with `--bootstrap-expect 1` (or none) and no join address,
on a data folder without Raft state, bootstraps alone: a group with itself as the only voter,
which commits at once. Its store's content becomes the first snapshot (raftnode), so a data
folder written by a build that ran a lone server without Raft keeps its jobs and executions.

Bootstrap of several servers follows Dkron: once gossip shows `bootstrap-expect` alive servers
of this region announcing the same `expect` tag, each of them starts Raft with that set of
servers (sorted by name, so they all agree) as the first configuration. Before that, a server
asks the servers it sees whether a Raft group with a leader exists already: if one does, it
joins it instead of bootstrapping (whatever its `--bootstrap-expect`). A server that joins
later, or restarts, starts Raft without a configuration and is added by the leader.

Growing (the leader, every RECONCILE_VOTERS_SECONDS; decisions in `autopilot`): every alive
server of the region is added as a learner, catches up by snapshot or log, and becomes a voter
once it has, up to `--raft-max-voters` voters; beyond, it stays a learner that replicates. A
server that left is removed at once; one failed (or unknown) in gossip for longer than
`--dead-server-cleanup` is removed when the alive voters still make a quorum without it. A
removed server that comes back is added again like a new one.

Misconfiguration is said (`problems`, shown by /health and the UI's Nodes page, logged once
when seen): a server whose `--bootstrap-expect` differs from another's, a server whose RPC port
cannot be reached from here (the leader's included), a learner that does not catch up.

Trust: members are added only from what gossip reports (every packet carries the cluster key's
tag and is dropped without it) and from `raft.add_server` over RPC (the key proved at connect).
No path takes a member from unauthenticated input; only `--dev-insecure` (loopback only) runs
gossip and RPC without the key.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, Future
from typing import Any, Protocol

from dkron_pkg import autopilot, metrics
from dkron_pkg.durations import parse_duration
from dkron_pkg.problems import Problems
from dkron_pkg.raft_storage import StorageError
from dkron_pkg.raftnode import NotLeaderError, RaftError, RaftReplicator, server_raft_config
from dkron_pkg.rpc import RpcClient, RpcError
from dkron_pkg.store import Result, Store

log = logging.getLogger("dkron.cluster")

WIRING_WAIT_SECONDS = 30.0  # a leadership callback waits this long for start() to finish

# What a replicated write can fail with: no leader, timeout, transport, storage, shutdown.
COMMIT_ERRORS = (
    NotLeaderError,
    RaftError,
    RpcError,
    StorageError,
    TimeoutError,
    OSError,
    RuntimeError,
    ValueError,
)
BOOTSTRAP_POLL_SECONDS = 0.2
EXISTING_CLUSTER_POLL_SECONDS = 1.0
RECONCILE_VOTERS_SECONDS = 1.0
CHECK_SECONDS = 2.0
PING_TIMEOUT_SECONDS = 2.0
# An RPC port unreachable this long while gossip says its server is alive is a problem (a
# server that just died is unreachable too, until gossip finds it failed).
RPC_PROBLEM_SECONDS = 8.0
# A learner that has not answered the leader at all this long is a problem (one that answers
# is catching up, however big the snapshot it receives).
LEARNER_SILENT_SECONDS = 8.0


def wants_raft(config: Any, data_dir: str) -> bool:
    """True when this node replicates through Raft: every server does (see the module
    docstring); `data_dir` is kept for callers of the earlier rule."""
    return bool(getattr(config, "server", False))


def _failed(commands: list[dict], message: str) -> list[Result]:
    return [Result(False, message, 503) for _ in commands]


class NoLeaderYet:
    """Stands in for the replicator until the cluster has formed: writes get a clear 503."""

    def __init__(self, message: str):
        self.message = message

    def submit(self, commands: list[dict], timeout: float = 10.0) -> list[Result]:
        return _failed(commands, self.message)

    def submit_async(self, commands: list[dict]) -> Future:
        fut: Future = Future()
        fut.set_result(_failed(commands, self.message))
        return fut

    def close(self) -> None:
        pass


class ReplicatedCommitter:
    """The Raft replicator seen as the agent's committer: failures become 503 results."""

    def __init__(self, replicator: RaftReplicator):
        self.replicator = replicator

    def submit(self, commands: list[dict], timeout: float = 10.0) -> list[Result]:
        started = time.monotonic()
        try:
            results = self.replicator.submit(commands, timeout)
            metrics.raft_commit_latency(time.monotonic() - started)
            return results
        except COMMIT_ERRORS as e:  # no leader, timeout, shutting down: the caller must know
            return _failed(commands, f"not committed: {e}")

    def submit_async(self, commands: list[dict]) -> Future:
        outer: Future = Future()
        try:
            inner = self.replicator.submit_async(commands)
        except COMMIT_ERRORS as e:  # same as above
            outer.set_result(_failed(commands, f"not committed: {e}"))
            return outer

        started = time.monotonic()

        def done(f: Future) -> None:
            try:
                outer.set_result(f.result())
                metrics.raft_commit_latency(time.monotonic() - started)
            except (*COMMIT_ERRORS, CancelledError) as e:  # same as above
                outer.set_result(_failed(commands, f"not committed: {e or 'cancelled'}"))

        inner.add_done_callback(done)
        return outer

    def close(self) -> None:
        self.replicator.close()


class ClusterHost(Protocol):
    """What the Raft membership needs of the server it runs in (the agent)."""

    node_name: str
    config: Any
    data_dir: str
    region: str
    committer: Any  # replaced: a clear 503 until the cluster forms, then the replicator
    store: Store
    rpc_client: RpcClient
    problems: Problems

    @property
    def rpc_addr(self) -> str: ...
    @property
    def stopping(self) -> threading.Event: ...
    def spawn(self, target: Callable[[], None], name: str) -> None: ...
    def members(self) -> list[dict]: ...
    def on_leadership(self, leader: bool) -> None: ...
    def on_applied(self, commands: list[dict], results: list[Result]) -> None: ...


class Cluster:
    """Raft membership of this server, driven by what gossip says."""

    def __init__(self, agent: ClusterHost):
        self.agent = agent
        config = agent.config
        self.expect = int(getattr(config, "bootstrap_expect", 0) or 0)
        self.max_voters = int(getattr(config, "raft_max_voters", 0) or autopilot.DEFAULT_MAX_VOTERS)
        self.cleanup_after = parse_duration(getattr(config, "dead_server_cleanup", "5m") or "0s")
        self.problems: Problems = getattr(agent, "problems", None) or Problems()
        self.replicator: RaftReplicator | None = None
        self._lock = threading.Lock()
        self._wired = threading.Event()  # set once `replicator` is the started one
        self._down_since: dict[str, float] = {}
        self._learner_since: dict[str, float] = {}
        self._unreachable_since: dict[str, float] = {}

    def start(self) -> None:
        self.agent.committer = NoLeaderYet(
            f"no leader yet: waiting for {max(self.expect, 1)} servers to form the cluster"
        )
        config = self.agent.config
        joining = bool(getattr(config, "join", None) or getattr(config, "retry_join", None))
        if os.path.isdir(os.path.join(self.agent.data_dir, "raft")):
            self._start_replicator(None)  # the stored configuration says who votes
        elif self.expect <= 1 and not joining:
            self._start_replicator({self.agent.node_name: self.agent.rpc_addr})
        elif self.expect <= 1:
            self._warn_if_store_is_replaced()
            self._start_replicator(None)  # joining a cluster: the leader adds this server
        else:
            self.agent.spawn(self._bootstrap_loop, "bootstrap")
        self.agent.spawn(self._voters_loop, "raft-voters")
        self.agent.spawn(self._checks_loop, "cluster-checks")

    def _warn_if_store_is_replaced(self) -> None:
        """A server that joins takes the cluster's state: what its own store held goes."""
        jobs = len(self.agent.store.job_names())
        if jobs:
            log.warning(
                "this server joins a cluster with %d jobs of its own in %s: the cluster's "
                "snapshot replaces them (export them first if they matter)",
                jobs,
                self.agent.data_dir,
            )

    def _servers(self) -> list[dict]:
        return [m for m in self._region_servers() if m["statusText"] == "alive"]

    def _region_servers(self) -> list[dict]:
        return [
            m
            for m in self.agent.members()
            if m["Tags"].get("server") == "true"
            and m["Tags"].get("region", self.agent.region) == self.agent.region
        ]

    def _existing_cluster(self) -> tuple[str, dict[str, str]] | None:
        """(leader, {voter: address}) of a Raft group with a leader among the servers gossip
        shows, or None. Servers that have not started Raft, or wait to be added, say so."""
        for m in self._servers():
            addr = m["Tags"].get("rpc_addr", "")
            if m["Name"] == self.agent.node_name or not addr:
                continue
            try:
                peers = self.agent.rpc_client.call(addr, "raft.peers", {}, timeout=2.0)
            except RpcError:
                continue
            if not isinstance(peers, list):
                continue
            voters = {
                str(p.get("id")): str(p.get("address", ""))
                for p in peers
                if isinstance(p, dict) and p.get("voter") is True
            }
            leader = next(
                (
                    str(p.get("id"))
                    for p in peers
                    if isinstance(p, dict) and p.get("state") == "leader"
                ),
                None,
            )
            if leader is not None and voters:
                return leader, voters
        return None

    def _bootstrap_loop(self) -> None:
        """Join an existing cluster if there is one; else wait for `expect` servers with the
        same expectation, then start with them."""
        next_probe = 0.0
        while not self.agent.stopping.wait(BOOTSTRAP_POLL_SECONDS):
            if time.monotonic() >= next_probe:
                next_probe = time.monotonic() + EXISTING_CLUSTER_POLL_SECONDS
                existing = self._existing_cluster()
                if existing is not None:
                    leader, voters = existing
                    if self.agent.node_name in voters:  # a founding server that came late
                        self._start_replicator(voters)
                    else:
                        log.info(
                            "server %s leads an existing cluster: this server joins it instead "
                            "of bootstrapping a new one",
                            leader,
                        )
                        self._warn_if_store_is_replaced()
                        self._start_replicator(None)
                    return
            peers = [m for m in self._servers() if m["Tags"].get("expect") == str(self.expect)]
            if len(peers) < self.expect:
                continue
            chosen = sorted(peers, key=lambda m: m["Name"])[: self.expect]
            names = [m["Name"] for m in chosen]
            if self.agent.node_name not in names:
                self._start_replicator(None)  # enough servers already: wait to be added
                return
            bootstrap = {m["Name"]: m["Tags"]["rpc_addr"] for m in chosen}
            log.info("bootstrapping the cluster with %s", ", ".join(names))
            self._start_replicator(bootstrap)
            return

    def _start_replicator(self, bootstrap: dict[str, str] | None) -> None:
        mult = max(1, int(getattr(self.agent.config, "raft_multiplier", 1) or 1))
        config = server_raft_config(mult)
        replicator = RaftReplicator(
            self.agent.node_name,
            self.agent.rpc_addr,
            self.agent.data_dir,
            self.agent.store,
            self.agent.rpc_client,
            bootstrap=bootstrap,
            config=config,
            on_leadership=self._on_leadership,
            on_applied=self.agent.on_applied,
        )
        replicator.start()
        with self._lock:
            self.replicator = replicator
        self.agent.committer = ReplicatedCommitter(replicator)
        self._wired.set()

    def _on_leadership(self, leader: bool) -> None:
        """A lone voter wins its election inside `replicator.start()`: the agent must not hear
        of it before `self.replicator` is set, or it would take up the leadership of term 0
        and never pass the barrier of the real term (no scheduled runs, no retries)."""
        self._wired.wait(WIRING_WAIT_SECONDS)
        self.agent.on_leadership(leader)

    def _voters_loop(self) -> None:
        """On the leader: the members follow gossip (see `autopilot`)."""
        while not self.agent.stopping.wait(RECONCILE_VOTERS_SECONDS):
            replicator = self.replicator
            if replicator is None or not replicator.is_leader():
                self._down_since.clear()  # a new leader times the down servers afresh
                self._learner_since.clear()
                self.problems.update("learner", {})
                self.problems.update("raft-group", {})
                continue
            try:
                self._reconcile(replicator)
            except COMMIT_ERRORS as e:  # retried on the next round
                log.warning("could not update the Raft members: %s", e)

    def _gossip_servers(self) -> dict[str, autopilot.Server]:
        return {
            m["Name"]: autopilot.Server(m["Name"], m["statusText"], m["Tags"].get("rpc_addr", ""))
            for m in self._region_servers()
        }

    def _reconcile(self, replicator: RaftReplicator) -> None:
        now = time.monotonic()
        me = self.agent.node_name
        servers = self._gossip_servers()
        voters, learners = replicator.voters(), replicator.learners()
        for name in {*voters, *learners} - {me}:
            server = servers.get(name)
            if server is not None and server.status == autopilot.ALIVE:
                self._down_since.pop(name, None)
            else:
                self._down_since.setdefault(name, now)
        for name in set(self._down_since) - {*voters, *learners}:
            del self._down_since[name]
        foreign = self._other_groups(servers, {me, *voters, *learners})
        servers = {name: server for name, server in servers.items() if name not in foreign}
        status = replicator.leader_progress() or {}
        commit, progress = int(status.get("commit_index", 0)), status.get("peers", {})
        ready = [
            name
            for name in learners
            if autopilot.caught_up(int(progress.get(name, {}).get("match", 0)), commit)
        ]
        self._note_stuck_learners(learners, ready, progress, commit, now)
        actions = autopilot.plan(
            me,
            voters,
            learners,
            servers,
            self._down_since,
            ready,
            now,
            self.cleanup_after,
            self.max_voters,
        )
        for action in actions:
            self._carry_out(replicator, action)

    def _other_groups(
        self, servers: dict[str, autopilot.Server], members: set[str]
    ) -> dict[str, list[str]]:
        """Alive servers that are not members and belong to another Raft group ({name: its
        voters}): adding one would make it drop its own log for this one's. A server that
        waits to be added, or a member of this group that was removed, is no such server."""
        found: dict[str, list[str]] = {}
        for name, server in servers.items():
            if name in members or server.status != autopilot.ALIVE or not server.rpc_addr:
                continue
            try:
                peers = self.agent.rpc_client.call(server.rpc_addr, "raft.peers", {}, timeout=2.0)
            except RpcError:
                continue  # not reachable: adding it as a learner is harmless
            voters = {
                str(p.get("id"))
                for p in (peers if isinstance(peers, list) else [])
                if isinstance(p, dict) and p.get("voter") is True
            }
            if voters and not voters & members:
                found[name] = sorted(voters)
        self.problems.update(
            "raft-group",
            {
                name: (
                    f"server {name} belongs to another Raft group (voters: {', '.join(voters)}), "
                    f"so it is not added to this one: two clusters share this gossip ring. To "
                    f"merge them, stop {name}, empty its data folder (its jobs and executions "
                    f"are not kept) and start it again with --join"
                )
                for name, voters in found.items()
            },
        )
        return found

    def _carry_out(self, replicator: RaftReplicator, action: autopilot.Action) -> None:
        name = action.name
        try:
            if action.op == "add_learner":
                log.info(
                    "adding server %s to the Raft group as a learner (%s); it becomes a voter "
                    "once it has caught up, up to %d voters",
                    name,
                    action.reason,
                    self.max_voters,
                )
                replicator.add_server(name, action.rpc_addr, voter=False)
            elif action.op == "promote":
                log.info("server %s has caught up: it becomes a voter", name)
                replicator.add_server(name, action.rpc_addr, voter=True)
            else:
                log.warning("removing server %s from the Raft group: %s", name, action.reason)
                replicator.remove_server(name)
                self._down_since.pop(name, None)
        except COMMIT_ERRORS as e:  # retried on the next round
            log.warning("could not %s %s: %s", action.op.replace("_", " "), name, e)

    def _note_stuck_learners(
        self, learners: list[str], ready: list[str], progress: dict, commit: int, now: float
    ) -> None:
        """A learner that never answers (appends nor heartbeats) cannot reach this leader."""
        for name in set(self._learner_since) - set(learners):
            del self._learner_since[name]
        found = {}
        for name in learners:
            since = self._learner_since.setdefault(name, now)
            peer = progress.get(name, {})
            if name in ready or peer.get("active"):
                self._learner_since[name] = now
            elif now - since >= LEARNER_SILENT_SECONDS:
                found[name] = (
                    f"server {name} has not answered this leader for {now - since:.0f}s (it "
                    f"acknowledged index {int(peer.get('match', 0))} of {commit}): can it reach "
                    f"this leader's RPC port at {self.agent.rpc_addr}?"
                )
        self.problems.update("learner", found)

    # ----- misconfiguration -----------------------------------------------------------------

    def _checks_loop(self) -> None:
        """On every server: bootstrap-expect agreement and RPC reachability of the others."""
        while not self.agent.stopping.wait(CHECK_SECONDS):
            try:
                self.check_expect()
                self.check_rpc()
            except Exception:  # a check must never stop the server; retried next round
                log.debug("cluster checks failed", exc_info=True)

    def check_expect(self) -> None:
        others = {}
        for m in self._servers():
            value = m["Tags"].get("expect", "")
            if m["Name"] != self.agent.node_name and value.isdigit():
                others[m["Name"]] = int(value)
        found = {
            name: (
                f"server {name} was started with --bootstrap-expect {value} and this server with "
                f"{self.expect}: give every server of a cluster the same value (it decides only "
                f"how a new cluster first forms; a server joins an existing cluster whatever "
                f"its value)"
            )
            for name, value in autopilot.expect_disagreements(self.expect, others).items()
        }
        self.problems.update("bootstrap-expect", found)

    def check_rpc(self) -> None:
        leader = self.leader_name()
        found = {}
        alive = {m["Name"]: m["Tags"].get("rpc_addr", "") for m in self._servers()}
        for name in set(self._unreachable_since) - set(alive):
            del self._unreachable_since[name]
        for name, addr in sorted(alive.items()):
            if name == self.agent.node_name or not addr:
                continue
            try:
                self.agent.rpc_client.call(addr, "node.ping", {}, timeout=PING_TIMEOUT_SECONDS)
                self._unreachable_since.pop(name, None)
            except RpcError as e:
                since = self._unreachable_since.setdefault(name, time.monotonic())
                if time.monotonic() - since < RPC_PROBLEM_SECONDS:
                    continue
                role = "the leader " if name == leader else "server "
                why = str(e).removeprefix(f"cannot reach {addr}: ")
                found[name] = (
                    f"cannot reach {role}{name}'s RPC port at {addr}: {why}; check that "
                    f"server's --advertise-addr and --advertise-rpc-port, and firewalls"
                )
        self.problems.update("rpc", found)

    # ----- what the API shows ---------------------------------------------------------------

    def is_leader(self) -> bool:
        return self.replicator is not None and self.replicator.is_leader()

    def leader_name(self) -> str | None:
        return self.replicator.leader_id() if self.replicator is not None else None

    def leader_addr(self) -> str | None:
        return self.replicator.leader_addr() if self.replicator is not None else None

    def peers(self) -> list[dict]:
        return self.replicator.peers() if self.replicator is not None else []

    def remove_peer(self, peer_id: str) -> Result:
        replicator = self.replicator
        if replicator is None:
            return Result(False, "this server has not joined a Raft group yet", 503)
        if peer_id not in replicator.voters() and peer_id not in replicator.learners():
            return Result(False, f'peer "{peer_id}" not found', 404)
        try:
            replicator.remove_server(peer_id)
        except COMMIT_ERRORS as e:  # not leader, timeout: tell the operator
            return Result(False, f"could not remove {peer_id}: {e}", 500)
        return Result(True, value=replicator.peers())

    def handle_rpc(self, method: str, args: Any, peer: str) -> Any:
        replicator = self.replicator
        if replicator is None:
            raise RpcError("this server has not started Raft yet")
        return replicator.handle_rpc(method, args, peer)

    def on_raft_frame(self, data: bytes, peer: str) -> None:
        replicator = self.replicator
        if replicator is not None:
            replicator.on_raft_frame(data, peer)

    def close(self) -> None:
        replicator = self.replicator
        if replicator is None:
            return
        if replicator.is_leader():
            try:
                replicator.transfer_leadership(timeout=3.0)
            except Exception:  # leaving anyway
                log.debug("leadership transfer failed", exc_info=True)
        replicator.close()
