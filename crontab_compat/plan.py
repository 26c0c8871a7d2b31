"""The import plan: which jobs to create, update and delete so the cluster matches the files.

A job belongs to a file when its metadata names that host and file (`crontab_host`,
`crontab_file`). Re-importing a file updates its jobs in place (names are stable), and a job
whose line has disappeared is deleted. A file that could not be used at all (unreadable, rejected
by Debian's whole-file rule) keeps its existing jobs untouched. A file refused for its owner or
mode (only judged when `owners` is given, as `--crontab-sync` does) loses its jobs: cron would
not run them either. In strict mode (the default for the debian dialect) any error means nothing
is applied.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from crontab_compat.convert import MANAGED_BY, entry_to_job, env_warnings, host_timezone
from crontab_compat.parser import Issue, ParsedCrontab, parse_crontab
from crontab_compat.schedule import CronSchedule
from crontab_compat.sources import collect_sources, read_source
from crontab_compat.users import UserLookup, system_user_lookup

if TYPE_CHECKING:
    from crontab_compat.trust import Refusal
    from dkron_pkg.osdeps import FileOwners

# Fields the server maintains; they are not part of what an import decides.
SERVER_FIELDS = (
    "id",
    "success_count",
    "error_count",
    "last_success",
    "last_error",
    "status",
    "next",
    "dependent_jobs",
)


@dataclass
class Plan:
    create: list[dict] = field(default_factory=list)
    update: list[dict] = field(default_factory=list)
    delete: list[dict] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    unchanged: list[dict] = field(default_factory=list)
    previous: dict[str, dict] = field(default_factory=dict)  # name -> job before update
    strict: bool = True
    refused: list[Refusal] = field(default_factory=list)  # files cron would not trust

    @property
    def blocked(self) -> bool:
        """True when strict mode forbids applying anything."""
        return self.strict and bool(self.errors)

    @property
    def changes(self) -> int:
        return len(self.create) + len(self.update) + len(self.delete)


def user_fields(job: dict) -> dict:
    """The job without server-maintained fields, as it would be POSTed."""
    return {k: v for k, v in job.items() if k not in SERVER_FIELDS}


def _differs(new: dict, old: dict) -> bool:
    for key, value in new.items():
        current = old.get(key)
        if isinstance(value, dict) or isinstance(current, dict):
            if (value or {}) != (current or {}):
                return True
        elif value != current:
            return True
    return False


@dataclass(frozen=True)
class ImportOptions:
    """How entries become jobs: where they come from and where they may run."""

    host: str
    timezone: str
    pin_node: str | None = None
    tags: dict[str, str] | None = None
    agent_user: str | None = None


def _options(
    host: str | None,
    pin_node: str | None,
    tags: dict[str, str] | None,
    timezone: str | None,
    agent_user: str | None,
) -> ImportOptions:
    return ImportOptions(
        host=host or pin_node or socket.gethostname(),
        timezone=timezone or host_timezone(),
        pin_node=pin_node,
        tags=tags,
        agent_user=agent_user,
    )


def plan_import(
    files: list[str],
    existing_jobs: list[dict],
    dialect: str = "debian",
    *,
    user: str | None = None,
    host: str | None = None,
    pin_node: str | None = None,
    tags: dict[str, str] | None = None,
    timezone: str | None = None,
    lookup: UserLookup = system_user_lookup,
    agent_user: str | None = None,
    strict: bool | None = None,
    owners: FileOwners | None = None,
    other_owner: str | None = None,
) -> Plan:
    """Compare the crontab files with the cluster's jobs and say what must change; with
    `owners`, files are also judged by owner and mode as cron judges them. `other_owner` owns
    files outside cron's own places (see `sources`); None reads them as system crontabs."""
    sources, errors, warnings = collect_sources(files, user, dialect, other_owner)
    parsed = [read_source(source, dialect, lookup, owners) for source in sources]
    plan = Plan(strict=(dialect == "debian") if strict is None else strict)
    plan.errors.extend(errors)
    plan.warnings.extend(warnings)
    options = _options(host, pin_node, tags, timezone, agent_user)
    return _plan_parsed(plan, parsed, existing_jobs, options)


def plan_text_import(
    text: str,
    source_name: str,
    existing_jobs: list[dict],
    dialect: str = "debian",
    *,
    user: str | None = None,
    host: str | None = None,
    pin_node: str | None = None,
    tags: dict[str, str] | None = None,
    timezone: str | None = None,
    lookup: UserLookup = system_user_lookup,
    agent_user: str | None = None,
    strict: bool | None = None,
) -> Plan:
    """The same plan for crontab text (e.g. pasted in the UI); `user` makes it a user crontab."""
    parsed = parse_crontab(
        text, source_name, system=user is None, owner=user, dialect=dialect, lookup=lookup
    )
    plan = Plan(strict=(dialect == "debian") if strict is None else strict)
    options = _options(host, pin_node, tags, timezone, agent_user)
    return _plan_parsed(plan, [parsed], existing_jobs, options)


