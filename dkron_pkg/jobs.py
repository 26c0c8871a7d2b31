"""The job record: Dkron's JSON fields, defaults and validation rules (reference §1.1).

A job travels as a plain dict in Dkron's JSON shape. `normalize_job` turns what a client sent into
a complete, validated dict (or raises JobError naming the field); the store keeps the
server-maintained fields (counters, status, next, dependent_jobs) itself.
"""

from __future__ import annotations

import difflib
import math
from typing import Any

from dkron_pkg.durations import parse_duration
from dkron_pkg.timefmt import format_rfc3339, parse_rfc3339

# Fields a client may set, with Dkron's defaults.
USER_FIELDS: dict[str, Any] = {
    "name": "",
    "displayname": "",
    "timezone": "",
    "schedule": "",
    "owner": "",
    "owner_email": "",
    "disabled": False,
    "tags": None,
    "metadata": None,
    "retries": 0,
    "parent_job": "",
    "processors": {},
    "concurrency": "allow",
    "executor": "",
    "executor_config": None,
    "ephemeral": False,
    "starts_at": None,
    "expires_at": None,
    # Beyond Dkron (documented in the README):
    "retry_delay": "",  # Go duration between attempts; "" = Dkron's growing backoff
    "missed_runs": "skip",  # skip | once | all: what to do with runs missed while down
    "missed_runs_limit": 10,  # upper bound of catch-up runs for missed_runs=all
}

# Fields the server maintains; clients may send them (e.g. a dump from GET /v1/jobs) but they
# are only honoured by restore, where counters are merged by max.
SERVER_FIELDS: dict[str, Any] = {
    "id": "",
    "success_count": 0,
    "error_count": 0,
    "last_success": None,
    "last_error": None,
    "dependent_jobs": None,
    "status": "",
    "next": None,
}

# Fields we add to what the API returns; clients may send a job back with them.
READ_ONLY_EXTRAS = {"running", "warnings"}
MISSED_RUN_POLICIES = ("skip", "once", "all")
MAX_MISSED_RUNS_LIMIT = 1000
# Upper bounds (beyond Dkron, which has none): a body within --max-body-bytes may still carry a
# 100,000-character name or retries of 1e308; these keep names, counts and numbers sane.
MAX_NAME_CHARS = 256  # name, parent_job, and the short words: timezone, executor, ...
MAX_TEXT_CHARS = 1024  # displayname, owner, owner_email, schedule
MAX_RETRIES = 100
MAX_MAP_ENTRIES = 256  # tags, metadata, executor_config, processors
MAX_KEY_CHARS = 256  # a key in one of those maps
STRING_LIMITS = {
    "name": MAX_NAME_CHARS,
    "parent_job": MAX_NAME_CHARS,
    "timezone": MAX_NAME_CHARS,
    "concurrency": MAX_NAME_CHARS,
    "executor": MAX_NAME_CHARS,
    "retry_delay": MAX_NAME_CHARS,
    "missed_runs": MAX_NAME_CHARS,
    "displayname": MAX_TEXT_CHARS,
    "owner": MAX_TEXT_CHARS,
    "owner_email": MAX_TEXT_CHARS,
    "schedule": MAX_TEXT_CHARS,
}


class JobError(ValueError):
    """A client error about a job; `field` names the offending job field for UIs."""

    def __init__(self, message: str, field: str = "", status: int = 400):
        super().__init__(message)
        self.field = field
        self.status = status


def _invalid(reason: str, field: str) -> JobError:
    return JobError(f"Job validation failed: {reason}.", field)


def _is_slug(name: str) -> bool:
    """Lowercase Unicode letters, digits, '_' and '-' only (Dkron's isSlug)."""
    for ch in name:
        if ch in "_-" or ch.isdigit() and ch.isascii():
            continue
        if ch.isalpha() and ch.islower():
            continue
        return False
    return True


def _expect_str(payload: dict, key: str) -> str:
    value = payload.get(key, USER_FIELDS[key])
    if value is None:
        return ""
    if not isinstance(value, str):
        raise JobError(
            f"Unable to parse payload: field {key} must be a string, got {_type_name(value)}", key
        )
    limit = STRING_LIMITS.get(key)
    if limit is not None and len(value) > limit:
        raise _invalid(f"{key} is {len(value)} characters long, at most {limit} are allowed", key)
    return value


