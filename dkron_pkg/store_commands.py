"""Checks every command before the job store applies it.

Commands reach the store from the API, from the launch loop and, through Raft, from whatever a
server was sent. The store must never keep a value the rest of the program cannot use (a job
whose tags are a list broke every launch round) and must never fail part-way: a command is
either refused whole or applied. The checks look at the command only (no clock, no host
settings such as installed time zones), so every server gives the same verdict for the same
log entry. Job fields are checked by `jobs.normalize_job`, the rules the API applies.
"""

from __future__ import annotations

import json
import math
import threading
from datetime import UTC
from typing import Any

from dkron_pkg.jobs import MAX_NAME_CHARS, USER_FIELDS, JobError, normalize_job
from dkron_pkg.timefmt import ZERO_TIME, parse_rfc3339

INT64_MAX = 2**63 - 1
MAX_DEPTH = 16  # the deepest command (set_job -> job -> processors -> name -> key) needs 5
MAX_ITEMS = 100_000  # values in one command, all levels together
MAX_COMMAND_CHARS = 8 * 1024 * 1024  # text in one command, all strings together
MAX_JOB_NAME_CHARS = MAX_NAME_CHARS  # the API's bound
MAX_IDENT_CHARS = 1024  # node names, execution ids, launch slots
MAX_JOB_BYTES = 1024 * 1024  # a job's user fields, as JSON
MAX_OUTPUT_CHARS = 4 * 1024 * 1024  # an execution's output (runs keep their last 256,000 bytes)
MAX_REASON_CHARS = 64 * 1024
MAX_NODES = 10_000  # nodes named in one launch
MAX_TIME_CHARS = 64
LAUNCH_CAUSES = ("schedule", "catchup", "dependent", "manual", "retry")


class CommandError(ValueError):
    """A command the store refuses; `field` names the offending part (e.g. `job.tags`)."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def describe_op(command: Any) -> str:
    """The command's op, safe to put in a log line however it was forged."""
    op = command.get("op") if isinstance(command, dict) else None
    if isinstance(op, str) and op.isprintable() and 0 < len(op) <= 64:
        return op
    return printable(ascii(op), 64)


def check_command(command: Any) -> dict:
    """Return the command ready to apply (a set_job's job normalised), or raise CommandError."""
    if not isinstance(command, dict):
        raise CommandError(f"a store command must be an object, not {_kind(command)}")
    check_value_shape(command)
    op = command.get("op")
    checker = _CHECKERS.get(op) if isinstance(op, str) else None
    if checker is None:
        raise CommandError(f"unknown store command {describe_op(command)}", "op")
    return checker(command)


# ----- a Raft entry's command list ---------------------------------------------------------------


def decode_command_list(data: bytes) -> list | None:
    """The JSON list of commands in a Raft entry, or None: the same answer on every server.

    `json.loads` gives up on deep nesting where Python's recursion limit is reached, and how
    near that is depends on how deep the calling thread already is: an entry nested close to
    the limit could be read on one server and not on another, and their stores would part.
    So an entry that is too deep here is read again on a new thread, whose stack is as short
    as it gets and the same on every server: that answer holds everywhere. (Commands nested
    deeper than MAX_DEPTH are then refused one by one by `check_command`.)
    """
    try:
        value = json.loads(data)
    except ValueError:
        return None
    except RecursionError:
        value = _loads_on_a_new_stack(data)
    return value if isinstance(value, list) else None


def _loads_on_a_new_stack(data: bytes) -> Any:
    box: list = []

    def parse() -> None:
        try:
            box.append(json.loads(data))
        except (ValueError, RecursionError):
            pass

    thread = threading.Thread(target=parse, name="deep-raft-entry", daemon=True)
    thread.start()
    thread.join()
    return box[0] if box else None


# ----- shape of any value ------------------------------------------------------------------------


def check_value_shape(value: Any) -> None:
    """JSON-like all the way down, within the size, depth and number limits.

    NaN and infinities, integers beyond 64 bits (SQLite's range), strings that cannot be stored
    as UTF-8 (lone surrogates), keys that are not strings, and values JSON cannot carry are
    refused here once, so the checks per op only look at types and meanings.

    Every Raft entry is checked on every server: a quick walk clears the usual command, and
    only one it cannot clear is walked again with the paths that name what is wrong.
    """
    if _plainly_valid(value):
        return
    _check_value_shape_closely(value)


