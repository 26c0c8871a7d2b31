"""Servers in a Raft group: when to use Raft, bootstrap, keeping voters in step with gossip.

A server uses Raft when it is part of a cluster: `--bootstrap-expect` above 1, a `--join` or
`--retry-join` address, or Raft state already in its data folder. A lone server started with
`--bootstrap-expect 1` and no join address commits to its local store directly (group commit),
which is the same state machine without the replicated log.

Bootstrap follows Dkron: once gossip shows `bootstrap-expect` alive servers of this region
announcing the same `expect` tag, each of them starts Raft with that set of servers (sorted by
name, so they all agree) as the first configuration. A server that joins later, or restarts,
starts Raft without a configuration and is added by the leader, which adds every alive server
it sees in gossip and removes those that left gracefully.

Trust: voters are added only from what gossip reports (every packet carries the cluster key's
tag and is dropped without it) and from `raft.add_server` over RPC (the key proved at connect).
No path takes a voter from unauthenticated input; only `--dev-insecure` (loopback only) runs
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

from dkron_pkg import metrics
from dkron_pkg.raft_storage import StorageError
from dkron_pkg.raftnode import NotLeaderError, RaftError, RaftReplicator, server_raft_config
from dkron_pkg.rpc import RpcClient, RpcError
from dkron_pkg.store import Result, Store

log = logging.getLogger("dkron.cluster")

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
RECONCILE_VOTERS_SECONDS = 2.0


def wants_raft(config: Any, data_dir: str) -> bool:
    """True when this server must replicate through Raft (see the module docstring)."""
    if not getattr(config, "server", False):
        return False
    if int(getattr(config, "bootstrap_expect", 0) or 0) > 1:
        return True
    if getattr(config, "join", None) or getattr(config, "retry_join", None):
        return True
    return os.path.isdir(os.path.join(data_dir, "raft"))


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
        self.expect = int(getattr(agent.config, "bootstrap_expect", 0) or 0)
        self.replicator: RaftReplicator | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        self.agent.committer = NoLeaderYet(
            f"no leader yet: waiting for {max(self.expect, 1)} servers to form the cluster"
        )
        if os.path.isdir(os.path.join(self.agent.data_dir, "raft")) or self.expect <= 1:
            self._start_replicator(None if self.expect != 1 else self._self_only())
        else:
            self.agent.spawn(self._bootstrap_loop, "bootstrap")
        self.agent.spawn(self._voters_loop, "raft-voters")

    def _self_only(self) -> dict[str, str] | None:
        if os.path.isdir(os.path.join(self.agent.data_dir, "raft")):
            return None
        if getattr(self.agent.config, "join", None) or getattr(
            self.agent.config, "retry_join", None
        ):
            return None  # joining an existing cluster: wait to be added
        return {self.agent.node_name: self.agent.rpc_addr}

    def _servers(self) -> list[dict]:
        return [
            m
            for m in self.agent.members()
            if m["statusText"] == "alive"
            and m["Tags"].get("server") == "true"
            and m["Tags"].get("region", self.agent.region) == self.agent.region
        ]

    def _bootstrap_loop(self) -> None:
        """Wait for `expect` servers with the same expectation, then start with them."""
        while not self.agent.stopping.wait(BOOTSTRAP_POLL_SECONDS):
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
            on_leadership=self.agent.on_leadership,
            on_applied=self.agent.on_applied,
        )
        replicator.start()
        with self._lock:
            self.replicator = replicator
        self.agent.committer = ReplicatedCommitter(replicator)

    def _voters_loop(self) -> None:
        """On the leader: every alive server is a voter; servers that left are removed."""
        while not self.agent.stopping.wait(RECONCILE_VOTERS_SECONDS):
            replicator = self.replicator
            if replicator is None or not replicator.is_leader():
                continue
            voters = set(replicator.voters())
            for m in self._servers():
                if m["Name"] not in voters:
                    try:
                        log.info("adding server %s to the Raft group", m["Name"])
                        replicator.add_server(m["Name"], m["Tags"]["rpc_addr"])
                    except COMMIT_ERRORS as e:  # retried on the next round
                        log.warning("could not add %s: %s", m["Name"], e)
            left = {
                m["Name"]
                for m in self.agent.members()
                if m["statusText"] == "left" and m["Tags"].get("server") == "true"
            }
            for name in voters & left:
                if name == self.agent.node_name:
                    continue
                try:
                    log.info("removing server %s, which left, from the Raft group", name)
                    replicator.remove_server(name)
                except COMMIT_ERRORS as e:  # retried on the next round
                    log.warning("could not remove %s: %s", name, e)

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
        if peer_id not in replicator.voters():
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