def _expect_bool(payload: dict, key: str) -> bool:
    value = payload.get(key, False)
    if value is None:
        return False
    if not isinstance(value, bool):
        raise JobError(
            f"Unable to parse payload: field {key} must be a boolean, got {_type_name(value)}",
            key,
        )
    return value


def _expect_uint(payload: dict, key: str) -> int:
    value = payload.get(key, USER_FIELDS.get(key, 0))
    if value is None:
        return int(USER_FIELDS.get(key, 0))
    if isinstance(value, float) and not math.isfinite(value):
        raise JobError(f"Unable to parse payload: field {key} must be a finite number", key)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise JobError(
            f"Unable to parse payload: field {key} must be a whole number, got {_type_name(value)}",
            key,
        )
    if value < 0:
        raise JobError(f"Unable to parse payload: field {key} must not be negative", key)
    return int(value)


def _expect_str_map(payload: dict, key: str) -> dict[str, str] | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise JobError(
            f"Unable to parse payload: field {key} must be an object of strings, "
            f"got {_type_name(value)}",
            key,
        )
    _check_map_size(value, key)
    for k, v in value.items():
        if not isinstance(v, str):
            raise JobError(
                f"Unable to parse payload: {key}.{k} must be a string "
                f'(write "{_json_hint(v)}"), got {_type_name(v)}',
                f"{key}.{k}",
            )
    return dict(value)


def _check_map_size(value: dict, key: str) -> None:
    if len(value) > MAX_MAP_ENTRIES:
        raise _invalid(
            f"{key} has {len(value)} entries, at most {MAX_MAP_ENTRIES} are allowed", key
        )
    for k in value:
        if len(k) > MAX_KEY_CHARS:
            raise _invalid(
                f"{key} has a key of {len(k)} characters, at most {MAX_KEY_CHARS} are allowed", key
            )


def _json_hint(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    text = str(v)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _expect_time(payload: dict, key: str) -> str | None:
    value = payload.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise JobError(f"Unable to parse payload: field {key} must be an RFC 3339 time", key)
    try:
        return format_rfc3339(parse_rfc3339(value))
    except ValueError as e:
        raise JobError(f"Unable to parse payload: field {key}: {e}", key) from None


def _expect_processors(payload: dict) -> dict[str, dict[str, str]]:
    value = payload.get("processors")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise JobError("Unable to parse payload: field processors must be an object", "processors")
    _check_map_size(value, "processors")
    out: dict[str, dict[str, str]] = {}
    for name, cfg in value.items():
        if cfg is None:
            cfg = {}
        if not isinstance(cfg, dict) or not all(isinstance(v, str) for v in cfg.values()):
            raise JobError(
                f"Unable to parse payload: processors.{name} must be an object of strings",
                f"processors.{name}",
            )
        _check_map_size(cfg, f"processors.{name}")
        out[name] = dict(cfg)
    return out


def normalize_job(payload: Any) -> dict[str, Any]:
    """Validate a client's job JSON and return it complete with defaults (user fields only).

    Type errors give `Unable to parse payload: ...`, rule violations `Job validation failed: ...`,
    as Dkron does. Schedule, time zone and executor checks live in `validate_job_semantics`
    because they need the schedule engine and the executor registry.
    """
    if not isinstance(payload, dict):
        raise JobError(
            f"Unable to parse payload: a job must be a JSON object, got {_type_name(payload)}"
        )
    unknown = sorted(set(payload) - set(USER_FIELDS) - set(SERVER_FIELDS) - READ_ONLY_EXTRAS)
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(USER_FIELDS), n=1)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        raise JobError(f'Unable to parse payload: unknown field "{key}"{hint}', key)
    job: dict[str, Any] = {}
    for key in (
        "name",
        "displayname",
        "timezone",
        "schedule",
        "owner",
        "owner_email",
        "parent_job",
        "concurrency",
        "executor",
        "retry_delay",
        "missed_runs",
    ):
        job[key] = _expect_str(payload, key)
    job["disabled"] = _expect_bool(payload, "disabled")
    job["ephemeral"] = _expect_bool(payload, "ephemeral")
    job["retries"] = _expect_uint(payload, "retries")
    job["missed_runs_limit"] = _expect_uint(payload, "missed_runs_limit")
    job["tags"] = _expect_str_map(payload, "tags")
    job["metadata"] = _expect_str_map(payload, "metadata")
    job["executor_config"] = _expect_str_map(payload, "executor_config")
    job["processors"] = _expect_processors(payload)
    job["starts_at"] = _expect_time(payload, "starts_at")
    job["expires_at"] = _expect_time(payload, "expires_at")
    if "concurrency" not in payload or payload.get("concurrency") is None:
        job["concurrency"] = "allow"
    if not job["missed_runs"]:
        job["missed_runs"] = "skip"
    if "missed_runs_limit" not in payload or payload.get("missed_runs_limit") is None:
        job["missed_runs_limit"] = USER_FIELDS["missed_runs_limit"]

    name = job["name"]
    if not name:
        raise _invalid("name cannot be empty", "name")
    if not _is_slug(name):
        raise _invalid(
            f'name "{name}" contains illegal characters: use only lowercase letters, '
            "digits, '_' and '-'",
            "name",
        )
    if job["parent_job"] == name:
        raise _invalid("a job cannot be its own parent", "parent_job")
    if job["concurrency"] not in ("allow", "forbid", ""):
        raise _invalid(
            f'concurrency must be "allow" or "forbid", got "{job["concurrency"]}"', "concurrency"
        )
    if job["concurrency"] == "":
        job["concurrency"] = "allow"
    if job["missed_runs"] not in MISSED_RUN_POLICIES:
        raise _invalid(
            f'missed_runs must be one of skip, once, all; got "{job["missed_runs"]}"',
            "missed_runs",
        )
    if job["retries"] > MAX_RETRIES:
        raise _invalid(f"retries must be at most {MAX_RETRIES}", "retries")
    if job["missed_runs_limit"] > MAX_MISSED_RUNS_LIMIT:
        raise _invalid(f"missed_runs_limit must be at most {MAX_MISSED_RUNS_LIMIT}", "missed_runs")
    if job["retry_delay"]:
        try:
            if parse_duration(job["retry_delay"]) < 0:
                raise ValueError("retry_delay must not be negative")
        except ValueError as e:
            raise _invalid(f"retry_delay: {e}", "retry_delay") from None
    if (
        job["starts_at"]
        and job["expires_at"]
        and parse_rfc3339(job["expires_at"]) < parse_rfc3339(job["starts_at"])
    ):
        raise _invalid("expires_at is before starts_at", "expires_at")
    return job


