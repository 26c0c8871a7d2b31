"""The agent: the driver that owns threads, sockets, the clock and wires the cores together.

One process per node. It opens the store, settles what a previous run of this node left open,
arms the scheduler core, serves the API and runs the scheduling loop. Every change goes through
the committer (group commit into the store), so a write acknowledged with a 2xx is on disk.
"""

from __future__ import annotations

import gc
import heapq
import logging
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import UTC, datetime, timedelta
from typing import Any

from dkron_pkg import __version__, crontab_bridge, launch_settle, logs, metrics, osdeps
from dkron_pkg.cluster import COMMIT_ERRORS, Cluster, wants_raft
from dkron_pkg.committer import Committer
from dkron_pkg.config import split_host_port
from dkron_pkg.dispatch import TargetError, select_targets
from dkron_pkg.durations import parse_duration
from dkron_pkg.httpd import make_server
from dkron_pkg.membership import Membership, member_json
from dkron_pkg.notify import Notifier
from dkron_pkg.remote_runs import RemoteRuns, Reporter, decode_chunk
from dkron_pkg.rpc import RpcClient, RpcError, RpcServer, decode_key
from dkron_pkg.rpc_tls import tls_of
from dkron_pkg.runner import Runner
from dkron_pkg.scheduler import Launch, SchedulerCore
from dkron_pkg.store import Result, Store
from dkron_pkg.swim import MemberEvent
from dkron_pkg.timefmt import format_rfc3339

log = logging.getLogger("dkron.agent")

LOOKAHEAD = timedelta(seconds=1)  # launch intents are committed this much ahead of time
# Runs are handed to their thread this early and wait there for their second, so thread
# start-up (and, for a burst, a thousand of them) is paid before the scheduled time.
DISPATCH_LEAD_NS = 250_000_000
RECONCILE_SECONDS = 5.0  # how often the leader checks that "running" executions really run
INTENT_EXPIRY_SECONDS = 600.0  # a launch with no run and no report is closed after this
SETTLE_RETRY_SECONDS = 1.0  # a new leader asks unreachable live nodes again this often
# Launches recorded for a node this server's gossip does not know wait this long for it to
# show up (a server that restarted and leads at once has not heard of every node yet).
UNKNOWN_NODE_WAIT_SECONDS = 30.0
MEMBERS_WAIT_SECONDS = 10.0  # a new leader waits this long to see another server alive
STALE_LEADER = "refused: a newer leader has taken over"
NOT_RUNNING = 2**63 - 1  # the "up since" of a node whose agent does not listen: after anything


