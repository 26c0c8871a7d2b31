"""The agent: the driver that owns threads, sockets, the clock and wires the cores together.

One process per node. It opens the store, settles what a previous run of this node left open,
arms the scheduler core, serves the API and runs the scheduling loop. Every change goes through
the committer (group commit into the store), so a write acknowledged with a 2xx is on disk.
"""

from __future__ import annotations

import gc
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from dkron_pkg import __version__, crontab_bridge, logs, metrics, osdeps, ports, rpc
from dkron_pkg.backend import ReadUnavailable
from dkron_pkg.cluster import COMMIT_ERRORS, Cluster, wants_raft
from dkron_pkg.cluster_key import resolve_key
from dkron_pkg.committer import Committer
from dkron_pkg.config import is_loopback, split_host_port
from dkron_pkg.durations import parse_duration
from dkron_pkg.httpd import make_server
from dkron_pkg.launch import LeaderCore, NodeCore
from dkron_pkg.launch.node import report_order
from dkron_pkg.launch_driver import LaunchDriver, LaunchHost
from dkron_pkg.membership import Membership, member_json
from dkron_pkg.notify import Notifier
from dkron_pkg.problems import Problems
from dkron_pkg.remote_runs import RemoteRuns, Reporter
from dkron_pkg.rpc import RpcClient, RpcError, RpcServer
from dkron_pkg.rpc_methods import NodeRpc
from dkron_pkg.rpc_tls import tls_of
from dkron_pkg.runner import Runner
from dkron_pkg.store import Result, Store
from dkron_pkg.swim import MemberEvent
from dkron_pkg.timefmt import format_rfc3339

log = logging.getLogger("dkron.agent")

BARRIER_RETRY_SECONDS = 1.0  # a new leader retries its barrier this often
GOSSIP_CHECK_SECONDS = 2.0
FENCE_KEEP_SECONDS = 120.0  # a restarted node keeps refusing deposed leaders this long


def _split_host_port(addr: str, default_port: int) -> tuple[str, int]:
    """Config's parser, with an empty host (":8080") meaning every interface."""
    host, port = split_host_port(addr, default_port)
    return host or "0.0.0.0", port