def validate_job_semantics(job: dict[str, Any]) -> None:
    """Check schedule, time zone and executor config; raise JobError naming the field."""
    from dkron_pkg import schedule as sched

    if job["timezone"]:
        try:
            sched.load_timezone(job["timezone"])
        except ValueError as e:
            raise _invalid(str(e), "timezone") from None
    if job["schedule"] or not job["parent_job"]:
        try:
            sched.parse_schedule(job["schedule"], job["timezone"], job["name"])
        except ValueError as e:
            msg = str(e)
            if not msg.startswith("can't parse job schedule"):
                msg = f"can't parse job schedule: {msg}"
            raise _invalid(msg, "schedule") from None
    if job["executor"]:
        from dkron_pkg.executors import get_executor

        executor = get_executor(job["executor"])
        if executor is None:
            raise _invalid(
                f'unknown executor "{job["executor"]}" (available: shell, http)', "executor"
            )
        problems = executor.validate(job["executor_config"] or {})
        if problems:
            field = "executor_config"
            first = problems[0]
            if first.startswith("executor_config."):
                field = first.split(":", 1)[0]
            raise _invalid("; ".join(problems), field)


def public_job(job: dict[str, Any]) -> dict[str, Any]:
    """The job as the API returns it: Dkron's field order, `id` = name, zero times as null."""
    out = {"id": job["name"]}
    for key in ("name", "displayname", "timezone", "schedule", "owner", "owner_email"):
        out[key] = job.get(key, "")
    for key in ("success_count", "error_count", "last_success", "last_error"):
        out[key] = job.get(key, SERVER_FIELDS[key])
    for key, default in USER_FIELDS.items():
        if key not in out:
            out[key] = job.get(key, default)
    out["dependent_jobs"] = job.get("dependent_jobs") or None
    out["status"] = job.get("status", "")
    out["next"] = job.get("next") or "0001-01-01T00:00:00Z"
    out["running"] = bool(job.get("running", False))
    return out
