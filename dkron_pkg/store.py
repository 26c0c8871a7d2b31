"""The job store: a deterministic state machine over jobs, executions and launch intents.

Every change is a command (a JSON-able dict with an "op") applied by `apply`/`apply_batch`.
Commands carry every input they need, including the time (`now_ns`), so applying the same
commands in the same order gives the same state on every server: this is what the Raft log
replicates. The state lives in SQLite (execution output stays on disk, not in RAM); jobs are also
cached in memory because the API lists and filters them on every request. A batch of commands is
one transaction with one fsync (group commit); `last_applied` is stored in the same transaction so
a restart knows where the replicated log resumes.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sqlite3
import threading
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from dkron_pkg.jobs import SERVER_FIELDS, USER_FIELDS
from dkron_pkg.launch.settle import run_slot
from dkron_pkg.store_checkpoint import WalCheckpointer
from dkron_pkg.store_commands import (
    CommandError,
    check_command,
    describe_op,
    printable,
    stored_job_problem,
)
from dkron_pkg.store_file import check_store_file
from dkron_pkg.timefmt import ZERO_TIME, format_rfc3339, ns_to_datetime, parse_rfc3339

SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs(name TEXT PRIMARY KEY, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS executions(
    job_name TEXT NOT NULL, id TEXT NOT NULL, grp INTEGER NOT NULL, started_ns INTEGER NOT NULL,
    running INTEGER NOT NULL, body TEXT NOT NULL, output BLOB NOT NULL,
    PRIMARY KEY(job_name, id));
CREATE INDEX IF NOT EXISTS executions_by_start ON executions(job_name, started_ns);
CREATE INDEX IF NOT EXISTS executions_running ON executions(running) WHERE running = 1;
CREATE TABLE IF NOT EXISTS intents(
    grp INTEGER PRIMARY KEY, job_name TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
INTERNAL_FAILURE = "store: internal error applying"

log = logging.getLogger("dkron.store")


class StoreError(Exception):
    """A command that cannot be applied; `status` is the HTTP status Dkron answers with."""

    def __init__(self, message: str, status: int = 400, field: str = ""):
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class Result:
    """What applying one command produced: `ok`, or an error, plus follow-up actions."""

    ok: bool = True
    error: str = ""
    status: int = 200
    value: Any = None
    follow_ups: list[dict] = field(default_factory=list)


def _dt(text: str | None) -> datetime | None:
    if not text or text == ZERO_TIME:
        return None
    return parse_rfc3339(text)


def _later(a: str | None, b: str | None) -> str | None:
    da, db = _dt(a), _dt(b)
    if da is None:
        return b if db else None
    if db is None:
        return a
    return a if da >= db else b


class Store:
    """SQLite-backed state machine. Thread-safe: one lock serialises writers and readers."""

    def __init__(self, path: str = ":memory:", executions_per_job: int = 100):
        self.path = path
        self.executions_per_job = executions_per_job
        if path != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            check_store_file(path)  # an empty or damaged file must not pass for "no jobs"
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._checkpointer: WalCheckpointer | None = None
        if path != ":memory:":
            WalCheckpointer.hand_over(self._db)
            self._checkpointer = WalCheckpointer(path).start()
        self._lock = threading.RLock()
        self._jobs: dict[str, dict] = {}
        self._names_in_order: list[str] | None = None  # sorted; None after a job came or went
        self._pending: dict[str, dict | None] | None = None
        self._running: dict[str, int] = {}
        self._intents: dict[int, dict] = {}
        self._load()

    # ----- loading and helpers -------------------------------------------------------------

    def _load(self) -> None:
        self._names_in_order = None
        self._jobs = {
            name: json.loads(body) for name, body in self._db.execute("SELECT * FROM jobs")
        }
        for name, job in self._jobs.items():
            problem = stored_job_problem(job)
            if problem is not None:  # stored before the store checked what it applies
                log.warning(
                    "store: job %s is not valid (%s): delete it or submit it again",
                    printable(name, 200),
                    printable(problem),
                )
        self._running = {}
        for (job_name,) in self._db.execute("SELECT job_name FROM executions WHERE running = 1"):
            self._running[job_name] = self._running.get(job_name, 0) + 1
        self._intents = {
            grp: json.loads(body) for grp, _, body in self._db.execute("SELECT * FROM intents")
        }

    def close(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
        with self._lock:
            self._db.close()

    @property
    def last_applied(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT value FROM meta WHERE key='last_applied'").fetchone()
            return int(row[0]) if row else 0

    def _job(self, name: str) -> dict | None:
        if self._pending is not None and name in self._pending:
            return self._pending[name]
        return self._jobs.get(name)

    def _put_job(self, job: dict) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO jobs(name, body) VALUES(?, ?)",
            (job["name"], json.dumps(job, separators=(",", ":"))),
        )
        assert self._pending is not None
        self._pending[job["name"]] = job

    def _del_job(self, name: str) -> None:
        self._db.execute("DELETE FROM jobs WHERE name = ?", (name,))
        assert self._pending is not None
        self._pending[name] = None

    # ----- reads -----------------------------------------------------------------------------

    def get_job(self, name: str) -> dict | None:
        with self._lock:
            job = self._jobs.get(name)
            return self._decorate(job) if job else None

    def list_jobs(self) -> list[dict]:
        with self._lock:
            return [self._decorate(j) for j in self._jobs.values()]

    def jobs_view(self) -> tuple[list[dict], set[str]]:
        """All jobs in name order, without copying (callers must not mutate them), and the
        running names.

        The API filters and sorts 10,000 jobs per list request; copying each one first, or
        sorting them by name each time (a job's runs change it, not the order of names),
        would dominate that request's cost.
        """
        with self._lock:
            if self._names_in_order is None:
                self._names_in_order = sorted(self._jobs)
            jobs = self._jobs
            view = [jobs[name] for name in self._names_in_order]
            return view, {n for n, c in self._running.items() if c > 0}

    def job_names(self) -> list[str]:
        with self._lock:
            return list(self._jobs)

    def _decorate(self, job: dict) -> dict:
        out = dict(job)
        out["running"] = self._running.get(job["name"], 0) > 0
        return out

    def is_busy(self, name: str) -> bool:
        """True while the job has a running execution or a launch without an outcome."""
        with self._lock:
            return self._busy(name)

    def _busy(self, name: str) -> bool:
        if self._running.get(name, 0) > 0:
            return True
        return any(i["job_name"] == name for i in self._intents.values())

    def open_intents(self) -> list[dict]:
        with self._lock:
            return [dict(i) for i in self._intents.values()]

    def open_intent(self, group: int) -> dict | None:
        """The open launch `group`, None once it is closed."""
        with self._lock:
            intent = self._intents.get(group)
            return dict(intent) if intent is not None else None

    def executions(self, job_name: str) -> list[dict]:
        """All stored executions of a job, oldest first, with their output."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body, output FROM executions WHERE job_name = ? ORDER BY started_ns, id",
                (job_name,),
            ).fetchall()
        return [self._execution_from_row(body, output) for body, output in rows]

    def execution(self, job_name: str, execution_id: str) -> dict | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body, output FROM executions WHERE job_name = ? AND id = ?",
                (job_name, execution_id),
            ).fetchone()
        return self._execution_from_row(*row) if row else None

    def running_executions(self) -> list[dict]:
        with self._lock:
            rows = self._db.execute(
                "SELECT body, output FROM executions WHERE running = 1 ORDER BY started_ns"
            ).fetchall()
        return [self._execution_from_row(body, output) for body, output in rows]

    @staticmethod
    def _execution_from_row(body: str, output: bytes) -> dict:
        ex = json.loads(body)
        ex["output"] = output.decode("utf-8", "replace")
        return ex

    def counts(self) -> dict[str, int]:
        with self._lock:
            (n,) = self._db.execute("SELECT COUNT(*) FROM executions").fetchone()
            return {"jobs": len(self._jobs), "executions": n, "intents": len(self._intents)}

    # ----- writes ----------------------------------------------------------------------------

    def apply(self, command: dict, index: int | None = None) -> Result:
        return self.apply_batch([command], index)[0]

    def apply_batch(self, commands: Iterable[dict], last_index: int | None = None) -> list[Result]:
        """Apply commands in one transaction (one fsync); each one succeeds or fails alone."""
        results: list[Result] = []
        with self._lock:
            self._pending = {}
            running_before = dict(self._running)
            intents_before = dict(self._intents)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                for command in commands:
                    results.append(self._apply_one(command))
                if last_index is not None:
                    self._db.execute(
                        "INSERT OR REPLACE INTO meta(key, value) VALUES('last_applied', ?)",
                        (str(last_index),),
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._running = running_before
                self._intents = intents_before
                self._pending = None
                raise
            for name, job in self._pending.items():
                if job is None:
                    if self._jobs.pop(name, None) is not None:
                        self._names_in_order = None
                else:
                    if name not in self._jobs:
                        self._names_in_order = None
                    self._jobs[name] = job
            self._pending = None
        return results

    def _apply_one(self, command: Any) -> Result:
        """Check, then apply one command inside a savepoint: it applies whole or not at all.

        A command that fails its checks (store_commands) is refused the same way on every
        server, with a log line naming the op and what is wrong. A command that makes a
        handler raise anyway (a bug) is undone and answered with an error, so it cannot fail
        the other commands of its batch; only disk errors (sqlite3.Error) escape.
        """
        op = describe_op(command)
        try:
            command = check_command(command)
        except CommandError as e:
            log.warning("store: refused a %s command: %s", op, printable(str(e)))
            return Result(False, f"store refused the {op} command: {e}", 400, {"field": e.field})
        handler = getattr(self, f"_op_{command['op']}")
        pending_before = dict(self._pending or {})
        running_before = dict(self._running)
        intents_before = dict(self._intents)
        self._db.execute("SAVEPOINT cmd")
        try:
            result = handler(command)
            self._db.execute("RELEASE cmd")
            return result
        except sqlite3.Error:
            raise
        except Exception as e:  # StoreError, or a bug: undone either way
            self._db.execute("ROLLBACK TO cmd")
            self._db.execute("RELEASE cmd")
            self._pending = pending_before
            self._running = running_before
            self._intents = intents_before
            if isinstance(e, StoreError):
                return Result(False, str(e), e.status, value={"field": e.field})
            log.exception("store: the %s command failed and was undone", op)
            return Result(False, f"{INTERNAL_FAILURE} {op}: {type(e).__name__}: {e}", 500)

    # ----- jobs ------------------------------------------------------------------------------

    def _op_set_job(self, c: dict) -> Result:
        new = {k: c["job"].get(k, v) for k, v in USER_FIELDS.items()}
        name = new["name"]
        now_ns = int(c["now_ns"])
        old = self._job(name)
        restore = bool(c.get("restore"))
        if new["parent_job"]:
            parent = self._job(new["parent_job"])
            if parent is None:
                raise StoreError(f'parent job "{new["parent_job"]}" not found', 404, "parent_job")
            if self._would_cycle(name, new["parent_job"]):
                raise StoreError(
                    f'parent_job "{new["parent_job"]}" would make a cycle of dependent jobs',
                    400,
                    "parent_job",
                )
        server = {k: (old or {}).get(k, v) for k, v in SERVER_FIELDS.items()}
        server["dependent_jobs"] = (old or {}).get("dependent_jobs") or None
        if restore:
            sent = c["job"]
            for key in ("success_count", "error_count"):
                if isinstance(sent.get(key), int):
                    server[key] = max(server[key], sent[key])
            for key in ("last_success", "last_error"):
                if isinstance(sent.get(key), str):
                    server[key] = _later(server[key], sent[key])
        job = {**new, **server}
        job["id"] = name
        job["status"] = (old or {}).get("status", "")
        schedule_changed = old is None or (
            old.get("schedule") != new["schedule"] or old.get("timezone") != new["timezone"]
        )
        if schedule_changed:
            job["anchor_ns"] = now_ns
            job["last_scheduled_ns"] = None
        else:
            job["anchor_ns"] = old.get("anchor_ns", now_ns)
            job["last_scheduled_ns"] = old.get("last_scheduled_ns")
        job["updated_ns"] = now_ns
        job["next"] = compute_next(job)
        # parent/child bookkeeping
        old_parent = (old or {}).get("parent_job", "")
        if old_parent != new["parent_job"]:
            if old_parent:
                self._unlink_child(old_parent, name)
            if new["parent_job"]:
                parent = dict(self._job(new["parent_job"]))
                deps = list(parent.get("dependent_jobs") or [])
                if name not in deps:
                    deps.append(name)
                parent["dependent_jobs"] = deps
                self._put_job(parent)
        self._put_job(job)
        return Result(True, value=job, status=201)

    def _would_cycle(self, name: str, parent_name: str) -> bool:
        seen = set()
        current: str | None = parent_name
        while current:
            if current == name:
                return True
            if current in seen:
                return True
            seen.add(current)
            parent = self._job(current)
            current = parent.get("parent_job") if parent else None
        return False

    def _unlink_child(self, parent_name: str, child: str) -> None:
        parent = self._job(parent_name)
        if parent is None:
            return
        parent = dict(parent)
        deps = [d for d in (parent.get("dependent_jobs") or []) if d != child]
        parent["dependent_jobs"] = deps or None
        self._put_job(parent)

    def _op_delete_job(self, c: dict) -> Result:
        name = c["name"]
        job = self._job(name)
        if job is None:
            raise StoreError(f'job "{name}" not found', 404)
        if job.get("dependent_jobs"):
            raise StoreError(
                "store: could not delete job with dependent jobs, delete children first ("
                + ", ".join(job["dependent_jobs"])
                + ")",
                404,
            )
        if job.get("parent_job"):
            self._unlink_child(job["parent_job"], name)
        self._db.execute("DELETE FROM executions WHERE job_name = ?", (name,))
        self._db.execute("DELETE FROM intents WHERE job_name = ?", (name,))
        self._running.pop(name, None)
        self._intents = {g: i for g, i in self._intents.items() if i["job_name"] != name}
        self._del_job(name)
        return Result(True, value=job)

    def _op_toggle_job(self, c: dict) -> Result:
        job = self._require_job(c["name"])
        job = dict(job)
        job["disabled"] = not job.get("disabled", False)
        job["updated_ns"] = int(c["now_ns"])
        self._put_job(job)
        return Result(True, value=job)

    def _require_job(self, name: str) -> dict:
        job = self._job(name)
        if job is None:
            raise StoreError(f'job "{name}" not found', 404)
        return job

    # ----- launches and executions ---------------------------------------------------------

    def _op_launch(self, c: dict) -> Result:
        """Record the intent to run (job, scheduled time) before anything runs.

        Refuses (ok=False, status 409) a scheduled time at or before the job's last one, so the
        same (job, scheduled time) is never launched twice, and a `forbid` job that is busy.
        """
        name = c["name"]
        job = self._job(name)
        if job is None:
            raise StoreError(f'job "{name}" not found', 404)
        cause = c.get("cause", "schedule")
        scheduled_ns = int(c["scheduled_ns"])
        now = ns_to_datetime(int(c["now_ns"]))
        if cause in ("schedule", "catchup"):
            last = job.get("last_scheduled_ns")
            if last is not None and scheduled_ns <= last:
                raise StoreError(f"{name}: scheduled time already launched", 409)
            job = dict(job)
            job["last_scheduled_ns"] = scheduled_ns
            job["next"] = compute_next(job)
            self._put_job(job)
        if cause in ("schedule", "dependent", "catchup"):
            if job.get("disabled"):
                raise StoreError(f"{name}: job is disabled", 409)
            starts = _dt(job.get("starts_at"))
            expires = _dt(job.get("expires_at"))
            if starts and now < starts:
                raise StoreError(f"{name}: job starts at {job['starts_at']}", 409)
            if expires and now > expires:
                raise StoreError(f"{name}: job expired at {job['expires_at']}", 409)
        if job.get("concurrency") == "forbid" and cause != "retry" and self._busy(name):
            raise StoreError(
                f'job "{name}" is already running and its concurrency is "forbid"', 409
            )
        group = int(c["group"])
        if group in self._intents and cause != "retry":
            raise StoreError(f"{name}: launch {group} already recorded", 409)
        intent = {
            "group": group,
            "job_name": name,
            "scheduled_ns": scheduled_ns,
            "cause": cause,
            "attempt": int(c.get("attempt", 1)),
            "nodes": list(c.get("nodes") or []),
            "created_ns": int(c["now_ns"]),
        }
        self._intents[group] = intent
        self._db.execute(
            "INSERT OR REPLACE INTO intents(grp, job_name, body) VALUES(?, ?, ?)",
            (group, name, json.dumps(intent)),
        )
        return Result(True, value=intent, status=202)

    def _op_close_intent(self, c: dict) -> Result:
        self._close_intent(int(c["group"]))
        return Result(True)

    def _op_intent_nodes(self, c: dict) -> Result:
        """Add nodes to an open launch before it is sent to them (a stand-in, a fresh choice),
        and note a retry before it is sent, so that a leader settling the launch later knows
        every node that may run it and whether a retry may have run."""
        group = int(c["group"])
        intent = self._intents.get(group)
        if intent is None:
            return Result(False, f"launch {group} is closed", 409)
        intent = dict(intent)
        intent["nodes"] = list(dict.fromkeys([*(intent.get("nodes") or []), *c["nodes"]]))
        if c.get("standin_for"):  # the new nodes stand in for that node's run
            standins = {n: str(c["standin_for"]) for n in c["nodes"]}
            intent["standins"] = {**(intent.get("standins") or {}), **standins}
        if c.get("drop"):  # chosen nodes that died before it was sent: they will not run it
            intent["dropped"] = sorted({*(intent.get("dropped") or []), *c["drop"]})
        if c.get("retry"):  # {"slot", "attempt", "node", "at"}: a retry about to be sent
            retry = c["retry"]
            intent["retries"] = {**(intent.get("retries") or {}), str(retry["slot"]): retry}
        self._intents[group] = intent
        self._db.execute(
            "INSERT OR REPLACE INTO intents(grp, job_name, body) VALUES(?, ?, ?)",
            (group, intent["job_name"], json.dumps(intent)),
        )
        job = self._job(intent["job_name"])
        if c.get("drop") and job is not None and self._launch_over(job, group):
            self._close_intent(group)
        return Result(True, value=intent)

    def _op_execution_started(self, c: dict) -> Result:
        """Record a run as running, unless its end is already recorded.

        A fast run's end report can be committed before the start that the dispatcher
        submitted: that late start must not turn a finished run back into a running one.
        """
        ex = dict(c["execution"])
        name = ex["job_name"]
        self._require_job(name)
        row = self._db.execute(
            "SELECT running FROM executions WHERE job_name = ? AND id = ?", (name, ex["id"])
        ).fetchone()
        if row is not None:
            return Result(True, value=None)  # already recorded (finished, or a duplicate start)
        if _dt(ex.get("finished_at")) is not None and self._attempt_ended(ex):
            # A failed attempt recorded by the leader (it arrives already ended) for an
            # attempt whose own end is already here. Real starts skip this query.
            return Result(True, value=None)
        ex["finished_at"] = ZERO_TIME
        ex["success"] = False
        self._write_execution(ex, b"", running=True)
        self._running[name] = self._running.get(name, 0) + 1
        return Result(True, value=ex)

    def _attempt_ended(self, ex: dict) -> bool:
        """Whether another execution of the same attempt (group, attempt, node) has ended."""
        rows = self._db.execute(
            "SELECT body FROM executions WHERE job_name = ? AND grp = ? AND running = 0"
            " AND id != ?",
            (ex["job_name"], int(ex["group"]), ex["id"]),
        ).fetchall()
        attempt, slot = int(ex.get("attempt", 1)), run_slot(ex)
        for (body,) in rows:
            other = json.loads(body)
            if int(other.get("attempt", 1)) == attempt and run_slot(other) == slot:
                return True
        return False

    def _write_execution(self, ex: dict, output: bytes, running: bool) -> None:
        body = {k: v for k, v in ex.items() if k != "output"}
        self._db.execute(
            "INSERT OR REPLACE INTO executions(job_name, id, grp, started_ns, running, body, output)"
            " VALUES(?, ?, ?, ?, ?, ?, ?)",
            (
                ex["job_name"],
                ex["id"],
                int(ex["group"]),
                int(ex["started_ns"]),
                1 if running else 0,
                json.dumps(body, separators=(",", ":")),
                output,
            ),
        )

    def _op_execution_done(self, c: dict) -> Result:
        """Store the final record, update counters and status, and say what happens next.

        Follow-ups: a retry (same group, next attempt) while attempts remain, unless the run was
        stopped by a user; otherwise, on the group's success, the dependent jobs and the
        ephemeral deletion. A failed attempt that a later attempt recovers counts as success.
        """
        ex = dict(c["execution"])
        name = ex["job_name"]
        job = self._job(name)
        if job is None:
            return Result(True, value=None)  # job deleted meanwhile: nothing to record
        row = self._db.execute(
            "SELECT running FROM executions WHERE job_name = ? AND id = ?", (name, ex["id"])
        ).fetchone()
        if row is not None and row[0] == 0:
            return Result(True, value=None)  # already final: a duplicate report
        if row is None and not ex["success"] and self._attempt_ended(ex):
            # A failure recorded for an attempt whose node forgot it ran it (a restart between
            # the run and the leader's question) while its own report is already here: the
            # attempt ran and ended; a retry now would run the launch twice.
            return Result(True, value=None)
        if row is not None:
            self._running[name] = max(0, self._running.get(name, 0) - 1)
            if self._running[name] == 0:
                del self._running[name]
        output = ex.pop("output", "")
        output_bytes = output.encode("utf-8", "replace") if isinstance(output, str) else output
        if c.get("no_retry"):
            ex["no_retry"] = True  # stopped by a user: this node's attempts end here
        self._write_execution(ex, output_bytes, running=False)
        self._trim_executions(name)

        job = dict(job)
        group = int(ex["group"])
        retries_left = int(job.get("retries", 0)) + 1 - int(ex.get("attempt", 1))
        follow_ups: list[dict] = []
        will_retry = not ex["success"] and retries_left > 0 and not c.get("no_retry")
        if ex["success"]:
            job["success_count"] = int(job.get("success_count", 0)) + 1
            job["last_success"] = _later(job.get("last_success"), ex["finished_at"])
        elif not will_retry:
            job["error_count"] = int(job.get("error_count", 0)) + 1
            job["last_error"] = _later(job.get("last_error"), ex["finished_at"])
        previous_status = job.get("status", "")
        if will_retry:
            follow_ups.append(
                {
                    "action": "retry",
                    "job_name": name,
                    "group": group,
                    "attempt": int(ex.get("attempt", 1)) + 1,
                    "node_name": ex.get("node_name", ""),
                    "slot": run_slot(ex),
                    "delay": retry_delay_seconds(job, int(ex.get("attempt", 1))),
                }
            )
        else:
            job["status"] = self._group_status(name, group)
            follow_ups.append(
                {
                    "action": "finished",
                    "job_name": name,
                    "group": group,
                    "status": job["status"],
                    "previous_status": previous_status,
                    "execution_id": ex["id"],
                }
            )
            if self._launch_over(job, group):
                self._close_intent(group)
            if job["status"] == "success":
                for child in job.get("dependent_jobs") or []:
                    follow_ups.append({"action": "run_dependent", "job_name": child})
                if job.get("ephemeral"):
                    follow_ups.append({"action": "delete_ephemeral", "job_name": name})
        self._put_job(job)
        return Result(True, value=ex, follow_ups=follow_ups)

    def _launch_over(self, job: dict, group: int) -> bool:
        """Whether launch `group` has nothing left to run: no attempt running, none due to be
        retried, and every node it was sent to has recorded an end (a node whose start is not
        recorded yet may still be running it, so a `forbid` job stays busy)."""
        if self._group_running(job["name"], group) or self._retry_pending(job, group):
            return False
        intent = self._intents.get(group)
        if intent is None:
            return True
        standins = intent.get("standins") or {}
        dropped = set(intent.get("dropped") or [])
        ended = self._latest_by_slot(job["name"], group)
        return all(
            n in ended for n in intent.get("nodes") or [] if n not in standins and n not in dropped
        )

    def _close_intent(self, group: int) -> None:
        self._intents.pop(group, None)
        self._db.execute("DELETE FROM intents WHERE grp = ?", (group,))

    def _group_running(self, name: str, group: int) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM executions WHERE job_name = ? AND grp = ? AND running = 1 LIMIT 1",
            (name, group),
        ).fetchone()
        return row is not None

    def _latest_by_slot(self, name: str, group: int) -> dict[str, dict]:
        """The latest ended attempt of each node's run of the launch (see `run_slot`)."""
        latest: dict[str, dict] = {}
        for (body,) in self._db.execute(
            "SELECT body FROM executions WHERE job_name = ? AND grp = ? AND running = 0",
            (name, group),
        ):
            ex = json.loads(body)
            slot = run_slot(ex)
            if slot not in latest or int(ex.get("attempt", 1)) >= int(
                latest[slot].get("attempt", 1)
            ):
                latest[slot] = ex
        return latest

    def _retry_pending(self, job: dict, group: int) -> bool:
        """Whether some node's run of the launch failed with attempts left (its retry is due):
        the launch stays open until that retry ends too."""
        attempts = int(job.get("retries", 0)) + 1
        return any(
            not ex.get("success")
            and not ex.get("no_retry")
            and int(ex.get("attempt", 1)) < attempts
            for ex in self._latest_by_slot(job["name"], group).values()
        )

    def _group_status(self, name: str, group: int) -> str:
        """success / failed / partially_failed from each node's latest attempt in the group."""
        latest = self._latest_by_slot(name, group)
        outcomes = {bool(ex.get("success")) for ex in latest.values()}
        if outcomes == {True}:
            return "success"
        if outcomes == {False}:
            return "failed"
        return "partially_failed" if outcomes else ""

    def _trim_executions(self, name: str) -> None:
        keep = self.executions_per_job
        self._db.execute(
            "DELETE FROM executions WHERE job_name = ? AND running = 0 AND id IN ("
            " SELECT id FROM executions WHERE job_name = ? ORDER BY started_ns DESC, id DESC"
            " LIMIT -1 OFFSET ?)",
            (name, name, keep),
        )

    def _op_abandon_running(self, c: dict) -> Result:
        """Mark running executions of `node` (or one execution) failed: their runner is gone.

        Used when an agent restarts after a crash and, later, when a node is declared dead, so
        that no execution stays "running" forever (Dkron #1939).
        """
        query = "SELECT body FROM executions WHERE running = 1"
        rows = [json.loads(b) for (b,) in self._db.execute(query)]
        follow_ups: list[dict] = []
        finished = format_rfc3339(ns_to_datetime(int(c["now_ns"])))
        for ex in rows:
            if c.get("node") and ex.get("node_name") != c["node"]:
                continue
            if c.get("id") and ex["id"] != c["id"]:
                continue
            ex["finished_at"] = finished
            ex["success"] = False
            ex["output"] = c.get("reason", "execution abandoned")
            result = self._op_execution_done({"execution": ex})
            follow_ups.extend(result.follow_ups)
        return Result(True, follow_ups=follow_ups)

    def _op_delete_executions(self, c: dict) -> Result:
        job = dict(self._require_job(c["name"]))
        self._db.execute(
            "DELETE FROM executions WHERE job_name = ? AND running = 0", (job["name"],)
        )
        job["success_count"] = 0
        job["error_count"] = 0
        job["last_success"] = None
        job["last_error"] = None
        self._put_job(job)
        return Result(True, value=job)

    def _op_delete_execution(self, c: dict) -> Result:
        self._require_job(c["name"])
        cur = self._db.execute(
            "DELETE FROM executions WHERE job_name = ? AND id = ? AND running = 0",
            (c["name"], c["id"]),
        )
        if cur.rowcount == 0:
            raise StoreError(f'execution "{c["id"]}" not found', 404)
        return Result(True)

    # ----- snapshots -------------------------------------------------------------------------

    def snapshot(self) -> bytes:
        """The whole state as bytes (JSON lines), for Raft snapshots and backups."""
        return self.snapshot_view()()

    def snapshot_view(self) -> Callable[[], bytes]:
        """Pin the current state now; the returned function writes it out later, on any thread.

        Written line by line into one buffer, with each stored job and execution body copied
        as it is (it is JSON already), so no transient copy of the state exists as objects.
        A file-backed store reads through its own connection inside one read transaction
        (SQLite's WAL gives it a fixed view), so neither API reads nor later writes wait for
        the copy, and Raft can pin a snapshot at an index and build it off its loop.
        """
        if self.path == ":memory:":
            with self._lock:
                buf = io.BytesIO()
                self._write_snapshot_rows(self._db, buf)
                buf.write(self._intent_lines())
            data = buf.getvalue()
            return lambda: data
        reader = self._snapshot_reader()
        try:
            with self._lock:
                reader.execute("BEGIN")
                reader.execute("SELECT count(*) FROM meta").fetchone()  # pins the view
                intents = self._intent_lines()
        except BaseException:
            reader.close()
            raise

        def write_out() -> bytes:
            buf = io.BytesIO()
            try:
                self._write_snapshot_rows(reader, buf)
            finally:
                reader.close()
            buf.write(intents)
            return buf.getvalue()

        return write_out

    def _intent_lines(self) -> bytes:
        """Open launch intents as snapshot lines (caller holds the lock)."""
        return b"".join(
            json.dumps({"t": "intent", "v": self._intents[group]}, sort_keys=True).encode() + b"\n"
            for group in sorted(self._intents)
        )

    def _snapshot_reader(self) -> sqlite3.Connection:
        uri = "file:" + urllib.parse.quote(os.path.abspath(self.path)) + "?mode=ro"
        return sqlite3.connect(uri, uri=True, check_same_thread=False, isolation_level=None)

    @staticmethod
    def _write_snapshot_rows(db: sqlite3.Connection, buf: io.BytesIO) -> None:
        buf.writelines(
            b'{"t": "job", "v": %s}\n' % job_body.encode()
            for (job_body,) in db.execute("SELECT body FROM jobs ORDER BY name")
        )
        buf.writelines(
            b'{"output": %s, "running": %s, "t": "ex", "v": %s}\n'
            % (
                json.dumps(output.decode("latin-1")).encode(),
                json.dumps(running).encode(),
                ex_body.encode(),
            )
            for ex_body, running, output in db.execute(
                "SELECT body, running, output FROM executions ORDER BY job_name, id"
            )
        )

    def restore(self, data: bytes, last_index: int = 0) -> None:
        """Replace the whole state with a snapshot."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for table in ("jobs", "executions", "intents"):
                    self._db.execute(f"DELETE FROM {table}")
                for line in data.decode().splitlines():
                    if not line:
                        continue
                    rec = json.loads(line)
                    if rec["t"] == "job":
                        j = rec["v"]
                        self._db.execute(
                            "INSERT INTO jobs(name, body) VALUES(?, ?)",
                            (j["name"], json.dumps(j, separators=(",", ":"))),
                        )
                    elif rec["t"] == "ex":
                        self._write_execution(
                            rec["v"], rec["output"].encode("latin-1"), bool(rec["running"])
                        )
                    elif rec["t"] == "intent":
                        i = rec["v"]
                        self._db.execute(
                            "INSERT INTO intents(grp, job_name, body) VALUES(?, ?, ?)",
                            (i["group"], i["job_name"], json.dumps(i)),
                        )
                self._db.execute(
                    "INSERT OR REPLACE INTO meta(key, value) VALUES('last_applied', ?)",
                    (str(last_index),),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._load()


def retry_delay_seconds(job: dict, attempt: int) -> float:
    """Delay before the next attempt: the job's `retry_delay`, else a doubling backoff."""
    if job.get("retry_delay"):
        from dkron_pkg.durations import parse_duration

        return max(0.0, parse_duration(job["retry_delay"]))
    return min(60.0, 0.5 * (2 ** max(0, attempt - 1)))


def compute_next(job: dict) -> str | None:
    """The next fire time after the job's cursor (last scheduled time, else its anchor)."""
    from dkron_pkg.schedule import parse_schedule

    if job.get("parent_job"):
        return None
    try:
        schedule = parse_schedule(job["schedule"], job.get("timezone", ""), job["name"])
    except ValueError:
        return None
    cursor_ns = job.get("last_scheduled_ns") or job.get("anchor_ns")
    if cursor_ns is None:
        return None
    nxt = schedule.next_after(ns_to_datetime(int(cursor_ns)))
    starts = _dt(job.get("starts_at"))
    if nxt is not None and starts is not None and nxt < starts:
        nxt = schedule.next_after(starts - timedelta(microseconds=1))
    return format_rfc3339(nxt.astimezone(UTC)) if nxt else None
