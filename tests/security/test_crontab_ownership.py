"""Finding 4: `--crontab-sync` imported files cron refuses, and ran them as root.

Each file below is one Debian cron will not load ("WRONG FILE OWNER", "INSECURE MODE"...).
The sync now refuses it the same way: no job, a warning naming the file and cron's reason,
the dkron_crontab_files_refused_total counter, and the same verdict from `crontab check`.

Run as root (the usual case here) the files really belong to nobody; otherwise a fake owner
lookup, handed to the code where it asks the OS (osdeps.FileOwners), says so.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import replace
from pathlib import Path

import pytest

from crontab_compat.cli import main as crontab_main
from crontab_compat.sync import CrontabSync
from crontab_compat.users import fake_lookup
from dkron_pkg import crontab_bridge, metrics, osdeps

pytestmark = pytest.mark.skipif(osdeps.IS_WINDOWS, reason="Unix owners and modes")

AS_ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
NOBODY = 65534 if os.geteuid() != 65534 else 65533  # any account but ours and root
USERS = fake_lookup({"root": "/root", "nobody": "/nonexistent"})


class FakeOwners(osdeps.FileOwners):
    """The host's answers, except that chosen paths belong to another account."""

    def __init__(self) -> None:
        self.content: dict[str, int] = {}  # what is read through the path
        self.link: dict[str, int] = {}  # the path itself (a symlink's own owner)

    def facts(self, path: str, *, fd: int | None = None, follow: bool = True) -> osdeps.FileFacts:
        real = super().facts(path, fd=fd, follow=follow)
        reads_content = fd is not None or follow or not real.is_symlink
        table = self.content if reads_content else self.link
        return replace(real, uid=table[path]) if path in table else real


class Host:
    """A host's /etc/crontab, /etc/cron.d and spool, under a temporary directory."""

    def __init__(self, root: Path) -> None:
        self.cron_d = root / "etc" / "cron.d"
        self.spool = root / "var" / "spool" / "cron" / "crontabs"
        self.elsewhere = root / "home" / "nobody"
        for folder in (self.cron_d, self.spool, self.elsewhere):
            folder.mkdir(parents=True)
        self.owners = osdeps.HOST_FILES if AS_ROOT else FakeOwners()

    @property
    def paths(self) -> list[str]:
        return [str(self.cron_d), str(self.spool)]

    def give_to_nobody(self, path: Path, *, link: bool = False) -> None:
        if AS_ROOT:
            (os.lchown if link else os.chown)(path, NOBODY, NOBODY)
        else:
            assert isinstance(self.owners, FakeOwners)
            (self.owners.link if link else self.owners.content)[str(path)] = NOBODY

    def write(self, path: Path, text: str, mode: int) -> Path:
        path.write_text(text)
        path.chmod(mode)
        return path


class Store:
    def __init__(self) -> None:
        self.jobs: dict[str, dict] = {}

    def list_jobs(self) -> list[dict]:
        return list(self.jobs.values())

    def put_job(self, job: dict) -> None:
        self.jobs[job["name"]] = job

    def delete_job(self, name: str) -> None:
        del self.jobs[name]


def sync_once(host: Host, store: Store) -> CrontabSync:
    sync = CrontabSync(
        host.paths,
        store,
        node="web1",
        lookup=USERS,
        agent_user="root",
        timezone="UTC",
        on_refused=crontab_bridge.report_refused,
        owners=host.owners,
    )
    result = sync.poll()
    assert result is not None and result.outcome.ok
    return sync


def commands(store: Store) -> list[str]:
    return sorted(job["executor_config"]["command"] for job in store.jobs.values())


def check(host: Host, *paths: str) -> tuple[int, str]:
    out = io.StringIO()
    code = crontab_main(["check", "--installed", *paths], stdout=out, owners=host.owners)
    return code, out.getvalue()


