"""Runs executions on this node: one thread per run, live output kept for /v1/busy.

The runner owns no state that must survive: every run it starts was first recorded as a launch
intent in the store, and every end is reported back through `on_finished`, which the agent turns
into an `execution_done` command.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dkron_pkg.executors import get_executor
from dkron_pkg.executors.base import ExecResult, OutputTail, failure_output
from dkron_pkg.timefmt import ZERO_TIME, format_rfc3339, ns_to_datetime

log = logging.getLogger("dkron.runner")
threading.stack_size(512 * 1024)  # many concurrent runs: keep per-thread stacks small


@dataclass
class ActiveRun:
    execution: dict
    output: OutputTail
    cancel: threading.Event = field(default_factory=threading.Event)
    stop_requested: bool = False
    process_started_ns: int | None = None
    report_to: str | None = None  # RPC address of the server that asked for this run


class Runner:
    """Starts executor runs in threads and reports their start and end."""

    def __init__(
        self,
        node_name: str,
        on_started: Callable[[dict, dict, str | None], None],
        on_finished: Callable[[dict, dict, bool, str | None], None],
    ):
        self.node_name = node_name
        self._on_started = on_started
        self._on_finished = on_finished
        self._active: dict[str, ActiveRun] = {}
        self._last_start_ns = 0
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    def start(
        self,
        job: dict,
        group: int,
        attempt: int,
        scheduled_ns: int | None = None,
        not_before_ns: int | None = None,
        report_to: str | None = None,
        for_node: str = "",
    ) -> dict:
        """Begin a run of `job` and return its execution record (finished_at = zero).

        With `not_before_ns` the run's thread is started at once but waits for that instant,
        so thread start-up is paid before the scheduled second rather than after it.
        """
        with self._lock:  # ids ("<start ns>-<node>") stay unique when runs share a second
            started_ns = max(time.time_ns(), not_before_ns or 0, self._last_start_ns + 1)
            self._last_start_ns = started_ns
        execution = {
            "id": f"{started_ns}-{self.node_name}",
            "job_name": job["name"],
            "started_at": format_rfc3339(ns_to_datetime(started_ns)),
            "finished_at": ZERO_TIME,
            "success": False,
            "output": "",
            "node_name": self.node_name,
            "group": group,
            "attempt": attempt,
            "started_ns": started_ns,
            "scheduled_ns": scheduled_ns,
        }
        if for_node:  # a stand-in: this runs the attempt another node could not
            execution["for_node"] = for_node
        run = ActiveRun(execution, OutputTail(), report_to=report_to)
        with self._lock:
            self._active[execution["id"]] = run
        self._on_started(job, dict(execution), report_to)
        thread = threading.Thread(
            target=self._run, args=(job, run), name=f"run-{job['name']}", daemon=True
        )
        thread.start()
        return dict(execution)

    def _run(self, job: dict, run: ActiveRun) -> None:
        executor = get_executor(job.get("executor", ""))
        start_at = run.execution["started_ns"]
        try:
            if executor is None:
                error = f'unknown executor "{job.get("executor", "")}": nothing to run'
                result = ExecResult(False, failure_output(error, b""), error)
            else:
                result = executor.run(
                    self._config_for(job, run.execution),
                    job_name=job["name"],
                    on_output=run.output.write,
                    cancel=run.cancel,
                    start_at_ns=start_at,
                )
        except Exception as e:  # an executor bug must not leave the run "running"
            log.exception("executor %s failed", job.get("executor"))
            error = f"executor error: {e}"
            result = ExecResult(False, failure_output(error, run.output.getvalue()), error)
        run.process_started_ns = result.process_started_ns
        finished_ns = time.time_ns()
        ex = dict(run.execution)
        ex["finished_at"] = format_rfc3339(ns_to_datetime(finished_ns))
        ex["success"] = bool(result.success)
        output = result.output or b""
        ex["output"] = output.decode("utf-8", "replace")
        if result.process_started_ns:
            ex["process_started_ns"] = result.process_started_ns
        try:
            self._on_finished(job, ex, run.stop_requested, run.report_to)
        finally:
            with self._lock:
                self._active.pop(ex["id"], None)
                self._idle.notify_all()

    def _config_for(self, job: dict, execution: dict) -> dict[str, str]:
        """The executor config, with the run's identity in a shell job's environment.

        DKRON_EXECUTION_ID, DKRON_NODE_NAME, DKRON_SCHEDULED_AT (Unix seconds of the
        scheduled time; empty for manual runs) and DKRON_ATTEMPT (1, then 2... for retries)
        let a job tell its runs apart.
        """
        config = dict(job.get("executor_config") or {})
        if job.get("executor") != "shell":
            return config
        try:
            env = json.loads(config.get("env_json") or "{}")
        except ValueError:
            env = {}
        if not isinstance(env, dict):
            env = {}
        scheduled_ns = execution.get("scheduled_ns")
        env.update(
            {
                "DKRON_EXECUTION_ID": execution["id"],
                "DKRON_NODE_NAME": self.node_name,
                "DKRON_SCHEDULED_AT": str(scheduled_ns // 1_000_000_000) if scheduled_ns else "",
                "DKRON_ATTEMPT": str(execution.get("attempt") or 1),
            }
        )
        config["env_json"] = json.dumps(env)
        return config

    def running_groups(self) -> list[int]:
        """Launch groups this node runs now (the node core remembers the ended ones)."""
        with self._lock:
            return [r.execution["group"] for r in self._active.values()]

    def busy(self) -> list[dict]:
        """Running executions with the output they produced so far."""
        with self._lock:
            runs = list(self._active.values())
        out = []
        for run in runs:
            ex = dict(run.execution)
            ex["output"] = run.output.getvalue().decode("utf-8", "replace")
            out.append(ex)
        out.sort(key=lambda e: e["started_ns"])
        return out

    def output_state(self, execution_id: str) -> tuple[int, bytes] | None:
        """(bytes written so far, the kept tail) of a running execution."""
        with self._lock:
            run = self._active.get(execution_id)
        if run is None:
            return None
        return run.output.total, run.output.getvalue()

    def live(self, execution_id: str) -> dict | None:
        with self._lock:
            run = self._active.get(execution_id)
        if run is None:
            return None
        ex = dict(run.execution)
        ex["output"] = run.output.getvalue().decode("utf-8", "replace")
        return ex

    def stop(self, execution_id: str) -> bool:
        """Ask a running execution to stop (kills its process group); False if not here."""
        with self._lock:
            run = self._active.get(execution_id)
        if run is None:
            return False
        run.stop_requested = True
        run.cancel.set()
        return True

    def running_count(self) -> int:
        with self._lock:
            return len(self._active)

    def wait_idle(self, timeout: float) -> bool:
        """Wait until no run is active; True if that happened within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._active:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def stop_all(self) -> None:
        with self._lock:
            runs = list(self._active.values())
        for run in runs:
            run.cancel.set()