class Agent:
    """A single node: store, scheduler, runner and API (clustering plugs in here)."""

    def __init__(self, config: Any):
        self.config = config
        self.node_name: str = config.node_name or socket.gethostname()
        self.paused = False
        self.rng = random.Random()
        self._apply_config(config)
        self.is_server = bool(getattr(config, "server", False))
        self.bind_host, self.bind_port = _split_host_port(config.bind_addr, 8946)
        adv = getattr(config, "advertise_addr", "") or ""
        self.advertise_host = _advertise_host(
            _split_host_port(adv, 8946)[0] if adv else self.bind_host
        )
        self.rpc_port = int(config.rpc_port)
        self.membership: Membership | None = None
        self.rpc_server: RpcServer | None = None
        self.data_dir = os.path.abspath(config.data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_handle = _lock_data_dir(self.data_dir)
        try:  # before anything listens: RPC and gossip never run without the key
            self.cluster_key = resolve_key(config, self.data_dir)
            if self.cluster_key.key is None and not is_loopback(self.bind_host):
                raise ValueError(
                    f"dev-insecure: RPC and gossip without authentication listen on loopback "
                    f'only; bind-addr "{config.bind_addr}" is not a loopback address'
                )
        except ValueError:
            _unlock_data_dir(self._lock_handle)
            raise
        self.key = self.cluster_key.key
        self.rpc_client = RpcClient(self.key, tls=tls_of(config))
        self.store = Store(
            os.path.join(self.data_dir, "state.db"), int(config.executions_per_job or 100)
        )
        self.runner = Runner(self.node_name, self._on_started, self._on_finished)
        self.problems = Problems()  # misconfigurations noticed, for /health and the UI
        self._led_before = False
        self.cluster = Cluster(self) if wants_raft(config, self.data_dir) else None
        self.committer: Any = Committer(self.store.apply_batch)
        self.remote = RemoteRuns(self.rpc_client)
        self._stopping = threading.Event()
        self.reporter = Reporter(
            self.rpc_client,
            self._server_addrs,
            self.runner.output_state,
            self._stopping,
            delivered=lambda execution: self.node_core.reported(int(execution["group"])),
        )
        self._stopped = threading.Event()
        # A run recorded on this node from before this instant died with the old process.
        self._fence_path = os.path.join(self.data_dir, "fence_term")
        self.node_core = NodeCore(time.time_ns(), _read_fence(self._fence_path))
        self.launch: LaunchDriver | None = None  # the leader's launch loop (servers only)
        self._follow_pool = ThreadPoolExecutor(4, thread_name_prefix="follow-up")
        self._http = None
        self._threads: list[threading.Thread] = []
        self.notifier = Notifier(config)
        self._sinks: list[metrics.StatsdSink] = []
        self._start_sinks(config)
        self.started_at = time.time()
        self.leave_requested = threading.Event()

    def _start_sinks(self, config: Any) -> None:
        for sink in self._sinks:
            metrics.REGISTRY.remove_sink(sink)
            sink.close()
        self._sinks = []
        if getattr(config, "statsd_addr", ""):
            self._sinks.append(metrics.StatsdSink(config.statsd_addr))
        if getattr(config, "dog_statsd_addr", ""):
            tags = [*getattr(config, "dog_statsd_tags", []), f"host:{self.node_name}"]
            self._sinks.append(metrics.StatsdSink(config.dog_statsd_addr, True, tags))
        for sink in self._sinks:
            sink.start()
            metrics.REGISTRY.add_sink(sink)

    def _apply_config(self, config: Any) -> None:
        self.config = config
        self.api_token = getattr(config, "api_token", "") or ""
        self.max_body_bytes = int(getattr(config, "max_body_bytes", 1 << 20) or (1 << 20))
        self.ui_enabled = bool(getattr(config, "ui", True))
        self.region = getattr(config, "region", "global") or "global"
        self.shutdown_timeout = parse_duration(getattr(config, "shutdown_timeout", "60s") or "60s")

    # ----- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        # Long-lived job records need no cyclic GC scans: keep full collections short.
        gc.collect()
        gc.freeze()
        http_host, http_port = _split_host_port(self.config.http_addr, 8080)
        rpc_use, gossip_use, http_use = self._port_uses(http_host, http_port)
        ports.check_free([rpc_use, gossip_use, http_use])  # before any part runs
        with ports.explained(rpc_use):
            self.rpc_server = RpcServer(
                self.bind_host,
                self.rpc_port,
                self.key,
                NodeRpc(self).handle,
                self._on_raft_frame if self.cluster is not None else None,  # else no Raft parts
                tls=self.rpc_client.tls,
                insecure=self.key is None,
            )
        self.rpc_server.start()
        self.rpc_port = self.rpc_server.port
        if self.is_server:
            self.launch = self._launch_driver()
        self.membership = Membership(
            self.node_name,
            self.bind_host,
            self.bind_port,
            self.advertise_host,
            self.local_tags(),
            getattr(self.config, "profile", "lan") or "lan",
            self.key,
            [*getattr(self.config, "join", []), *getattr(self.config, "retry_join", [])],
            on_event=self._on_member_event,
        )
        with ports.explained(gossip_use):
            self.membership.start()
        self.bind_port = self.membership.port
        self.spawn(self._gossip_checks, "gossip-checks")
        if self.cluster is not None:
            self.committer.close()  # the local committer gives way to Raft
            self.cluster.start()
        with ports.explained(http_use):
            self._http = make_server(http_host, http_port, self)
        self.http_port = self._http.server_address[1]
        self.spawn(self._http.serve_forever, "http")
        if self.launch is not None:
            self.launch.start()
            if self.cluster is None:  # one server: it leads from the start
                core = self.launch.core
                self.launch.post(lambda now: (core.lead(0), core.barrier_passed(now)))
        crontab_bridge.run_reboot_jobs(self)
        crontab_bridge.start_crontab_sync(self)
        log.info(
            "agent %s started: API on http://%s:%d, gossip on %s:%d, RPC on %s:%d, data in %s, "
            "%d jobs, RPC and gossip security: %s",
            self.node_name,
            http_host,
            self.http_port,
            self.bind_host,
            self.bind_port,
            self.bind_host,
            self.rpc_port,
            self.data_dir,
            len(self.store.job_names()),
            self.security_mode,
        )

    def _port_uses(self, http_host: str, http_port: int) -> list[ports.PortUse]:
        """The RPC, gossip and HTTP ports, each with the flag that moves it."""
        return [
            ports.PortUse("RPC", self.bind_host, self.rpc_port, "--rpc-port PORT"),
            ports.PortUse(
                "gossip",
                self.bind_host,
                self.bind_port,
                "--bind-addr HOST:PORT (other nodes then --join HOST:PORT)",
                udp=True,
            ),
            ports.PortUse("HTTP API", http_host, http_port, "--http-addr HOST:PORT"),
        ]

    def _gossip_checks(self) -> None:
        """Say which addresses send gossip this node refuses for the cluster key, and when
        this node's own join has no answer."""
        while not self._stopping.wait(GOSSIP_CHECK_SECONDS):
            if self.membership is not None:
                self.problems.update("gossip-key", self.membership.key_problems())
                self.problems.update("gossip-join", self.membership.join_problems())

    def problem_list(self) -> list[dict[str, str]]:
        """Misconfigurations this node sees now (see dkron_pkg.problems)."""
        return self.problems.list()

    @property
    def security_mode(self) -> str:
        """ "key" (RPC and gossip authenticated), or "insecure-dev" (--dev-insecure)."""
        return self.cluster_key.mode

    @property
    def stopping(self) -> threading.Event:
        """Set once the agent begins to stop; background loops watch it."""
        return self._stopping

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """Run a background loop for the agent's lifetime."""
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _launch_driver(self) -> LaunchDriver:
        """The leader's launch loop: the launch core carried out with threads and RPC."""
        core = LeaderCore(
            self.node_name,
            self.store,
            self.rng,
            report_to=self.rpc_addr,
            region=self.region,
            cluster=self.cluster is not None,
        )
        host = LaunchHost(
            node_name=self.node_name,
            committer=lambda: self.committer,
            members=self.members,
            running_ids=self.running_ids,
            running_groups=self.runner.running_groups,
            start_local=self._start_run,
            remote_started=self.remote.started,
            recorded=self._recorded,
        )
        return LaunchDriver(core, self.node_core, host, self.rpc_client)

    def stop(self, graceful: bool = True) -> None:
        """Stop scheduling, let running jobs finish (up to shutdown_timeout), then exit."""
        if self._stopping.is_set():
            self._stopped.wait(timeout=self.shutdown_timeout + 10)
            return
        self._stopping.set()
        if self.launch is not None:
            self.launch.post(lambda now: self.launch.core.quiesce())
        if graceful and self.runner.running_count():
            log.info(
                "waiting up to %.0fs for %d running jobs",
                self.shutdown_timeout,
                self.runner.running_count(),
            )
            if not self.runner.wait_idle(self.shutdown_timeout):
                log.warning("shutdown timeout: stopping the jobs still running")
                self.runner.stop_all()
                self.runner.wait_idle(10)
        if self.launch is not None:
            self.launch.stop()
        self._follow_pool.shutdown(wait=True, cancel_futures=False)
        if self.membership is not None:
            self.membership.stop(leave=True)
        if self.rpc_server is not None:
            self.rpc_server.stop()
        self.rpc_client.close()
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
        if self.cluster is not None:
            self.cluster.close()
        self.committer.close()
        self.store.close()
        self.notifier.close(timeout=5)
        for sink in self._sinks:
            metrics.REGISTRY.remove_sink(sink)
            sink.close()
        _unlock_data_dir(self._lock_handle)
        self._stopped.set()
        log.info("agent %s stopped", self.node_name)

    def request_leave(self) -> None:
        self.leave_requested.set()
        threading.Thread(target=self.stop, name="leave", daemon=True).start()

    def reload(self, config: Any) -> None:
        """SIGHUP: apply the new configuration (token, tags, limits, notifications)."""
        notifier = Notifier(config)  # raises on a bad template: keep the old one then
        old, self.notifier = self.notifier, notifier
        old.close(timeout=5)
        self._apply_config(config)
        self._start_sinks(config)
        if self.membership is not None:
            self.membership.set_tags(self.local_tags())
        logs.setup(config.log_level, bool(getattr(config, "log_json", False)))
        log.info("configuration reloaded from %s", getattr(config, "config_file", "") or "flags")

    # ----- runs on this node ----------------------------------------------------------------

    @property
    def rpc_addr(self) -> str:
        """Where other nodes reach this one's RPC port: --advertise-rpc-port when given."""
        port = int(getattr(self.config, "advertise_rpc_port", 0) or self.rpc_port)
        return f"{self.advertise_host}:{port}"

    def _server_addrs(self, first: str) -> list[str]:
        """Where to report a run's end: the server that asked, then every other live server."""
        servers = [
            m["Tags"].get("rpc_addr", "")
            for m in self.members()
            if m["Tags"].get("server") == "true" and m["statusText"] == "alive"
        ]
        return report_order(first, servers)

    def _start_run(
        self, job: dict, group: int, attempt: int, scheduled_ns: int | None, for_node: str = ""
    ) -> None:
        self.runner.start(
            job, group, attempt, scheduled_ns, not_before_ns=scheduled_ns, for_node=for_node
        )

    def keep_fence(self, term: int) -> None:
        """Write the newest leader term that asked this node (fsynced before it answers)."""
        tmp = self._fence_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{term} {time.time_ns()}")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._fence_path)

    def running_ids(self) -> list[str]:
        """Executions this node runs, or ran and has not yet reported."""
        return [ex["id"] for ex in self.runner.busy()] + self.reporter.undelivered()

    def _on_started(self, job: dict, execution: dict, report_to: str | None) -> None:
        metrics.set_running_executions(self.runner.running_count())
        if report_to is not None:  # another server asked for this run: it records it
            self.reporter.started(job, execution, report_to)
            return
        if self.launch is not None:
            core = self.launch.core
            self.launch.post(lambda now: core.record_started(execution, now))
        self.notifier.pre_execution(job, execution)

    def _on_finished(
        self, job: dict, execution: dict, stopped: bool, report_to: str | None = None
    ) -> None:
        """Hand a run's end to the leader: this server's launch core if it still leads, else
        the reporter, which retries until some server acknowledges it."""
        self.node_core.ended(int(execution["group"]))
        if report_to is None and self.launch is not None and self.is_leader():
            processed = self.process(job, execution)
            core = self.launch.core
            self.launch.post(lambda now: core.run_ended(job, processed, stopped, None, now))
            return
        self.reporter.finished(job, execution, stopped, report_to or self.rpc_addr)

    def _follow_up(self, what: str, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` on the follow-up pool; once the agent is stopping, it is left undone (the
        next leader settles what it would have). `what` says what it does, for the log."""
        try:
            self._follow_pool.submit(fn, *args)
        except RuntimeError:
            log.info("shutting down: %s is left to the next leader", what)

    def process(self, job: dict, execution: dict) -> dict:
        """Run the job's processors on the finished execution (never losing the record)."""
        if not job.get("processors"):
            return execution
        try:
            from dkron_pkg.processors import apply_processors

            return apply_processors(job, execution, self.node_name)
        except Exception:
            log.exception("processors failed for %s", job["name"])
            return execution

    def _recorded(self, job: dict, execution: dict, follow_ups: list[dict]) -> None:
        """A run's end is committed: log it, count it and send its notifications."""
        duration = (time.time_ns() - int(execution.get("started_ns") or 0)) / 1e9
        logs.event(
            "finish",
            job=job["name"],
            execution=execution["id"],
            attempt=execution.get("attempt", 1),
            success=execution["success"],
            duration=round(duration, 3),
        )
        if execution.get("node_name") == self.node_name:  # this leader's own run: recorded
            self.node_core.reported(int(execution["group"]))
        metrics.execution_finished(job["name"], execution["success"], duration)
        metrics.set_running_executions(self.runner.running_count())
        scheduled_ns, started_ns = (
            execution.get("scheduled_ns"),
            execution.get("process_started_ns"),
        )
        if scheduled_ns and started_ns:
            metrics.launch_lateness((started_ns - scheduled_ns) / 1e9)
        for f in follow_ups:
            if f["action"] == "finished":
                self.notifier.post_execution(job, execution, f["previous_status"])

    def run_cause(self, name: str, cause: str) -> Result:
        """Launch `name` now ("manual" or "dependent") through the leader's launch core."""
        if self.launch is not None and self.is_leader():
            return self.launch.run_now(name, cause)
        leader = self.cluster.leader_addr() if self.cluster is not None else None
        if not leader or leader == self.rpc_addr:
            return Result(False, "run not started: no leader to launch it", 503)
        # What this server has applied (a job just created here, say) the leader must have
        # applied too before it looks the job up: followers may commit before the leader hears.
        replicator = self.cluster.replicator if self.cluster is not None else None
        args = {
            "name": name,
            "cause": cause,
            "applied": replicator.applied_index() if replicator else 0,
        }
        try:
            answer = self.rpc_client.call(leader, "leader.run_now", args, timeout=10)
        except RpcError as e:
            return Result(False, f"run not started: the leader could not be reached: {e}", 503)
        return Result(bool(answer["ok"]), str(answer.get("error", "")), int(answer["status"]))

    # ----- backend interface used by the API ------------------------------------------------

    def _after_job_change(self, job: dict | None, name: str) -> None:
        if self.launch is not None:
            core = self.launch.core
            self.launch.post(lambda now: core.jobs_changed(job, name))

    def submit_job(self, job: dict) -> Result:
        cmd = {"op": "set_job", "job": job, "now_ns": time.time_ns()}
        result = self.committer.submit([cmd])[0]
        if result.ok:
            self._after_job_change(result.value, job["name"])
        return result

    def submit_jobs(self, jobs: list[dict], sent: dict[str, dict]) -> list[Result]:
        now_ns = time.time_ns()
        cmds = [
            {"op": "set_job", "job": {**sent[j["name"]], **j}, "now_ns": now_ns, "restore": True}
            for j in jobs
        ]
        results = self.committer.submit(cmds)
        for job, result in zip(jobs, results, strict=True):
            if result.ok:
                self._after_job_change(result.value, job["name"])
        return results

    def delete_job(self, name: str) -> Result:
        result = self.committer.submit([{"op": "delete_job", "name": name}])[0]
        if result.ok:
            self._after_job_change(None, name)
        return result

    def toggle_job(self, name: str) -> Result:
        result = self.committer.submit(
            [{"op": "toggle_job", "name": name, "now_ns": time.time_ns()}]
        )[0]
        if result.ok:
            self._after_job_change(result.value, name)
        return result

    def run_now(self, name: str) -> Result:
        """A manual run is launched by the leader, like a scheduled one, wherever it is asked.

        The leader then owns the intent, the dispatch and the settling after a failover.
        """
        return self.run_cause(name, "manual")

    def delete_executions(self, name: str) -> Result:
        return self.committer.submit([{"op": "delete_executions", "name": name}])[0]

    def delete_execution(self, name: str, execution_id: str) -> Result:
        return self.committer.submit(
            [{"op": "delete_execution", "name": name, "id": execution_id}]
        )[0]

    def stop_execution(self, name: str, execution_id: str) -> bool:
        return self.runner.stop(execution_id) or self.remote.stop(execution_id)

    def executions(self, name: str) -> list[dict]:
        """Stored executions, with live output for the ones still running here."""
        out = []
        for ex in self.store.executions(name):
            live = (
                (self.runner.live(ex["id"]) or self.remote.live(ex["id"]))
                if ex.get("finished_at", "").startswith("0001")
                else None
            )
            out.append(live or ex)
        return out

    def execution(self, name: str, execution_id: str) -> dict | None:
        live = self.runner.live(execution_id) or self.remote.live(execution_id)
        if live is not None and live["job_name"] == name:
            return live
        return self.store.execution(name, execution_id)

    def read_barrier(self) -> None:
        """A linearizable read point (see backend.ApiBackend.read_barrier). A lone server
        without Raft has the only copy, so its store is always current."""
        if self.cluster is None:
            return
        replicator = self.cluster.replicator
        if replicator is None:
            raise ReadUnavailable(
                "no leader yet: this server has not joined a Raft group, so it cannot tell "
                "whether its copy is current; add ?stale to read it anyway"
            )
        # Long enough to ride out an election (a new leader takes 0.5-1 s at multiplier 1).
        wait = 2 * replicator.config.election_timeout_max_ms / 1000
        try:
            replicator.barrier(timeout=wait)
        except COMMIT_ERRORS as e:
            raise ReadUnavailable(
                f"no linearizable read: {e}; add ?stale to read this server's copy, which "
                "may miss recent writes"
            ) from None

    def busy(self) -> list[dict]:
        """Running executions as the store records them (replicated: the same on every
        server), with the live output of those this server runs or watches."""
        runs = {ex["id"]: ex for ex in self.store.running_executions()}
        for ex in (*self.runner.busy(), *self.remote.busy()):
            runs[ex["id"]] = ex
        return sorted(runs.values(), key=lambda e: e.get("started_ns", 0))

    def next_for(self, name: str) -> str | None:
        nxt = self.launch.core.next_for(name) if self.launch is not None else None
        return format_rfc3339(nxt) if nxt else None

    def local_tags(self) -> dict[str, str]:
        """Tags this node gossips: the user's plus the reserved ones Dkron sets."""
        rpc_port = int(getattr(self.config, "advertise_rpc_port", 0) or self.rpc_port)
        tags = dict(getattr(self.config, "tags", {}) or {})  # reserved keys refused by config
        tags.update(
            {
                "node": self.node_name,
                "role": "dkron",
                "dc": getattr(self.config, "datacenter", "dc1"),
                "region": self.region,
                "version": __version__,
                "server": "true" if getattr(self.config, "server", False) else "false",
                "rpc_addr": f"{self.advertise_host}:{rpc_port}",
                "port": str(rpc_port),
            }
        )
        expect = int(getattr(self.config, "bootstrap_expect", 0) or 0)
        if expect:
            tags["expect"] = str(expect)
        return tags

    def members(self) -> list[dict]:
        if self.membership is None:
            return [member_json(self.node_name, self.advertise_host, 0, self.local_tags(), "alive")]
        return self.membership.members()

    def leader_member(self) -> dict | None:
        leader = self.leader_name()
        if leader is None:
            return None
        found = next((m for m in self.members() if m["Name"] == leader), None)
        if found is None:
            # Raft knows the leader before gossip does (this server restarted moments ago
            # and no member has reached it yet): answer from what Raft knows of it.
            replicator = self.cluster.replicator if self.cluster is not None else None
            rpc_addr = replicator.addresses().get(leader, "") if replicator else ""
            host = rpc_addr.rpartition(":")[0] or rpc_addr
            found = member_json(leader, host, 0, {"server": "true", "rpc_addr": rpc_addr}, "alive")
        member = dict(found)
        member.pop("statusText", None)
        member.pop("id", None)
        return member

    def leader_name(self) -> str | None:
        if self.cluster is not None:
            return self.cluster.leader_name()
        return self.node_name if self.is_server else None

    def is_leader(self) -> bool:
        if self.cluster is not None:
            return self.cluster.is_leader()
        return self.is_server

    def raft_peers(self) -> list[dict]:
        if self.cluster is not None:
            return self.cluster.peers()
        tags = self.local_tags()
        return [
            {
                "node": self.node_name,
                "id": self.node_name,
                "address": tags["rpc_addr"],
                "state": "leader",
                "voter": True,
            }
        ]

    def remove_peer(self, peer_id: str) -> Result:
        if self.cluster is not None:
            return self.cluster.remove_peer(peer_id)
        if peer_id == self.node_name:
            return Result(False, "cannot remove the only server of a single-node cluster", 400)
        return Result(False, f'peer "{peer_id}" not found', 404)

    def gossip_stats(self) -> dict[str, str]:
        if self.membership is None:
            return {"members": "1", "failed": "0", "left": "0"}
        return self.membership.stats()

    def metrics_text(self) -> str | None:
        if not getattr(self.config, "enable_prometheus", False):
            return None
        return metrics.REGISTRY.render_prometheus()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        metrics.api_request(route, method, status, seconds)

    def _on_raft_frame(self, data: bytes, peer: str) -> None:
        if self.cluster is not None:
            self.cluster.on_raft_frame(data, peer)

    def on_leadership(self, leader: bool) -> None:
        """Raft says this server gained or lost leadership: the launch core follows."""
        logs.event("leader", node=self.node_name, leader=leader)
        metrics.leader_changed()
        if self.launch is None:
            return
        core = self.launch.core
        if not leader:
            self.launch.post(lambda now: core.step_down())
            return
        replicator = self.cluster.replicator if self.cluster is not None else None
        term = replicator.term() if replicator is not None else 0
        self.launch.post(lambda now: core.lead(term))
        self._follow_up("taking up the leadership", self._become_leader, term)

    def _become_leader(self, term: int) -> None:
        """Apply everything the old leader committed, then let the core arm and settle.

        Without the barrier the scheduler would start from a stale cursor and the launches
        the old leader recorded but never dispatched would be missed.
        """
        replicator = self.cluster.replicator if self.cluster is not None else None
        while replicator is not None and not self._stopping.is_set():
            if not self.is_leader() or replicator.term() != term:
                return
            try:
                replicator.barrier(timeout=10.0)
                break
            except COMMIT_ERRORS as e:
                log.warning("not scheduling yet: %s", e)
                self._stopping.wait(BARRIER_RETRY_SECONDS)
        voters = set(replicator.voters()) if replicator is not None else set()
        learners = replicator.learners() if replicator is not None else []
        # A lone server's first leadership begins with this process: its own runs of the
        # previous process died with it (any later leadership finds its runs still going).
        alone = voters == {self.node_name} and not learners and not self._led_before
        self._led_before = True
        launch = self.launch
        if launch is None:
            return
        core = launch.core

        def passed(now: int) -> None:
            if core.term == term:
                core.cluster = not alone
                core.barrier_passed(now, voters)

        launch.post(passed)

    def on_applied(self, commands: list[dict], results: list[Result]) -> None:
        """Job changes that arrive through Raft re-arm the scheduler on the leader."""
        for command, result in zip(commands, results, strict=False):
            op = command.get("op")
            if op in ("set_job", "toggle_job") and result.ok:
                self._after_job_change(result.value, result.value["name"])
            elif op == "delete_job" and result.ok:
                self._after_job_change(None, command["name"])

    def _on_member_event(self, event: MemberEvent) -> None:
        logs.event("member", kind=event.kind, member=event.member.name, status=event.member.status)
        if self.launch is not None:
            self.launch.members_changed()
            if event.kind == "failed" and event.member.name != self.node_name:
                self.remote.forget_node(event.member.name)
                core, name = self.launch.core, event.member.name
                self.launch.post(lambda now: core.node_failed(name, now))
        if self.membership is not None:
            counts: dict[str, int] = {}
            for m in self.membership.raw_members():
                counts[m.status] = counts.get(m.status, 0) + 1
            metrics.set_members_by_state(counts)

    def crontab_import(
        self, text: str, dialect: str, user: str, apply: bool, source: str = "ui-upload"
    ) -> dict:
        return crontab_bridge.crontab_import(self, text, dialect, user, apply, source)

    def debug_vars(self) -> dict:
        replicator = self.cluster.replicator if self.cluster is not None else None
        return {
            "node": self.node_name,
            "scheduler_started": 0 if self._stopping.is_set() else 1,
            "cron_entries": len(self.launch.core.sched) if self.launch is not None else 0,
            "store": self.store.counts(),
            "running": self.runner.running_count(),
            "security": self.security_mode,
            "rpc_refused": dict(rpc.DROPPED),
            "linearizable_reads": replicator.read_stats() if replicator is not None else {},
        }


def _advertise_host(host: str) -> str:
    """The address other nodes use to reach a wildcard bind: this host's own name's address."""
    if host not in ("", "0.0.0.0", "::"):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


def _read_fence(path: str) -> int:
    """The fence term a previous process of this node kept, if it was written in the last
    FENCE_KEEP_SECONDS (0 otherwise): it guards the restart against a deposed leader that was
    paused meanwhile, and must not refuse a cluster rebuilt from scratch (terms from 1) later."""
    try:
        with open(path) as f:
            term, written_ns = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        return 0
    if time.time_ns() - written_ns > FENCE_KEEP_SECONDS * 1e9:
        return 0
    return max(0, term)


def _lock_data_dir(path: str) -> Any:
    """Refuse to start a second agent on the same data folder."""
    try:
        from dkron_pkg.osdeps import lock_file
    except ImportError:
        return None
    return lock_file(os.path.join(path, "LOCK"))


def _unlock_data_dir(handle: Any) -> None:
    if handle is not None:
        handle.release()


def run_agent(config: Any, reload: Callable[[], Any] | None = None) -> int:
    """Run an agent until SIGTERM/SIGINT (graceful) or /v1/leave; SIGHUP reloads config."""
    logs.setup(str(getattr(config, "log_level", "info")), bool(getattr(config, "log_json", False)))
    osdeps.tune_memory()
    try:
        agent = Agent(config)
        agent.start()
    except (OSError, ValueError, RuntimeError) as e:
        log.error("cannot start the agent: %s", e)
        print(f"dkron: error: cannot start the agent: {e}", flush=True)
        return 1
    done = threading.Event()

    def on_term(signum: int, frame: Any) -> None:
        if done.is_set():
            return
        done.set()

    def on_hup(signum: int, frame: Any) -> None:
        if reload is None:
            return
        try:
            agent.reload(reload())
        except Exception as e:  # noqa: BLE001 - a bad config file must not kill the agent
            log.error("config reload failed, keeping the old configuration: %s", e)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, on_hup)
    while not done.is_set() and not agent.leave_requested.is_set():
        done.wait(0.5)
    agent.stop(graceful=True)
    return 0