def _plan_parsed(
    plan: Plan, files: list[ParsedCrontab], existing_jobs: list[dict], options: ImportOptions
) -> Plan:
    wanted: dict[str, dict] = {}
    covered_files: set[str] = set()
    seen_messages: set[str] = set()
    for parsed in files:
        if parsed.refusal is not None:
            plan.refused.append(parsed.refusal)
            covered_files.add(parsed.file)  # wanted nothing: its jobs are deleted
            continue
        plan.errors.extend(parsed.errors)
        plan.warnings.extend(parsed.warnings)
        if parsed.rejected:
            if parsed.errors and not parsed.fatal:
                plan.errors.append(
                    Issue(parsed.file, 0, "file rejected", "Debian cron ignores the whole file")
                )
            continue
        covered_files.add(parsed.file)
        for entry in parsed.entries:
            job = entry_to_job(
                entry,
                timezone=options.timezone,
                host=options.host,
                agent_user=options.agent_user,
                pin_node=options.pin_node,
                tags=options.tags,
            )
            for message in env_warnings(entry):
                if message not in seen_messages:
                    seen_messages.add(message)
                    plan.warnings.append(
                        Issue(entry.file, entry.line_no, "comma in value", message)
                    )
            wanted[job["name"]] = job
    by_name = {job.get("name"): job for job in existing_jobs}
    for name, job in wanted.items():
        old = by_name.get(name)
        if old is None:
            plan.create.append(job)
        elif _differs(job, old):
            plan.update.append(job)
            plan.previous[name] = old
        else:
            plan.unchanged.append(job)
    for job in existing_jobs:
        meta = job.get("metadata") or {}
        if (
            meta.get("managed_by") == MANAGED_BY
            and meta.get("crontab_host") == options.host
            and meta.get("crontab_file") in covered_files
            and job.get("name") not in wanted
        ):
            plan.delete.append(job)
    return plan


def describe_job_schedule(job: dict) -> str:
    """The job's schedule in plain words (crontab schedules in their zone)."""
    schedule = job.get("schedule", "")
    if schedule == "@reboot":
        return "once after each boot of the host"
    if schedule.startswith("@crontab "):
        try:
            return CronSchedule(
                schedule[len("@crontab ") :], ZoneInfo(job.get("timezone") or "UTC")
            ).describe()
        except (ValueError, KeyError) as exc:
            return f"{schedule} ({exc})"
    return schedule


def format_plan(plan: Plan, applied: bool = False) -> str:
    """Human-readable plan: one block per change with the schedule in plain words."""
    lines: list[str] = []
    for issue in plan.errors:
        lines.append(f"error: {issue}")
    for issue in plan.warnings:
        lines.append(f"warning: {issue}")
    sections = (("create", plan.create), ("update", plan.update), ("delete", plan.delete))
    for verb, jobs in sections:
        for job in jobs:
            meta = job.get("metadata") or {}
            origin = f"{meta.get('crontab_file', '?')}:{meta.get('crontab_line', '?')}"
            command = (job.get("executor_config") or {}).get("command", "")
            lines.append(f"{verb} {job.get('name')}  ({origin}, user {meta.get('crontab_user')})")
            lines.append(f"    runs {describe_job_schedule(job)}")
            lines.append(f"    command: {command}")
    summary = (
        f"{len(plan.create)} to create, {len(plan.update)} to update, "
        f"{len(plan.delete)} to delete, {len(plan.unchanged)} unchanged"
    )
    if plan.blocked:
        summary += "; nothing applied because of the errors above (strict mode)"
    elif applied:
        summary += "; applied"
    lines.append(summary)
    return "\n".join(lines)


def plan_to_dict(plan: Plan) -> dict:
    """The plan as JSON-ready data (for an API endpoint or the UI's preview)."""

    def change(job: dict) -> dict:
        return {"job": job, "schedule_words": describe_job_schedule(job)}

    return {
        "create": [change(job) for job in plan.create],
        "update": [change(job) for job in plan.update],
        "delete": [change(job) for job in plan.delete],
        "unchanged": len(plan.unchanged),
        "errors": [issue_to_dict(issue) for issue in plan.errors],
        "warnings": [issue_to_dict(issue) for issue in plan.warnings],
        "blocked": plan.blocked,
    }


def issue_to_dict(issue: Issue) -> dict:
    return {
        "file": issue.file,
        "line": issue.line,
        "word": issue.word,
        "detail": issue.detail,
        "text": str(issue),
    }