def _plainly_valid(value: Any) -> bool:
    """True when `value` certainly passes `check_value_shape` (False: look closely)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    items = chars = 0
    while stack:
        item, depth = stack.pop()
        items += 1
        kind = type(item)
        if kind is str:
            chars += len(item)
            if not item.isascii():
                return False
        elif kind is dict:
            if depth >= MAX_DEPTH:
                return False
            for key, sub in item.items():
                if type(key) is not str:
                    return False
                chars += len(key)
                stack.append((sub, depth + 1))
        elif kind is list:
            if depth >= MAX_DEPTH:
                return False
            stack.extend((sub, depth + 1) for sub in item)
        elif kind is int:
            if not -INT64_MAX - 1 <= item <= INT64_MAX:
                return False
        elif item is None or kind is bool:
            pass
        elif kind is float:
            if not math.isfinite(item):
                return False
        else:
            return False
        if items > MAX_ITEMS or chars > MAX_COMMAND_CHARS:
            return False
    return True


def _check_value_shape_closely(value: Any) -> None:
    stack: list[tuple[Any, tuple, int]] = [(value, (), 0)]
    items = 0
    chars = 0
    while stack:
        item, path, depth = stack.pop()
        items += 1
        if items > MAX_ITEMS:
            raise CommandError(f"the command holds more than {MAX_ITEMS} values")
        if item is None or isinstance(item, bool):
            continue
        if isinstance(item, int):
            if not -INT64_MAX - 1 <= item <= INT64_MAX:
                raise CommandError(f"{_name(path)}: number out of the 64-bit range", _name(path))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise CommandError(f"{_name(path)}: {item!r} is not a number", _name(path))
        elif isinstance(item, str):
            chars += len(item)
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise CommandError(
                        f"{_name(path)}: text that is not valid Unicode", _name(path)
                    ) from None
        elif isinstance(item, bytes):
            chars += len(item)
        elif isinstance(item, list | tuple | dict):
            if depth >= MAX_DEPTH:
                raise CommandError(f"{_name(path)}: nested deeper than {MAX_DEPTH}", _name(path))
            if isinstance(item, dict):
                for key, sub in item.items():
                    if not isinstance(key, str):
                        raise CommandError(f"{_name(path)}: a key that is not text", _name(path))
                    chars += len(key)
                    stack.append((sub, (*path, key), depth + 1))
            else:
                stack.extend((sub, (*path, i), depth + 1) for i, sub in enumerate(item))
        else:
            raise CommandError(f"{_name(path)}: unsupported value {_kind(item)}", _name(path))
        if chars > MAX_COMMAND_CHARS:
            raise CommandError(f"the command holds more than {MAX_COMMAND_CHARS} characters")


def _name(path: tuple) -> str:
    return printable(".".join(str(p) for p in path), 120) or "command"


def printable(text: str, limit: int = 400) -> str:
    """`text` safe for a log line or a message: control and unprintable characters escaped
    (no forged line breaks), at most about `limit` characters."""
    if not text.isprintable():
        text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text[: limit + 1])
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"a {type(value).__name__}"


# ----- fields ------------------------------------------------------------------------------------


def _present(c: dict, key: str, name: str, required: bool) -> bool:
    """Whether `key` has a value to check; a required one that is missing is an error."""
    if key in c and c[key] is not None:
        return True
    if required:
        raise CommandError(f"{name} is missing", name)
    return False


def _text(
    c: dict, key: str, where: str = "", *, required: bool = True, limit: int = MAX_IDENT_CHARS
) -> None:
    name = where + key
    if not _present(c, key, name, required):
        return
    value = c[key]
    if not isinstance(value, str):
        raise CommandError(f"{name} must be text, not {_kind(value)}", name)
    if required and not value:
        raise CommandError(f"{name} is empty", name)
    if len(value) > limit:
        raise CommandError(f"{name} is longer than {limit} characters", name)


def _reference(c: dict, key: str, where: str = "") -> None:
    """The name of something that may already be stored (any length the command can carry)."""
    _text(c, key, where, limit=MAX_COMMAND_CHARS)


def _integer(c: dict, key: str, where: str = "", *, required: bool = True, low: int = 0) -> None:
    name = where + key
    if not _present(c, key, name, required):
        return
    value = c[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise CommandError(f"{name} must be a whole number, not {_kind(value)}", name)
    if not low <= value <= INT64_MAX:
        raise CommandError(f"{name} must be between {low} and {INT64_MAX}", name)


def _boolean(c: dict, key: str, where: str = "", *, required: bool = False) -> None:
    name = where + key
    if not _present(c, key, name, required):
        return
    if not isinstance(c[key], bool):
        raise CommandError(f"{name} must be true or false, not {_kind(c[key])}", name)


def _time(c: dict, key: str, where: str = "", *, required: bool = False) -> None:
    name = where + key
    if not _present(c, key, name, required):
        return
    value = c[key]
    if not isinstance(value, str):
        raise CommandError(f"{name} must be an RFC 3339 time, not {_kind(value)}", name)
    if value in ("", ZERO_TIME):
        return
    if len(value) > MAX_TIME_CHARS:
        raise CommandError(f"{name} is not an RFC 3339 time", name)
    try:
        parse_rfc3339(value).astimezone(UTC)
    except (ValueError, OverflowError) as e:
        raise CommandError(f"{name}: {e}", name) from None


def _node_list(c: dict, key: str, *, required: bool) -> None:
    if not _present(c, key, key, required):
        return
    value = c[key]
    if not isinstance(value, list | tuple):
        raise CommandError(f"{key} must be a list of node names, not {_kind(value)}", key)
    if len(value) > MAX_NODES:
        raise CommandError(f"{key} names more than {MAX_NODES} nodes", key)
    for i, node in enumerate(value):
        if not isinstance(node, str) or not node or len(node) > MAX_IDENT_CHARS:
            raise CommandError(f"{key}.{i} must be a node name", f"{key}.{i}")


def _object(c: dict, key: str) -> dict:
    value = c.get(key)
    if not isinstance(value, dict):
        raise CommandError(f"{key} must be an object, not {_kind(value)}", key)
    return value


# ----- ops ---------------------------------------------------------------------------------------


def _set_job(c: dict) -> dict:
    sent = _object(c, "job")
    try:
        job = normalize_job(sent)
    except JobError as e:
        field = f"job.{e.field}" if e.field else "job"
        raise CommandError(str(e), field) from None
    _check_job_limits(job, "job.")
    _integer(c, "now_ns")
    _boolean(c, "restore")
    if c.get("restore"):
        _restored_server_fields(sent)
    return {**c, "job": {**sent, **job}}


def _check_job_limits(job: dict, where: str) -> None:
    """What `normalize_job` leaves open: lengths, sizes, numbers within 64 bits."""
    _text(job, "name", where, limit=MAX_JOB_NAME_CHARS)
    _text(job, "parent_job", where, required=False, limit=MAX_JOB_NAME_CHARS)
    _integer(job, "retries", where)  # a float such as 1e308 passes as a whole number
    _integer(job, "missed_runs_limit", where)
    if len(json.dumps(job, separators=(",", ":"))) > MAX_JOB_BYTES:
        field = where.rstrip(".") or "job"
        raise CommandError(f"{field} is larger than {MAX_JOB_BYTES} bytes", field)


def _restored_server_fields(sent: dict) -> None:
    """A restore merges the dump's counters and times: they must be usable ones."""
    for key in ("success_count", "error_count"):
        value = sent.get(key)
        if isinstance(value, int):
            _integer(sent, key, "job.")
    for key in ("last_success", "last_error"):
        if isinstance(sent.get(key), str):
            _time(sent, key, "job.")


