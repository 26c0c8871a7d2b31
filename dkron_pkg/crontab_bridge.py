"""What the agent does with crontabs: API import plans, `--crontab-sync`, `@reboot` jobs.

The parsing and planning live in `crontab_compat`; this module connects them to a running
agent's job store through the same validation rules the API applies.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING, Any

from dkron_pkg import metrics
from dkron_pkg.jobs import JobError, normalize_job, public_job, validate_job_semantics

if TYPE_CHECKING:
    from crontab_compat.trust import Refusal
    from dkron_pkg.backend import CrontabHost

log = logging.getLogger("dkron.crontab")
CRONTAB_POLL_SECONDS = 5.0


def crontab_import(
    agent: CrontabHost, text: str, dialect: str, user: str, apply: bool, source: str = "ui-upload"
) -> dict:
    """Plan (and with `apply`, carry out) the import of crontab text; see crontab_compat."""
    from crontab_compat.apply import apply_plan
    from crontab_compat.plan import plan_text_import, plan_to_dict

    if dialect not in ("debian", "cronie"):
        return {
            "errors": [f'unknown dialect "{dialect}": use debian or cronie'],
            "blocked": True,
        }
    existing = [public_job(j) for j in agent.store.list_jobs()]
    plan = plan_text_import(
        text, source, existing, dialect, user=user or None, host=agent.node_name
    )
    raw = plan_to_dict(plan)
    out: dict[str, Any] = {
        key: [{**c["job"], "schedule_words": c["schedule_words"]} for c in raw[key]]
        for key in ("create", "update", "delete")
    }
    out["unchanged"] = raw["unchanged"]
    out["errors"] = [e["text"] for e in raw["errors"]]
    out["warnings"] = [w["text"] for w in raw["warnings"]]
    out["error_details"] = raw["errors"]
    out["blocked"] = raw["blocked"]
    if apply and not plan.blocked:
        result = apply_plan(plan, LocalJobWriter(agent))
        out["applied"] = result.ok
        out["message"] = result.message()
    return out


def start_crontab_sync(agent: CrontabHost) -> None:
    """Own the host's crontab files (`--crontab-sync`): re-import them when they change."""
    paths = list(getattr(agent.config, "crontab_sync", []) or [])
    if not paths:
        return
    from crontab_compat.sync import CrontabSync

    sync = CrontabSync(
        paths,
        LocalJobWriter(agent),
        node=agent.node_name,
        cluster_wide=bool(getattr(agent.config, "crontab_cluster_wide", False)),
        log=log.info,
        on_refused=report_refused,
    )

    def loop() -> None:
        while not agent.stopping.is_set():
            try:
                sync.poll()
            except Exception:
                log.exception("crontab sync failed; retrying")
            agent.stopping.wait(CRONTAB_POLL_SECONDS)

    agent.spawn(loop, "crontab-sync")


def report_refused(refusal: Refusal) -> None:
    """A crontab file the sync will not load: a warning naming it and why, and the metric."""
    log.warning("crontab sync: refused %s; its jobs do not run", refusal)
    metrics.crontab_file_refused(refusal.reason)


def run_reboot_jobs(agent: CrontabHost) -> None:
    """`@reboot` jobs run once per boot of the host, not once per agent start."""
    from crontab_compat.reboot import claim_reboot_run

    state_dir = os.path.join(agent.data_dir, "reboot")
    for job in agent.store.list_jobs():
        if job.get("schedule", "").strip() != "@reboot" or job.get("disabled"):
            continue
        try:
            if claim_reboot_run(job["name"], state_dir):
                agent.run_cause(job["name"], "dependent")
        except OSError as e:
            log.warning("cannot decide @reboot run of %s: %s", job["name"], e)


class LocalJobWriter:
    """The job store seen through the API's rules, for the crontab importer and sync."""

    def __init__(self, agent: CrontabHost):
        self.agent = agent

    def list_jobs(self) -> list[dict]:
        return [public_job(j) for j in self.agent.store.list_jobs()]

    def put_job(self, job: dict) -> None:
        try:
            normalized = normalize_job(job)
            validate_job_semantics(normalized)
        except JobError as e:
            raise ValueError(str(e)) from None
        result = self.agent.submit_job(normalized)
        if not result.ok:
            raise ValueError(result.error)

    def delete_job(self, name: str) -> None:
        result = self.agent.delete_job(name)
        if not result.ok:
            raise ValueError(result.error)
