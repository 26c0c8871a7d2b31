"""Writing jobs back as a crontab: every job whose schedule cron can express.

Imported jobs come back exactly as written (their metadata keeps the original time fields and
command). Other shell jobs are included when their schedule has a crontab form: a Dkron
descriptor such as `@daily`, or a six-field spec whose seconds field is `0`. The rest are listed
in comments at the end so nothing disappears silently.
"""

from __future__ import annotations

import base64
import binascii
import json

from crontab_compat.command import join_command
from crontab_compat.convert import host_timezone
from crontab_compat.schedule import KEYWORDS, CronSchedule
from crontab_compat.users import current_user

_FORCED = ("LOGNAME", "USER", "HOME")
_CRON_DEFAULTS = {"SHELL": "/bin/sh", "PATH": "/usr/bin:/bin"}


def _time_spec(job: dict) -> str | None:
    schedule = (job.get("schedule") or "").strip()
    meta = job.get("metadata") or {}
    if schedule == "@reboot":
        return "@reboot"
    if schedule.startswith("@crontab "):
        fields = schedule[len("@crontab ") :].strip()
        written = meta.get("crontab_time", "")
        if written in KEYWORDS and KEYWORDS[written] == fields:
            return written
        return fields
    if schedule in KEYWORDS:
        return schedule
    parts = schedule.split()
    if len(parts) == 6 and parts[0] in ("0", "00"):
        candidate = " ".join(parts[1:])
        try:
            CronSchedule(candidate, _utc())
        except ValueError:
            return None
        return candidate
    return None


def _utc():
    from datetime import UTC

    return UTC


def _env(config: dict) -> dict[str, str]:
    if config.get("env_json"):
        try:
            loaded = json.loads(config["env_json"])
            if isinstance(loaded, dict):
                return {str(k): str(v) for k, v in loaded.items()}
        except ValueError:
            pass
    env: dict[str, str] = {}
    for item in filter(None, (config.get("env") or "").split(",")):
        key, _, value = item.partition("=")
        env[key] = value
    return env


def _command(job: dict, config: dict) -> str:
    meta = job.get("metadata") or {}
    if "crontab_command" in meta:
        return meta["crontab_command"]
    stdin = None
    if config.get("payload"):
        try:
            stdin = base64.b64decode(config["payload"]).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            stdin = None
    return join_command(config.get("command", ""), stdin)


def _quote(value: str) -> str:
    if value == "" or value != value.strip() or value[:1] in "'\"":
        quote = "'" if '"' in value else '"'
        return f"{quote}{value}{quote}"
    return value


def export_crontab(jobs: list[dict], user: str | None = None) -> tuple[str, list[str]]:
    """Return (crontab text, names of skipped jobs). With `user`, a user crontab of theirs."""
    out = ["# Written by `dkron crontab export`."]
    if user is None:
        out.append("# System crontab format: minute hour day month weekday user command")
    skipped: list[str] = []
    current_env: dict[str, str] = {}
    current_zone = ""
    for job in sorted(jobs, key=lambda j: j.get("name", "")):
        config = job.get("executor_config") or {}
        spec = _time_spec(job) if job.get("executor") == "shell" else None
        meta = job.get("metadata") or {}
        job_user = config.get("su") or meta.get("crontab_user") or current_user()
        job_user = job_user.split(":")[0]
        if spec is None:
            skipped.append(f"{job.get('name')} (schedule {job.get('schedule')!r})")
            continue
        if user is not None and job_user != user:
            continue
        env = {k: v for k, v in _env(config).items() if k not in _FORCED}
        env["MAILTO"] = job.get("owner_email", "") or env.get("MAILTO", "")
        for key in current_env:
            env.setdefault(key, _CRON_DEFAULTS.get(key, ""))
        for key, value in env.items():
            if current_env.get(key) != value:
                out.append(f"{key}={_quote(value)}")
        current_env = env
        zone = job.get("timezone") or host_timezone()
        if zone != current_zone and spec != "@reboot":
            out.append(f"# jobs below run in {zone} (cronie: CRON_TZ)")
            out.append(f"CRON_TZ={zone}")
            current_zone = zone
        who = "" if user is not None else f"{job_user} "
        out.append(f"{spec} {who}{_command(job, config)}")
    for name in skipped:
        out.append(f"# not exported, no crontab form: {name}")
    return "\n".join(out) + "\n", skipped