def utcnow() -> datetime:
    return datetime.now(UTC)


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
        self.key = decode_key(getattr(config, "encrypt", "") or "")
        self.membership: Membership | None = None
        self.rpc_server: RpcServer | None = None
        self.rpc_client = RpcClient(self.key, tls=tls_of(config))
        self.data_dir = os.path.abspath(config.data_dir)
        os.makedirs(self.data_dir, exist_ok=True)
        self._lock_handle = _lock_data_dir(self.data_dir)
        self.store = Store(
            os.path.join(self.data_dir, "state.db"), int(config.executions_per_job or 100)
        )
        self.core = SchedulerCore()
        self.runner = Runner(self.node_name, self._on_started, self._on_finished)
        self.cluster = Cluster(self) if wants_raft(config, self.data_dir) else None
        self.committer: Any = Committer(self.store.apply_batch)
        self.remote = RemoteRuns(self.rpc_client)
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        self.reporter = Reporter(
            self.rpc_client, self._server_addrs, self.runner.output_state, self._stopping
        )
        self._stopped = threading.Event()
        self._timers: set[threading.Timer] = set()
        self._ready: list[tuple[int, int, str]] = []  # committed launches awaiting their time
        self._intent_nodes: dict[int, list[str]] = {}  # launch group -> nodes chosen for it
        self.up_since_ns = time.time_ns()  # a run started before this died with the old process
        self._fence_term = 0  # the newest leader term that asked this node anything
        self._fence_lock = threading.Lock()
        self._scheduling = False  # True on the leader once its store is up to date
        self._follow_pool = ThreadPoolExecutor(4, thread_name_prefix="follow-up")
        self._timers_lock = threading.Lock()
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
        if self.cluster is None:
            self._recover()
            self._scheduling = self.is_server
        with self._cond:
            for job in self.store.list_jobs():
                self.core.upsert(job)
        # Long-lived job records need no cyclic GC scans: keep full collections short.
        gc.collect()
        gc.freeze()
        self.rpc_server = RpcServer(
            self.bind_host,
            self.rpc_port,
            self.key,
            self._handle_rpc,
            self._on_raft_frame,
            tls=self.rpc_client.tls,
        )
        self.rpc_server.start()
        self.rpc_port = self.rpc_server.port
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
        self.membership.start()
        self.bind_port = self.membership.port
        if self.cluster is not None:
            self.committer.close()  # the local committer gives way to Raft
            self.cluster.start()
        host, port = _split_host_port(self.config.http_addr, 8080)
        self._http = make_server(host, port, self)
        self.http_port = self._http.server_address[1]
        self.spawn(self._http.serve_forever, "http")
        if self.is_server:
            self.spawn(self._schedule_loop, "sched")
            self.spawn(self._reconcile_loop, "reconcile")
        crontab_bridge.run_reboot_jobs(self)
        crontab_bridge.start_crontab_sync(self)
        log.info(
            "agent %s started: API on http://%s:%d, gossip on %s:%d, RPC on %s:%d, data in %s, "
            "%d jobs",
            self.node_name,
            host,
            self.http_port,
            self.bind_host,
            self.bind_port,
            self.bind_host,
            self.rpc_port,
            self.data_dir,
            len(self.store.job_names()),
        )

    @property
    def stopping(self) -> threading.Event:
        """Set once the agent begins to stop; background loops watch it."""
        return self._stopping

    def spawn(self, target: Callable[[], None], name: str) -> None:
        """Run a background loop for the agent's lifetime."""
        t = threading.Thread(target=target, name=name, daemon=True)
        t.start()
        self._threads.append(t)

    def _recover(self) -> None:
        """Settle what a previous process left open: no run stays "running" forever."""
        results = self.store.apply_batch(
            [
                {
                    "op": "abandon_running",
                    "node": self.node_name,
                    "now_ns": time.time_ns(),
                    "reason": "agent stopped while this execution was running (node restarted)",
                }
            ]
        )
        follow_ups = results[0].follow_ups
        self._handle_follow_ups(follow_ups)
        self._settle_intents({f["group"] for f in follow_ups if f["action"] == "retry"})

    def _settle_intents(self, skip: set[int]) -> None:
        """Launches recorded without an outcome: run, retry or skip each by the job's policy.

        Called when this node starts (single server) or becomes the Raft leader: a launch the
        previous process or leader recorded is never lost and never run twice. Groups with an
        execution still running are left alone: their node reports to the new leader. The
        decision is `launch_settle.settle`; this carries its actions out.
        """
        intents = self.store.open_intents()
        began = time.monotonic()
        while intents:
            waiting: list[dict] = []
            up_since: dict[str, int] | None = None
            if self.cluster is not None:
                known, unasked, up_since, dead = self._groups_known_to_nodes()
                skip = skip | known
                # A node that cannot be asked, or that this server's gossip does not know yet
                # (it restarted moments ago), may run one of these launches: only those whose
                # recorded nodes all answered or are declared dead are settled now; the others
                # wait (else one could run twice, or a live node's run be called lost).
                settled = set(up_since) | dead
                if time.monotonic() - began > UNKNOWN_NODE_WAIT_SECONDS:
                    settled = set(up_since) | (
                        {n for i in intents for n in i.get("nodes") or []} - set(unasked)
                    )
                unrecorded = ["?"] if unasked else []  # may be on the node we cannot ask
                ready = [i for i in intents if set(i.get("nodes") or unrecorded) <= settled]
                ready_groups = {i["group"] for i in ready}
                waiting = [i for i in intents if i["group"] not in ready_groups]
                intents = ready
            self._settle_now(intents, skip, up_since)
            if not waiting:
                return
            if self._stopping.wait(SETTLE_RETRY_SECONDS) or not self.is_leader():
                return
            groups = {i["group"] for i in waiting}
            intents = [i for i in self.store.open_intents() if i["group"] in groups]

    def _settle_now(
        self, intents: list[dict], skip: set[int], up_since: dict[str, int] | None
    ) -> None:
        """Decide (launch_settle.settle) and carry out the fate of these open intents."""
        now_ns = time.time_ns()
        actions = launch_settle.settle(
            intents,
            self.store.get_job,
            lambda name, group: [e for e in self.store.executions(name) if e["group"] == group],
            skip,
            now_ns,
            int(self.core.late_grace.total_seconds() * 1e9),
            up_since,
        )
        for action in actions:
            if action.kind == launch_settle.RETRY:
                self._dispatch_retry(action.job, action.group, action.attempt, action.node)
            elif action.kind == launch_settle.LOST:
                log.warning("launch of %s settled as failed: %s", action.job_name, action.reason)
                self._record_failed_attempt(
                    action.job,
                    action.group,
                    action.attempt,
                    action.node,
                    action.scheduled_ns,
                    action.reason,
                )
            elif action.kind == launch_settle.REQUEUE:
                intent = next((i for i in intents if i["group"] == action.group), None)
                with self._cond:
                    if intent is not None and intent.get("nodes"):
                        self._intent_nodes[action.group] = list(intent["nodes"])
                    heapq.heappush(
                        self._ready, (action.scheduled_ns, action.group, action.job_name)
                    )
                    self._cond.notify_all()
            elif action.kind == launch_settle.DISPATCH_NOW:
                log.info("launch of %s interrupted by a restart: running it now", action.job_name)
                self._dispatch(action.job_name, action.group, action.attempt, action.scheduled_ns)
            else:
                if action.reason == launch_settle.SKIPPED:
                    log.info("missed launch of %s settled as skipped", action.job_name)
                self.committer.submit([{"op": "close_intent", "group": action.group}])

    def stop(self, graceful: bool = True) -> None:
        """Stop scheduling, let running jobs finish (up to shutdown_timeout), then exit."""
        if self._stopping.is_set():
            self._stopped.wait(timeout=self.shutdown_timeout + 10)
            return
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        with self._timers_lock:
            for timer in self._timers:
                timer.cancel()
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

    # ----- scheduling ----------------------------------------------------------------------

    def _schedule_loop(self) -> None:
        """Commit launch intents up to LOOKAHEAD early, then dispatch each at its second.

        The intent's fsync happens before the scheduled time, so a run starts as soon as its
        second begins; a crash in between leaves an open intent that `_recover` settles.
        """
        while not self._stopping.is_set():
            with self._cond:
                if not (self._scheduling and self.is_leader()):
                    self._cond.wait(timeout=0.5)
                    continue
                now = utcnow()
                now_ns = time.time_ns()
                nxt = self.core.next_wakeup()
                launches: list[Launch] = []
                if nxt is not None and nxt <= now + LOOKAHEAD:
                    launches = self.core.due(now + LOOKAHEAD)
                ready: list[tuple[int, int, str]] = []
                while self._ready and self._ready[0][0] - DISPATCH_LEAD_NS <= now_ns:
                    ready.append(heapq.heappop(self._ready))
                if not launches and not ready:
                    waits = [60.0]
                    if nxt is not None:
                        waits.append((nxt - LOOKAHEAD - now).total_seconds())
                    if self._ready:
                        waits.append((self._ready[0][0] - DISPATCH_LEAD_NS - now_ns) / 1e9)
                    self._cond.wait(timeout=max(min(waits), 0.0005))
                    continue
            if ready:
                members = self.members()
                for scheduled_ns, group, name in ready:
                    self._dispatch(name, group, 1, scheduled_ns, members)
            if launches:
                try:
                    self._commit_launches(launches)
                except Exception:
                    log.exception("recording %d launches failed", len(launches))

    def _chosen_nodes(self, name: str, members: list[dict]) -> list[str]:
        """The nodes a launch of `name` goes to, recorded in its intent (empty: none fit)."""
        job = self.store.get_job(name)
        if job is None:
            return []
        try:
            targets = select_targets(name, job.get("tags"), members, self.region, self.rng)
        except TargetError:
            return []
        return [t["Name"] for t in targets]

    def _commit_launches(self, launches: list[Launch]) -> None:
        now_ns = time.time_ns()
        members = self.members()
        commands = []
        for i, launch in enumerate(launches):
            scheduled_ns = int(launch.scheduled.timestamp()) * 1_000_000_000
            commands.append(
                {
                    "op": "launch",
                    "name": launch.job_name,
                    "scheduled_ns": scheduled_ns,
                    "group": now_ns + i,
                    "cause": launch.cause,
                    "now_ns": max(now_ns, scheduled_ns),
                    "nodes": self._chosen_nodes(launch.job_name, members),
                }
            )
        results = self.committer.submit(commands)
        with self._cond:
            for cmd, result in zip(commands, results, strict=True):
                if result.ok:
                    self._intent_nodes[cmd["group"]] = cmd["nodes"]
                    heapq.heappush(self._ready, (cmd["scheduled_ns"], cmd["group"], cmd["name"]))
                else:
                    log.info("launch of %s skipped: %s", cmd["name"], result.error)
            self._cond.notify_all()

    def _dispatch(
        self,
        name: str,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        members: list[dict] | None = None,
    ) -> bool:
        job = self.store.get_job(name)
        chosen = self._intent_nodes.pop(group, None)
        if job is None or (job.get("disabled") and scheduled_ns is not None):
            self.committer.submit_async([{"op": "close_intent", "group": group}])
            return False
        members = members or self.members()
        try:
            targets = self._committed_targets(chosen, members) or select_targets(
                name, job.get("tags"), members, self.region, self.rng
            )
        except TargetError as e:
            log.warning("%s", e)
            self.committer.submit_async([{"op": "close_intent", "group": group}])
            return False
        for target in targets:
            if target["Name"] == self.node_name:
                self._start_run(job, group, attempt, scheduled_ns)
            else:
                self._follow_up(self._remote_run, target, job, group, attempt, scheduled_ns)
        return True

    def _committed_targets(self, chosen: list[str] | None, members: list[dict]) -> list[dict]:
        """The live members among the nodes the intent recorded (empty: choose afresh).

        A recorded node that died before dispatch never received the run, so it is replaced
        by a fresh choice: the run was not sent anywhere yet, so it cannot run twice.
        """
        if not chosen:
            return []
        alive = {m["Name"]: m for m in members if m["statusText"] == "alive"}
        if any(name not in alive for name in chosen):
            return []
        return [alive[name] for name in chosen]

    def _remote_run(
        self,
        target: dict,
        job: dict,
        group: int,
        attempt: int,
        scheduled_ns: int | None,
        tried: frozenset[str] = frozenset(),
    ) -> None:
        """Ask another node to run the job.

        A node that cannot be reached (gossip may not have noticed it died yet) is skipped for
        another node the job's tags allow; only when none is left is a failed execution
        recorded, and the job's retries apply.
        """
        addr = target["Tags"].get("rpc_addr", "")
        args = {
            "job": job,
            "group": group,
            "attempt": attempt,
            "scheduled_ns": scheduled_ns,
            "report_to": self.rpc_addr,
            "term": self._leader_term(),
        }
        logs.event("launch", job=job["name"], group=group, attempt=attempt, node=target["Name"])
        try:
            execution = self.rpc_client.call(addr, "agent.run", args, timeout=10)
        except RpcError as e:
            if not self.is_leader() or STALE_LEADER in str(e):
                return  # a newer leader settles this launch (launch simulation finding)
            unsure = not str(e).startswith("cannot reach")
            if unsure:
                if self._node_knows_group(target["Name"], addr, group):
                    return  # the request did arrive and the run goes on: its node reports
                if self._node_failed(target["Name"]):
                    # It may have started the run before it died: running it elsewhere as
                    # the same attempt could launch it twice. The attempt failed; retries
                    # decide (launch simulation finding).
                    self._record_failed_attempt(
                        job,
                        group,
                        attempt,
                        target["Name"],
                        scheduled_ns,
                        f"node {target['Name']} failed before confirming the run: {e}",
                    )
                    return
            tried = tried | {target["Name"]}
            others = [m for m in self.members() if m["Name"] not in tried]
            try:
                alternative = select_targets(
                    job["name"], job.get("tags"), others, self.region, self.rng
                )[0]
            except TargetError:
                alternative = None
            if alternative is not None:
                log.warning(
                    "node %s unreachable (%s): running %s on %s instead",
                    target["Name"],
                    e,
                    job["name"],
                    alternative["Name"],
                )
                if alternative["Name"] == self.node_name:
                    self._start_run(job, group, attempt, scheduled_ns)
                else:
                    self._remote_run(alternative, job, group, attempt, scheduled_ns, tried)
                return
            self._record_failed_attempt(
                job,
                group,
                attempt,
                target["Name"],
                scheduled_ns,
                f"could not start the run on node {target['Name']}: {e}",
            )
            return
        self.remote.started(execution, addr)
        self.committer.submit_async([{"op": "execution_started", "execution": execution}])

    def _fence(self, term: Any) -> None:
        """Refuse run requests from a leader older than one that already asked this node.

        A new leader asks every node which launches it has before it settles them; a request
        from the deposed leader arriving after that could start a launch the new leader is
        about to settle, so it is refused.
        """
        if not isinstance(term, int) or isinstance(term, bool):
            return  # a leader without Raft, or an older node: no fencing
        with self._fence_lock:
            if term < self._fence_term:
                raise RpcError(f"{STALE_LEADER}: term {term} is older than {self._fence_term}")
            self._fence_term = term

    def _node_failed(self, name: str) -> bool:
        return not any(m["Name"] == name and m["statusText"] == "alive" for m in self.members())

    def _record_failed_attempt(
        self,
        job: dict,
        group: int,
        attempt: int,
        node: str,
        scheduled_ns: int | None,
        reason: str,
    ) -> None:
        """Record the attempt as a failed execution on `node`; the job's retries apply."""
        failed = launch_settle.failed_attempt(
            job["name"], node, group, attempt, time.time_ns(), scheduled_ns, reason
        )
        self._on_started(job, failed, None, commit_only=True)
        self._on_finished(job, failed, False, None)

    def _node_knows_group(self, name: str, addr: str, group: int) -> bool:
        """After an unanswered `agent.run` the run may have started there: running it on
        another node too would launch it twice. Ask the node, again while it cannot be
        reached, until it answers or the failure detector declares it failed."""
        while not self._stopping.is_set() and self.is_leader():
            try:
                groups = self.rpc_client.call(addr, "agent.groups", timeout=3)
                return group in {int(g) for g in groups}
            except (TypeError, ValueError):
                return False
            except RpcError:
                pass
            if self._node_failed(name):
                return False  # failed: whatever it ran died with it
            self._stopping.wait(SETTLE_RETRY_SECONDS)
        return True  # no longer leader: the new leader settles it

    @property
    def rpc_addr(self) -> str:
        return f"{self.advertise_host}:{self.rpc_port}"

    def _server_addrs(self, first: str) -> list[str]:
        """Where to report a run's end: the server that asked, then every other live server."""
        addrs = [first]
        for m in self.members():
            addr = m["Tags"].get("rpc_addr")
            server = m["Tags"].get("server") == "true" and m["statusText"] == "alive"
            if server and addr and addr not in addrs:
                addrs.append(addr)
        return addrs

    def _start_run(self, job: dict, group: int, attempt: int, scheduled_ns: int | None) -> None:
        logs.event("launch", job=job["name"], group=group, attempt=attempt)
        self.runner.start(job, group, attempt, scheduled_ns, not_before_ns=scheduled_ns)

    def _on_started(
        self, job: dict, execution: dict, report_to: str | None, commit_only: bool = False
    ) -> None:
        metrics.set_running_executions(self.runner.running_count())
        if report_to is not None:  # another server asked for this run: it records it
            self.reporter.started(job, execution, report_to)
            return
        self.committer.submit_async([{"op": "execution_started", "execution": execution}])
        if not commit_only:
            self.notifier.pre_execution(job, execution)

    def _on_finished(
        self, job: dict, execution: dict, stopped: bool, report_to: str | None = None
    ) -> Future | None:
        """Record a run's end (or send it to the server that asked); returns the commit."""
        if report_to is not None:
            self.reporter.finished(job, execution, stopped, report_to)
            return None
        execution = self._process(job, execution)
        fut = self.committer.submit_async(
            [{"op": "execution_done", "execution": execution, "no_retry": stopped}]
        )
        # Follow-ups commit again, so they must not run on the committer's own thread.
        fut.add_done_callback(lambda f: self._follow_up(self._after_done, job, execution, f))
        return fut

    def _follow_up(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run `fn` on the follow-up pool; once the agent is stopping, it is left undone (the
        next leader settles what it would have)."""
        try:
            self._follow_pool.submit(fn, *args)
        except RuntimeError:
            log.info("stopping: %s not run", getattr(fn, "__name__", "a follow-up"))

    def _process(self, job: dict, execution: dict) -> dict:
        """Run the job's processors on the finished execution (never losing the record)."""
        if not job.get("processors"):
            return execution
        try:
            from dkron_pkg.processors import apply_processors

            return apply_processors(job, execution, self.node_name)
        except Exception:
            log.exception("processors failed for %s", job["name"])
            return execution

    def _after_done(self, job: dict, execution: dict, fut: Future) -> None:
        try:
            results = fut.result()
        except Exception:  # noqa: BLE001 - the committer already logged the failure
            return
        duration = (time.time_ns() - execution["started_ns"]) / 1e9
        logs.event(
            "finish",
            job=job["name"],
            execution=execution["id"],
            attempt=execution["attempt"],
            success=execution["success"],
            duration=round(duration, 3),
        )
        metrics.execution_finished(job["name"], execution["success"], duration)
        metrics.set_running_executions(self.runner.running_count())
        scheduled_ns, started_ns = (
            execution.get("scheduled_ns"),
            execution.get("process_started_ns"),
        )
        if scheduled_ns and started_ns:
            metrics.launch_lateness((started_ns - scheduled_ns) / 1e9)
        for f in results[0].follow_ups:
            if f["action"] == "finished":
                self.notifier.post_execution(job, execution, f["previous_status"])
        self._handle_follow_ups(results[0].follow_ups)

    def _handle_follow_ups(self, follow_ups: list[dict]) -> None:
        for f in follow_ups:
            action = f["action"]
            if action == "retry":
                self._schedule_retry(f)
            elif action == "run_dependent":
                self.run_cause(f["job_name"], "dependent")
            elif action == "delete_ephemeral":
                self.delete_job(f["job_name"])

    def _schedule_retry(self, f: dict) -> None:
        term = self._leader_term()

        def fire() -> None:
            with self._timers_lock:
                self._timers.discard(timer)
            if self._stopping.is_set():
                return
            if self._leader_term() != term:
                return  # leadership changed since: the new leader's settlement retries it
            job = self.store.get_job(f["job_name"])
            if job is None:
                return
            logs.event("retry", job=f["job_name"], attempt=f["attempt"], node=f["node_name"])
            self._dispatch_retry(job, f["group"], f["attempt"], f["node_name"])

        timer = threading.Timer(f["delay"], fire)
        timer.daemon = True
        with self._timers_lock:
            self._timers.add(timer)
        timer.start()

    def _leader_term(self) -> int | None:
        """The Raft term this server leads (0 without Raft), None when it does not lead: a
        retry timer from an earlier leadership must not fire (launch simulation finding)."""
        if self.cluster is None:
            return 0 if self.is_server else None
        replicator = self.cluster.replicator
        if replicator is None or not self.is_leader():
            return None
        return replicator.term()

    def _dispatch_retry(self, job: dict, group: int, attempt: int, node_name: str) -> None:
        """Retry on the node that failed if it is still alive, else on another that qualifies.

        An attempt the store already records is not sent again: a new leader's settlement and
        a retry timer can both ask for the same one (launch simulation finding).
        """
        if any(
            e["group"] == group and e.get("attempt", 1) >= attempt
            for e in self.store.executions(job["name"])
        ):
            return
        members = self.members()
        same = [m for m in members if m["Name"] == node_name and m["statusText"] == "alive"]
        if not same:
            try:
                same = select_targets(job["name"], job.get("tags"), members, self.region, self.rng)
            except TargetError as e:
                log.warning("retry of %s abandoned: %s", job["name"], e)
                self.committer.submit_async([{"op": "close_intent", "group": group}])
                return
            same = same[:1]
        intent = next((i for i in self.store.open_intents() if i["group"] == group), None)
        scheduled_ns = intent["scheduled_ns"] if intent and intent["cause"] != "manual" else None
        for target in same:
            if target["Name"] == self.node_name:
                self._start_run(job, group, attempt, scheduled_ns)
            else:
                self._remote_run(target, job, group, attempt, scheduled_ns)

    def run_cause(self, name: str, cause: str) -> Result:
        job = self.store.get_job(name)
        if job is None:
            return Result(False, f'job "{name}" not found', 404)
        try:
            targets = select_targets(name, job.get("tags"), self.members(), self.region, self.rng)
        except TargetError as e:
            return Result(False, str(e), 404)
        now_ns = time.time_ns()
        cmd = {
            "op": "launch",
            "name": name,
            "scheduled_ns": now_ns,
            "group": now_ns,
            "cause": cause,
            "now_ns": now_ns,
            "nodes": [t["Name"] for t in targets],
        }
        result = self.committer.submit([cmd])[0]
        if result.ok:
            self._intent_nodes[now_ns] = cmd["nodes"]
            self._dispatch(name, now_ns, 1, None)
        else:
            log.info("%s run of %s refused: %s", cause, name, result.error)
        return result

    # ----- backend interface used by the API ------------------------------------------------

    def _after_job_change(self, job: dict | None, name: str) -> None:
        with self._cond:
            if job is None:
                self.core.remove(name)
            else:
                self.core.upsert(job)
            self._cond.notify_all()

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
        leader = self.cluster.leader_addr() if self.cluster is not None else None
        if self.cluster is None or self.is_leader() or not leader or leader == self.rpc_addr:
            return self.run_cause(name, "manual")
        # What this server has applied (a job just created here, say) the leader must have
        # applied too before it looks the job up: followers may commit before the leader hears.
        replicator = self.cluster.replicator
        args = {"name": name, "applied": replicator.applied_index() if replicator else 0}
        try:
            answer = self.rpc_client.call(leader, "leader.run_now", args, timeout=10)
        except RpcError as e:
            return Result(False, f"run not started: the leader could not be reached: {e}", 503)
        return Result(bool(answer["ok"]), str(answer.get("error", "")), int(answer["status"]))

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

    def busy(self) -> list[dict]:
        runs = {ex["id"]: ex for ex in self.runner.busy()}
        for ex in self.remote.busy():
            runs.setdefault(ex["id"], ex)
        return sorted(runs.values(), key=lambda e: e.get("started_ns", 0))

    def next_for(self, name: str) -> str | None:
        with self._cond:
            nxt = self.core.next_for(name)
        return format_rfc3339(nxt) if nxt else None

    def local_tags(self) -> dict[str, str]:
        """Tags this node gossips: the user's plus the reserved ones Dkron sets."""
        rpc_port = int(getattr(self.config, "advertise_rpc_port", 0) or self.rpc_port)
        tags = {"node": self.node_name, **(getattr(self.config, "tags", {}) or {})}
        tags.update(
            {
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

    def _handle_rpc(self, method: str, args: Any, peer: str) -> Any:
        """Node-to-node calls (see rpc.py); unknown methods are refused."""
        if method == "node.ping":
            return {"name": self.node_name}
        if method.startswith("raft.") and self.cluster is not None:
            return self.cluster.handle_rpc(method, args, peer)
        if method == "agent.run":
            self._fence(args.get("term"))
            execution = self.runner.start(
                args["job"],
                int(args["group"]),
                int(args["attempt"]),
                args.get("scheduled_ns"),
                not_before_ns=args.get("scheduled_ns"),
                report_to=args["report_to"],
            )
            logs.event("run", job=args["job"]["name"], execution=execution["id"])
            return execution
        if method == "agent.stop":
            return self.runner.stop(str(args["id"]))
        if method == "agent.running":
            return [ex["id"] for ex in self.runner.busy()] + self.reporter.undelivered()
        if method == "agent.launches":
            self._fence(args.get("term") if isinstance(args, dict) else None)
            return {"groups": self.runner.known_groups(), "up_since_ns": self.up_since_ns}
        if method == "agent.groups":
            return self.runner.known_groups()
        if method == "leader.run_now":
            if not self.is_leader():
                return {"ok": False, "error": "not the leader any more: retry", "status": 503}
            if self.cluster is not None and self.cluster.replicator is not None:
                try:
                    self.cluster.replicator.wait_applied(int(args.get("applied", 0)), 5.0)
                except TimeoutError:
                    return {"ok": False, "error": "leader is behind: retry", "status": 503}
            result = self.run_cause(str(args["name"]), "manual")
            return {"ok": result.ok, "error": result.error, "status": result.status}
        if method == "leader.execution_output":
            self.remote.output(str(args["id"]), decode_chunk(args))
            return None
        if method == "leader.execution_done":
            leader = self.cluster.leader_addr() if self.cluster is not None else None
            if not self.is_leader() and leader and leader != self.rpc_addr:
                return self.rpc_client.call(leader, method, args, timeout=10)
            execution = args["execution"]
            self.remote.finished(execution["id"])
            fut = self._on_finished(args["job"], execution, bool(args.get("stopped")), None)
            # Acknowledge only once committed: a leader dying before that must not lose it.
            try:
                result = fut.result(timeout=15)[0] if fut is not None else None
            except FutureTimeout:
                raise RpcError("report not committed within 15 s: send it again") from None
            if result is not None and not result.ok and result.status == 503:
                raise RpcError(f"report not committed: {result.error}")
            return True
        raise RpcError(f"unknown method {method!r}")

    def _on_raft_frame(self, data: bytes, peer: str) -> None:
        if self.cluster is not None:
            self.cluster.on_raft_frame(data, peer)

    def on_leadership(self, leader: bool) -> None:
        """Raft says this server gained or lost leadership: start or stop scheduling."""
        logs.event("leader", node=self.node_name, leader=leader)
        metrics.leader_changed()
        with self._cond:
            self._scheduling = False
            self.core = SchedulerCore()
            self._ready.clear()
            self._intent_nodes.clear()
            self._cond.notify_all()
        if leader:
            self._follow_up(self._become_leader)

    def _become_leader(self) -> None:
        """Apply everything the old leader committed, then arm the scheduler and settle.

        Without the barrier the scheduler would start from a stale cursor and the launches
        the old leader recorded but never dispatched would be missed.
        """
        try:
            if self.cluster is not None and self.cluster.replicator is not None:
                self.cluster.replicator.barrier(timeout=10.0)
        except COMMIT_ERRORS as e:
            log.warning("not scheduling yet: %s", e)
            return
        if not self.is_leader():
            return
        self._await_servers_in_gossip()
        if not self.is_leader():
            return
        with self._cond:
            self.core = SchedulerCore()
            for job in self.store.list_jobs():
                self.core.upsert(job)
            self._scheduling = True
            self._cond.notify_all()
        self._settle_intents(set())

    def _await_servers_in_gossip(self) -> None:
        """Before choosing targets, see another server alive in gossip: a server that has just
        restarted may win an election before gossip tells it who is up, and would then find no
        node for its jobs. Gossip state exchanged with one carries the rest of the members."""
        replicator = self.cluster.replicator if self.cluster is not None else None
        if replicator is None:
            return
        deadline = time.monotonic() + MEMBERS_WAIT_SECONDS
        while self.is_leader() and not self._stopping.is_set():
            alive = {m["Name"] for m in self.members() if m["statusText"] == "alive"}
            others = set(replicator.voters()) - {self.node_name}
            if not others or alive & others:
                return
            if time.monotonic() > deadline:
                log.warning("scheduling without seeing %s in gossip", ", ".join(sorted(others)))
                return
            self._stopping.wait(0.1)

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
        if event.kind == "failed" and self.is_leader() and event.member.name != self.node_name:
            self.remote.forget_node(event.member.name)
            self._follow_up(self._abandon_node, event.member.name)
        if self.membership is not None:
            counts: dict[str, int] = {}
            for m in self.membership.raw_members():
                counts[m.status] = counts.get(m.status, 0) + 1
            metrics.set_members_by_state(counts)

    def _groups_known_to_nodes(self) -> tuple[set[int], list[str], dict[str, int], set[str]]:
        """Launch groups that some node runs or ran lately (the old leader did dispatch them),
        the live nodes that could not be asked, when each node that answered started, and the
        nodes gossip declared failed or gone."""
        known = set(self.runner.known_groups())
        unasked: list[str] = []
        up_since = {self.node_name: self.up_since_ns}
        members = self.members()
        dead = {m["Name"] for m in members if m["statusText"] in ("failed", "left")}
        for m in members:
            addr = m["Tags"].get("rpc_addr")
            if m["statusText"] != "alive" or not addr or m["Name"] == self.node_name:
                continue
            try:
                answer = self.rpc_client.call(
                    addr, "agent.launches", {"term": self._leader_term()}, timeout=3
                )
                known.update(int(g) for g in answer["groups"])
                up_since[m["Name"]] = int(answer["up_since_ns"])
            except RpcError as e:
                if str(e).startswith("cannot reach"):
                    # Nothing listens there: its agent is gone (a restart is on its way), so
                    # a run it started died with it or is orphaned. Settle it as restarted.
                    up_since[m["Name"]] = NOT_RUNNING
                    continue
                if "unknown method" in str(e):  # an older node: it cannot say when it started
                    try:
                        groups = self.rpc_client.call(addr, "agent.groups", timeout=3)
                        known.update(int(g) for g in groups)
                        up_since[m["Name"]] = 0
                        continue
                    except (RpcError, TypeError, ValueError):
                        pass
                log.warning("could not ask %s which launches it ran", m["Name"])
                unasked.append(m["Name"])
            except (KeyError, TypeError, ValueError):
                log.warning("%s answered which launches it ran with nonsense", m["Name"])
        return known, unasked, up_since, dead

    def _reconcile_loop(self) -> None:
        """Every few seconds, check that executions recorded as running really run somewhere.

        A node that restarted, or a lost report, would otherwise leave a record "running"
        forever and block a `forbid` job (Dkron #1939). Unreachable nodes are left to the
        failure detector, which fails their runs when the node is declared dead.
        """
        while not self._stopping.wait(RECONCILE_SECONDS):
            if not self.is_leader():
                continue
            try:
                self._reconcile_once()
            except Exception:  # keep reconciling on the next round
                log.exception("reconciling running executions failed")

    def _reconcile_once(self) -> None:
        stale_before = time.time_ns() - int(RECONCILE_SECONDS * 2e9)
        forgotten_before = time.time_ns() - int(INTENT_EXPIRY_SECONDS * 1e9)
        running_groups = {int(ex["group"]) for ex in self.store.running_executions()}
        for intent in self.store.open_intents():
            if intent["created_ns"] < forgotten_before and intent["group"] not in running_groups:
                # Nothing runs it and no report came: do not let it block `forbid` forever.
                log.warning(
                    "closing launch %s of %s: no outcome after %.0fs",
                    intent["group"],
                    intent["job_name"],
                    INTENT_EXPIRY_SECONDS,
                )
                self.committer.submit([{"op": "close_intent", "group": intent["group"]}])
        by_node: dict[str, list[dict]] = {}
        for ex in self.store.running_executions():
            if int(ex.get("started_ns", 0)) < stale_before:
                by_node.setdefault(ex["node_name"], []).append(ex)
        addrs = {m["Name"]: m["Tags"].get("rpc_addr", "") for m in self.members()}
        for node, executions in by_node.items():
            if node == self.node_name:
                running = {ex["id"] for ex in self.runner.busy()}
            elif node in addrs:
                try:
                    running = set(self.rpc_client.call(addrs[node], "agent.running", timeout=5))
                except RpcError:
                    continue
            else:
                continue
            for ex in executions:
                if ex["id"] in running:
                    continue
                log.warning("execution %s is not running on %s any more", ex["id"], node)
                result = self.committer.submit(
                    [
                        {
                            "op": "abandon_running",
                            "id": ex["id"],
                            "now_ns": time.time_ns(),
                            "reason": f"execution lost: node {node} no longer runs it "
                            "(restarted or its report was lost)",
                        }
                    ]
                )[0]
                self._handle_follow_ups(result.follow_ups)

    def _abandon_node(self, node: str) -> None:
        """A dead node's running executions fail now (retries apply), never stay "running".

        A node killed and restarted at once can be declared failed after its new process is
        back and running new launches: if it answers, only the runs that began before its new
        process started are failed (they died with the old one); else a retry could run a
        launch that is still going a second time.
        """
        addr = next((m["Tags"].get("rpc_addr") for m in self.members() if m["Name"] == node), "")
        up_since = None
        if addr:
            try:
                answer = self.rpc_client.call(addr, "agent.launches", {}, timeout=2)
                up_since = int(answer["up_since_ns"])
            except (RpcError, KeyError, TypeError, ValueError):
                up_since = None
        if up_since is not None:
            died = [
                ex["id"]
                for ex in self.store.running_executions()
                if ex.get("node_name") == node and int(ex.get("started_ns", 0)) < up_since
            ]
            if died:
                self._abandon_executions(died, f"node {node} restarted while this was running")
            return
        result = self.committer.submit(
            [
                {
                    "op": "abandon_running",
                    "node": node,
                    "now_ns": time.time_ns(),
                    "reason": f"node {node} failed while this execution was running",
                }
            ]
        )[0]
        self._handle_follow_ups(result.follow_ups)

    def _abandon_executions(self, ids: list[str], reason: str) -> None:
        """Fail these running executions now; the job's retries apply."""
        now_ns = time.time_ns()
        results = self.committer.submit(
            [{"op": "abandon_running", "id": i, "now_ns": now_ns, "reason": reason} for i in ids]
        )
        for result in results:
            self._handle_follow_ups(result.follow_ups)

    def crontab_import(
        self, text: str, dialect: str, user: str, apply: bool, source: str = "ui-upload"
    ) -> dict:
        return crontab_bridge.crontab_import(self, text, dialect, user, apply, source)

    def debug_vars(self) -> dict:
        return {
            "node": self.node_name,
            "scheduler_started": 0 if self._stopping.is_set() else 1,
            "cron_entries": len(self.core),
            "store": self.store.counts(),
            "running": self.runner.running_count(),
        }


def _advertise_host(host: str) -> str:
    """The address other nodes use to reach a wildcard bind: this host's own name's address."""
    if host not in ("", "0.0.0.0", "::"):
        return host
    try:
        return socket.gethostbyname(socket.gethostname())
    except OSError:
        return "127.0.0.1"


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
