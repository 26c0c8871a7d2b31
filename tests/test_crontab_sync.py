"""The agent's "replace system cron" sync: watched files and the cluster's jobs stay in step."""

from __future__ import annotations

import os

from crontab_compat.sync import CrontabSync
from crontab_compat.users import fake_lookup

USERS = fake_lookup({"root": "/root", "alice": "/home/alice"})


class MemoryStore:
    """The three job calls the sync needs, kept in memory; can fail one chosen write."""

    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}
        self.fail_name: str | None = None

    def list_jobs(self) -> list[dict]:
        return [dict(job) for job in self.jobs.values()]

    def put_job(self, job: dict) -> None:
        if job["name"] == self.fail_name:
            raise RuntimeError("injected failure")
        self.jobs[job["name"]] = dict(job)

    def delete_job(self, name: str) -> None:
        del self.jobs[name]


def layout(tmp_path):
    etc = tmp_path / "etc"
    (etc / "cron.d").mkdir(parents=True)
    spool = tmp_path / "spool" / "crontabs"
    spool.mkdir(parents=True)
    (etc / "crontab").write_text("17 * * * * root hourly\n")
    (etc / "cron.d" / "app").write_text("0 1 * * * root app-job\n")
    (spool / "alice").write_text("*/5 * * * * alice-job\n")
    (spool / "alice").chmod(0o600)  # as crontab(1) leaves it; cron refuses any other mode
    return etc, spool


def bump(path) -> None:
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))


def test_first_poll_imports_everything_pinned_to_the_node(tmp_path) -> None:
    etc, spool = layout(tmp_path)
    store = MemoryStore()
    sync = CrontabSync(
        [str(etc / "crontab"), str(etc / "cron.d"), str(spool)],
        store,
        node="web1",
        lookup=USERS,
        agent_user="root",
        timezone="UTC",
    )
    result = sync.poll()
    assert result is not None and result.outcome.ok
    commands = sorted(j["executor_config"]["command"] for j in store.jobs.values())
    assert commands == ["alice-job", "app-job", "hourly"]
    assert all(j["tags"] == {"node": "web1:1"} for j in store.jobs.values())
    alice = next(j for j in store.jobs.values() if j["metadata"]["crontab_user"] == "alice")
    assert alice["executor_config"]["su"] == "alice"
    assert sync.poll() is None  # nothing changed


def test_edits_removals_and_deleted_files(tmp_path) -> None:
    etc, spool = layout(tmp_path)
    store = MemoryStore()
    paths = [str(etc / "crontab"), str(etc / "cron.d"), str(spool)]
    sync = CrontabSync(paths, store, node="web1", lookup=USERS, agent_user="root")
    sync.poll()
    app = etc / "cron.d" / "app"
    app.write_text("0 1 * * * root app-job\n0 2 * * * root second\n")
    bump(app)
    result = sync.poll()
    assert result is not None and len(result.plan.create) == 1
    (spool / "alice").unlink()
    result = sync.poll()
    assert result is not None and [j["metadata"]["crontab_user"] for j in result.plan.delete] == [
        "alice"
    ]
    assert len(store.jobs) == 3


def test_a_broken_file_keeps_its_jobs_and_others_still_sync(tmp_path) -> None:
    etc, _ = layout(tmp_path)
    store = MemoryStore()
    logged: list[str] = []
    sync = CrontabSync(
        [str(etc / "crontab"), str(etc / "cron.d")],
        store,
        node="web1",
        lookup=USERS,
        agent_user="root",
        log=logged.append,
    )
    sync.poll()
    app = etc / "cron.d" / "app"
    app.write_text("0 1 * * * root app-job\n0 1 * * * nosuchuser x\n")
    (etc / "crontab").write_text("17 * * * * root hourly\n18 * * * * root more\n")
    bump(app)
    bump(etc / "crontab")
    result = sync.poll()
    assert result is not None and result.outcome.ok
    assert any("bad username" in line for line in logged)
    commands = sorted(j["executor_config"]["command"] for j in store.jobs.values())
    assert commands == ["app-job", "hourly", "more"]


def test_cluster_wide_jobs_have_no_node_tag(tmp_path) -> None:
    etc, _ = layout(tmp_path)
    store = MemoryStore()
    CrontabSync([str(etc / "crontab")], store, node="web1", cluster_wide=True, lookup=USERS).poll()
    (job,) = store.jobs.values()
    assert job["tags"] == {} and job["metadata"]["crontab_host"] == "web1"


def test_failed_write_is_rolled_back_and_retried_next_poll(tmp_path) -> None:
    etc, _ = layout(tmp_path)
    store = MemoryStore()
    sync = CrontabSync([str(etc / "cron.d")], store, node="web1", lookup=USERS)
    first = sync.poll()
    assert first is not None and first.outcome.ok
    (name,) = store.jobs
    app = etc / "cron.d" / "app"
    app.write_text("MAILTO=a@example.org\n0 1 * * * root app-job\n")
    bump(app)
    store.fail_name = name
    failed = sync.poll()
    assert failed is not None and not failed.outcome.ok and failed.outcome.rolled_back
    assert store.jobs[name]["owner_email"] == ""
    store.fail_name = None
    retried = sync.poll()
    assert retried is not None and retried.outcome.ok
    assert store.jobs[name]["owner_email"] == "a@example.org"