def _by_name(c: dict) -> dict:
    _reference(c, "name")
    return c


def _toggle_job(c: dict) -> dict:
    _reference(c, "name")
    _integer(c, "now_ns")
    return c


def _launch(c: dict) -> dict:
    _reference(c, "name")
    _integer(c, "scheduled_ns")
    _integer(c, "now_ns")
    _integer(c, "group")
    _integer(c, "attempt", required=False, low=1)
    cause = c.get("cause", "schedule")
    if cause not in LAUNCH_CAUSES:
        raise CommandError(f"cause must be one of {', '.join(LAUNCH_CAUSES)}", "cause")
    _node_list(c, "nodes", required=False)
    return c


def _close_intent(c: dict) -> dict:
    _integer(c, "group")
    return c


def _intent_nodes(c: dict) -> dict:
    _integer(c, "group")
    _node_list(c, "nodes", required=True)
    _text(c, "standin_for", required=False)
    _node_list(c, "drop", required=False)
    if c.get("retry") is not None:
        retry = _object(c, "retry")
        _text(retry, "slot", "retry.")
        _text(retry, "node", "retry.")
        _integer(retry, "attempt", "retry.", low=1)
        _integer(retry, "at", "retry.")
    return c


def _execution(c: dict, ended: bool) -> None:
    ex = _object(c, "execution")
    _reference(ex, "job_name", "execution.")
    _text(ex, "id", "execution.")
    _integer(ex, "group", "execution.")
    _integer(ex, "started_ns", "execution.")
    _integer(ex, "attempt", "execution.", required=False, low=1)
    _integer(ex, "scheduled_ns", "execution.", required=False)
    _integer(ex, "process_started_ns", "execution.", required=False)
    _text(ex, "node_name", "execution.", required=False)
    _text(ex, "for_node", "execution.", required=False)
    _time(ex, "started_at", "execution.")
    _time(ex, "finished_at", "execution.", required=ended)
    _boolean(ex, "success", "execution.", required=ended)
    _boolean(ex, "no_retry", "execution.")
    output = ex.get("output")
    if output is not None:
        if not isinstance(output, str | bytes):
            raise CommandError(
                f"execution.output must be text, not {_kind(output)}", "execution.output"
            )
        if len(output) > MAX_OUTPUT_CHARS:
            raise CommandError(
                f"execution.output is longer than {MAX_OUTPUT_CHARS} characters",
                "execution.output",
            )


