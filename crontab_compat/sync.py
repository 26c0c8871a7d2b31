"""Keeping a host's crontab files and the cluster's jobs in step (the agent's "replace cron" mode).

The agent hands this the paths it should own (typically `/etc/crontab`, `/etc/cron.d` and
`/var/spool/cron/crontabs`). `poll()` looks at sizes and modification times, and when anything
changed it re-imports all paths: new lines become jobs, edited lines update them, removed lines
and removed files delete them. By default each job is pinned to this node (tag
`node=<name>:1`; the agent must carry the tag `node=<its name>`); `cluster_wide=True` leaves
the jobs untagged so any node may run them. Files are read in lenient mode, file by file: a file
cron would reject is reported and keeps the jobs it had, so one typo does not stop everything.
Before that, every file is judged by owner and mode as cron judges it (trust.py): a file cron
would not trust (say, writable by others, or owned by someone else) is refused, reported
through `on_refused`, and its jobs are deleted, since cron would not run them either. A change of
owner or mode counts as a change, so fixing the file brings its jobs back.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from crontab_compat.apply import ApplyResult, apply_plan
from crontab_compat.convert import MANAGED_BY
from crontab_compat.parser import Issue
from crontab_compat.plan import Plan, plan_import
from crontab_compat.sources import collect_sources
from crontab_compat.trust import Refusal
from crontab_compat.users import UserLookup, system_user_lookup
from dkron_pkg.osdeps import HOST_FILES, FileOwners

Fingerprint = dict[str, tuple[int, ...]]


class JobStore(Protocol):
    def list_jobs(self) -> list[dict]: ...

    def put_job(self, job: dict) -> None: ...

    def delete_job(self, name: str) -> None: ...


@dataclass
class SyncResult:
    plan: Plan
    outcome: ApplyResult
    errors: list[Issue] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)


def _under(path: str, roots: list[str]) -> bool:
    for root in roots:
        if path == root or path.startswith(root.rstrip("/") + "/"):
            return True
    return False


class CrontabSync:
    def __init__(
        self,
        paths: list[str],
        store: JobStore,
        *,
        node: str,
        dialect: str = "debian",
        cluster_wide: bool = False,
        timezone: str | None = None,
        lookup: UserLookup = system_user_lookup,
        agent_user: str | None = None,
        log: Callable[[str], None] = lambda message: None,
        on_refused: Callable[[Refusal], None] | None = None,
        owners: FileOwners = HOST_FILES,
    ) -> None:
        self.paths = [os.path.abspath(p) for p in paths]
        self.store = store
        self.node = node
        self.dialect = dialect
        self.cluster_wide = cluster_wide
        self.timezone = timezone
        self.lookup = lookup
        self.agent_user = agent_user
        self.log = log
        self.on_refused = on_refused or (
            lambda refusal: self.log(f"crontab sync: refused {refusal}; its jobs do not run")
        )
        self.owners = owners
        self._last: Fingerprint | None = None

    def fingerprint(self) -> Fingerprint:
        """Size, mtime, inode, owner, mode and links of every crontab file under the watched
        paths (and owner and mode of a symbolic link to one)."""
        sources, _, _ = collect_sources(
            [p for p in self.paths if os.path.exists(p)], None, self.dialect
        )
        result: Fingerprint = {}
        for source in sources:
            try:
                info = os.stat(source.path)
                link = os.lstat(source.path)
            except OSError:
                continue
            result[source.path] = (
                info.st_mtime_ns,
                info.st_size,
                info.st_ino,
                info.st_uid,
                info.st_mode,
                info.st_nlink,
                link.st_uid,
                link.st_mode,
            )
        return result

    def poll(self) -> SyncResult | None:
        """Sync when any file changed since the last sync (always on the first call)."""
        current = self.fingerprint()
        if current == self._last:
            return None
        result = self.sync(current)
        if result.outcome.ok:
            self._last = current
        return result

    def sync(self, current: Fingerprint | None = None) -> SyncResult:
        files = sorted(current if current is not None else self.fingerprint())
        existing = self.store.list_jobs()
        plan = plan_import(
            files,
            existing,
            self.dialect,
            host=self.node,
            pin_node=None if self.cluster_wide else self.node,
            timezone=self.timezone,
            lookup=self.lookup,
            agent_user=self.agent_user,
            strict=False,
            owners=self.owners,
        )
        plan.delete.extend(self._vanished(existing, set(files), plan))
        outcome = apply_plan(plan, self.store)
        for refusal in plan.refused:
            self.on_refused(refusal)
        for issue in plan.errors:
            self.log(f"crontab sync: {issue}")
        if plan.changes or not outcome.ok:
            self.log(
                f"crontab sync: {len(plan.create)} created, {len(plan.update)} updated, "
                f"{len(plan.delete)} deleted; {outcome.message()}"
            )
        return SyncResult(plan, outcome, list(plan.errors), list(plan.refused))

    def _vanished(self, existing: list[dict], files: set[str], plan: Plan) -> list[dict]:
        """Jobs of this node whose file under a watched path no longer exists."""
        already = {job.get("name") for job in plan.delete}
        gone = []
        for job in existing:
            meta = job.get("metadata") or {}
            path = meta.get("crontab_file", "")
            if (
                meta.get("managed_by") == MANAGED_BY
                and meta.get("crontab_host") == self.node
                and _under(path, self.paths)
                and path not in files
                and not os.path.exists(path)
                and job.get("name") not in already
            ):
                gone.append(job)
        return gone
