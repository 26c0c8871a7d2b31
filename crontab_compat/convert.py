"""Turning parsed crontab entries into Dkron job JSON (dicts ready for `POST /v1/jobs`).

Environment: Dkron's `env` key is split on commas, so a value containing a comma cannot be
carried there. Every job therefore also gets `env_json`, a JSON object string holding the whole
environment; an executor that knows `env_json` uses it and ignores `env`. `env` keeps only the
variables it can represent (the job's full environment is always in `env_json`). Every job
has `inherit_env: false`, so its process gets only that environment, as under cron, and nothing
of the agent's.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex

from crontab_compat.parser import Entry, stable_delay_seconds
from crontab_compat.users import current_user

MANAGED_BY = "dkron-crontab"
_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


def slug(text: str, limit: int) -> str:
    """Lowercase letters, digits, `_` and `-` only, as Dkron job names require."""
    cleaned = _SLUG_BAD.sub("-", text.lower()).strip("-")
    return cleaned[:limit].strip("-") or "x"


def job_name(entry: Entry, host: str) -> str:
    """Stable name from host, file, user and line text: re-importing updates the same job."""
    identity = "\n".join([host, entry.file, entry.user, entry.text.strip(), str(entry.occurrence)])
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    base = os.path.basename(entry.file)
    return f"cron-{slug(base, 24)}-{slug(entry.user, 16)}-{digest}"


def parse_tags(specs: list[str]) -> dict[str, str]:
    """`k=v[:n]` items (repeatable, or comma-separated) into Dkron job tags."""
    tags: dict[str, str] = {}
    for spec in specs:
        for item in filter(None, (part.strip() for part in spec.split(","))):
            key, sep, value = item.partition("=")
            if not sep or not key or not value:
                raise ValueError(f"bad tag {item!r}: expected key=value or key=value:count")
            if ":" in value:
                count = value.rsplit(":", 1)[1]
                if not count.isdigit() or int(count) < 1:
                    raise ValueError(f"bad tag {item!r}: the count after ':' must be >= 1")
            tags[key] = value
    return tags


def _shell_command(entry: Entry) -> str:
    """The command for `/bin/sh -c`; another SHELL is honoured by exec'ing it explicitly."""
    shell = entry.env.get("SHELL", "/bin/sh")
    command = entry.command
    if shell and shell != "/bin/sh":
        command = f"exec {shlex.quote(shell)} -c {shlex.quote(command)}"
    return command


def entry_to_job(
    entry: Entry,
    *,
    timezone: str,
    host: str,
    agent_user: str | None = None,
    pin_node: str | None = None,
    tags: dict[str, str] | None = None,
) -> dict:
    """One Dkron job for one crontab entry, with cron's user, environment, stdin and zone."""
    name = job_name(entry, host)
    command = _shell_command(entry)
    delay = stable_delay_seconds(entry, name)
    if delay:
        command = f"sleep {delay}; {command}"
    env = dict(entry.env)
    executor_config = {
        "command": command,
        "shell": "true",
        "cwd": env.get("HOME", entry.home),
        "env": ",".join(f"{k}={v}" for k, v in env.items() if "," not in k + v),
        "env_json": json.dumps(env, separators=(",", ":"), ensure_ascii=False),
        "inherit_env": "false",  # as under cron: the job sees its crontab's env, not the agent's
    }
    if entry.user != (agent_user if agent_user is not None else current_user()):
        executor_config["su"] = entry.user
    if entry.stdin:
        executor_config["payload"] = base64.b64encode(entry.stdin.encode("utf-8")).decode()
    schedule = "@reboot" if entry.schedule == "@reboot" else f"@crontab {entry.schedule}"
    metadata = {
        "managed_by": MANAGED_BY,
        "crontab_host": host,
        "crontab_file": entry.file,
        "crontab_user": entry.user,
        "crontab_line": str(entry.line_no),
        "crontab_time": entry.written_schedule,
        "crontab_command": entry.raw_command,
    }
    metadata.update({f"crontab_{k}": v for k, v in entry.options.items()})
    if delay:
        metadata["crontab_random_delay_seconds"] = str(delay)
    job_tags: dict[str, str] = {}
    if pin_node:
        job_tags["node"] = f"{pin_node}:1"
    if tags:
        job_tags.update(tags)
    short = entry.command.strip().replace("\n", " ")
    job = {
        "name": name,
        "displayname": f"{os.path.basename(entry.file)}:{entry.line_no} {short}"[:120],
        "schedule": schedule,
        "timezone": entry.timezone or timezone,
        "owner": entry.user,
        "owner_email": entry.env.get("MAILTO", ""),
        "executor": "shell",
        "executor_config": executor_config,
        "metadata": metadata,
        "tags": job_tags,
        "concurrency": "allow",
        "retries": 0,
        "disabled": False,
    }
    return job


def env_warnings(entry: Entry) -> list[str]:
    """Why `env` alone would not carry this entry's environment faithfully."""
    return [
        f"variable {k} contains a comma: Dkron's 'env' cannot carry it; it is in 'env_json'"
        for k, v in entry.env.items()
        if "," in k + v
    ]


def host_timezone() -> str:
    """The host's IANA zone name, as cron would use it (TZ, /etc/timezone, /etc/localtime)."""
    tz = os.environ.get("TZ", "").lstrip(":")
    if tz and "/" in tz and not tz.startswith("/"):
        return tz
    try:
        with open("/etc/timezone", encoding="utf-8") as handle:
            name = handle.read().strip()
            if name:
                return name
    except OSError:
        pass
    try:
        target = os.path.realpath("/etc/localtime")
        marker = "/zoneinfo/"
        if marker in target:
            return target.split(marker, 1)[1]
    except OSError:
        pass
    return "UTC"