def _execution_started(c: dict) -> dict:
    _execution(c, ended=False)
    return c


def _execution_done(c: dict) -> dict:
    _execution(c, ended=True)
    _boolean(c, "no_retry")
    return c


def _abandon_running(c: dict) -> dict:
    _integer(c, "now_ns")
    _text(c, "node", required=False)
    _text(c, "id", required=False)
    _text(c, "reason", required=False, limit=MAX_REASON_CHARS)
    return c


def _delete_execution(c: dict) -> dict:
    _reference(c, "name")
    _text(c, "id")
    return c


_CHECKERS = {
    "set_job": _set_job,
    "delete_job": _by_name,
    "toggle_job": _toggle_job,
    "launch": _launch,
    "close_intent": _close_intent,
    "intent_nodes": _intent_nodes,
    "execution_started": _execution_started,
    "execution_done": _execution_done,
    "abandon_running": _abandon_running,
    "delete_executions": _by_name,
    "delete_execution": _delete_execution,
}


# ----- stored jobs -------------------------------------------------------------------------------


def stored_job_problem(job: Any) -> str | None:
    """Why a stored job could not have been stored by a checked command (None: it could)."""
    if not isinstance(job, dict):
        return f"a job must be an object, not {_kind(job)}"
    try:
        user = {k: job[k] for k in USER_FIELDS if k in job}
        # The job's only nested values are user fields, which normalize_job checks.
        _check_job_limits(normalize_job(user), "")
        for key in ("success_count", "error_count"):
            _integer(job, key, required=False)
        for key in ("last_success", "last_error", "next"):
            _time(job, key)
        for key in ("anchor_ns", "last_scheduled_ns", "updated_ns"):
            _integer(job, key, required=False)
        deps = job.get("dependent_jobs")
        if deps is not None and not (
            isinstance(deps, list) and all(isinstance(d, str) for d in deps)
        ):
            return "dependent_jobs must be a list of job names"
        if not isinstance(job.get("status", ""), str):
            return "status must be text"
    except (CommandError, ValueError, OverflowError) as e:  # NaN and infinity raise these
        return str(e)
    return None


__all__ = [
    "CommandError",
    "check_command",
    "check_value_shape",
    "decode_command_list",
    "describe_op",
    "printable",
    "stored_job_problem",
]