def assert_refused(
    host: Host, path: Path, word: str, reason: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Synced, the file gives no job, a warning and a count; `crontab check` agrees."""
    before = metrics.CRONTAB_FILES_REFUSED.value(reason=reason)
    store = Store()
    with caplog.at_level(logging.WARNING, logger="dkron.crontab"):
        sync_once(host, store)
    assert commands(store) == ["trusted"], "the refused file's job was imported"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"refused {path}: {word}" in line for line in warnings), warnings
    assert metrics.CRONTAB_FILES_REFUSED.value(reason=reason) == before + 1
    code, out = check(host, *host.paths)
    assert code == 1 and f"error: {path}: {word}" in out, out


@pytest.fixture
def host(tmp_path: Path) -> Host:
    host = Host(tmp_path)
    host.write(host.cron_d / "trusted", "0 1 * * * root trusted\n", 0o644)
    return host


def test_world_writable_cron_d_file_owned_by_nobody_is_refused(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    evil = host.write(host.cron_d / "evil", "* * * * * root evil\n", 0o666)
    host.give_to_nobody(evil)
    assert_refused(host, evil, "WRONG FILE OWNER", "wrong_owner", caplog)


def test_cron_d_symlink_to_a_file_owned_by_nobody_is_refused(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    target = host.write(host.elsewhere / "tab", "* * * * * root evil\n", 0o644)
    host.give_to_nobody(target)
    link = host.cron_d / "linked"
    link.symlink_to(target)
    if not AS_ROOT:
        host.give_to_nobody(link)  # the fake says what is read through the link is nobody's
    assert_refused(host, link, "WRONG FILE OWNER", "wrong_owner", caplog)


def test_spool_file_named_root_owned_by_nobody_is_refused(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    forged = host.write(host.spool / "root", "* * * * * evil\n", 0o600)
    host.give_to_nobody(forged)
    assert_refused(host, forged, "WRONG FILE OWNER", "wrong_owner", caplog)


@pytest.mark.parametrize(
    ("where", "mode", "word"),
    [
        ("cron.d", 0o664, "INSECURE MODE (group/other writable)"),
        ("spool", 0o644, "INSECURE MODE (mode 0600 expected)"),
    ],
)
def test_a_file_of_a_trusted_owner_with_an_insecure_mode_is_refused(
    host: Host, caplog: pytest.LogCaptureFixture, where: str, mode: int, word: str
) -> None:
    folder = host.cron_d if where == "cron.d" else host.spool
    text = "* * * * * root loose\n" if where == "cron.d" else "* * * * * loose\n"
    loose = host.write(folder / "root", text, mode)
    assert_refused(host, loose, word, "insecure_mode", caplog)


def test_a_symlink_owned_by_nobody_is_not_followed(
    host: Host, caplog: pytest.LogCaptureFixture
) -> None:
    target = host.write(host.elsewhere / "tab", "* * * * * root evil\n", 0o644)
    link = host.cron_d / "linked"
    link.symlink_to(target)
    host.give_to_nobody(link, link=True)
    assert_refused(host, link, "WRONG SYMLINK OWNER", "symlink", caplog)


def test_crontab_check_gives_the_verdict_of_the_sync(host: Host) -> None:
    evil = host.write(host.cron_d / "evil", "* * * * * root evil\n", 0o644)
    host.give_to_nobody(evil)
    host.write(host.spool / "root", "* * * * * loose\n", 0o640)
    logged: list[str] = []
    store = Store()
    sync = CrontabSync(
        host.paths, store, node="web1", lookup=USERS, log=logged.append, owners=host.owners
    )
    result = sync.poll()
    assert result is not None
    from_sync = sorted(str(refusal) for refusal in result.refused)
    code, out = check(host, *host.paths)
    from_check = sorted(line.removeprefix("error: ") for line in out.splitlines())[: len(from_sync)]
    assert code == 1 and len(from_sync) == 2
    assert from_check == from_sync, out
    assert all(any(verdict in line for line in logged) for verdict in from_sync), logged


def test_fixing_the_mode_brings_the_jobs_back_and_breaking_it_removes_them(host: Host) -> None:
    store = Store()
    sync = sync_once(host, store)
    assert commands(store) == ["trusted"]
    (host.cron_d / "trusted").chmod(0o666)  # a chmod alone changes no content or mtime
    assert sync.poll() is not None and commands(store) == []
    (host.cron_d / "trusted").chmod(0o644)
    assert sync.poll() is not None and commands(store) == ["trusted"]
