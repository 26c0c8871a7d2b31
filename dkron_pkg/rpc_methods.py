"""The node-to-node RPC methods (see rpc.py), as a table from name to handler.

`agent.*` methods are a node's side of the launch protocol (run, stop, what runs, which
launches it knows); `leader.*` methods reach the server that leads (run now, a run's output and
end). Raft's own messages (`raft.*`) go to the cluster. Unknown methods are refused.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol

from dkron_pkg import logs
from dkron_pkg.launch import NodeCore
from dkron_pkg.launch_driver import LaunchDriver
from dkron_pkg.remote_runs import RemoteRuns, decode_chunk
from dkron_pkg.rpc import RpcClient, RpcError
from dkron_pkg.runner import Runner

Handler = Callable[[Any, str], Any]


class RpcHost(Protocol):
    """What the RPC methods use of the node that serves them (the agent)."""

    node_name: str
    node_core: NodeCore
    runner: Runner
    remote: RemoteRuns
    rpc_client: RpcClient
    launch: LaunchDriver | None
    cluster: Any

    @property
    def rpc_addr(self) -> str: ...
    def keep_fence(self, term: int) -> None: ...
    def is_leader(self) -> bool: ...
    def running_ids(self) -> list[str]: ...
    def process(self, job: dict, execution: dict) -> dict: ...


class NodeRpc:
    """Serves the RPC methods of one node."""

    def __init__(self, host: RpcHost):
        self.host = host
        self._fence_lock = threading.Lock()
        self.methods: dict[str, Handler] = {
            "node.ping": self.ping,
            "agent.run": self.run,
            "agent.stop": self.stop,
            "agent.running": self.running,
            "agent.launches": self.launches,
            "leader.run_now": self.run_now,
            "leader.execution_output": self.execution_output,
            "leader.execution_done": self.execution_done,
        }

    def handle(self, method: str, args: Any, peer: str) -> Any:
        cluster = self.host.cluster
        if method.startswith("raft.") and cluster is not None:
            return cluster.handle_rpc(method, args, peer)
        handler = self.methods.get(method)
        if handler is None:
            raise RpcError(f"unknown method {method!r}")
        return handler(args, peer)

    def ping(self, args: Any, peer: str) -> dict:
        return {"name": self.host.node_name}

    def _admit(self, args: Any) -> None:
        """Fence: refuse a leader older than one that asked already; a newer term is kept on
        disk before the request is answered."""
        node = self.host.node_core
        with self._fence_lock:
            before = node.fence_term
            refused = node.admit(args.get("term") if isinstance(args, dict) else None)
            if refused:
                raise RpcError(refused)
            if node.fence_term != before:
                self.host.keep_fence(node.fence_term)

    def run(self, args: Any, peer: str) -> dict:
        """A leader asks this node to run a launch (fenced by the leader's term)."""
        self._admit(args)
        execution = self.host.runner.start(
            args["job"],
            int(args["group"]),
            int(args["attempt"]),
            args.get("scheduled_ns"),
            not_before_ns=args.get("scheduled_ns"),
            report_to=args["report_to"],
            for_node=str(args.get("for_node") or ""),
        )
        logs.event("run", job=args["job"]["name"], execution=execution["id"])
        return execution

    def stop(self, args: Any, peer: str) -> bool:
        return self.host.runner.stop(str(args["id"]))

    def running(self, args: Any, peer: str) -> list[str]:
        return self.host.running_ids()

    def launches(self, args: Any, peer: str) -> dict:
        """Which launches this node runs or ran, and since when it runs (a new leader asks)."""
        self._admit(args)
        runner = self.host.runner
        return self.host.node_core.launches(runner.running_groups(), runner.busy())

    def run_now(self, args: Any, peer: str) -> dict:
        """Another server asks the leader to launch a job now (manual or dependent)."""
        host = self.host
        if not host.is_leader() or host.launch is None:
            return {"ok": False, "error": "not the leader any more: retry", "status": 503}
        replicator = host.cluster.replicator if host.cluster is not None else None
        if replicator is not None:
            try:  # what the asking server applied (the job, say) is applied here first
                replicator.wait_applied(int(args.get("applied", 0)), 5.0)
            except TimeoutError:
                return {"ok": False, "error": "leader is behind: retry", "status": 503}
        cause = "dependent" if args.get("cause") == "dependent" else "manual"
        result = host.launch.run_now(str(args["name"]), cause)
        return {"ok": result.ok, "error": result.error, "status": result.status}

    def execution_output(self, args: Any, peer: str) -> None:
        self.host.remote.output(str(args["id"]), decode_chunk(args))

    def execution_done(self, args: Any, peer: str) -> bool:
        """A node reports a run's end; acknowledged only once committed (a leader dying before
        that must not lose it). A server that does not lead passes it to the leader."""
        host = self.host
        leader = host.cluster.leader_addr() if host.cluster is not None else None
        if not host.is_leader() and leader and leader != host.rpc_addr:
            return host.rpc_client.call(leader, "leader.execution_done", args, timeout=10)
        if host.launch is None:
            raise RpcError("not a server: report the end to a server")
        execution = args["execution"]
        host.remote.finished(execution["id"])
        processed = host.process(args["job"], execution)
        result = host.launch.run_ended(args["job"], processed, bool(args.get("stopped")))
        if not result.ok:
            raise RpcError(result.error or "report not committed: send it again")
        return True
