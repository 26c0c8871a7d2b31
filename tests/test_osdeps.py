"""Platform helpers: process groups, tree memory, su, signals and the data-dir lock."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dkron_pkg import osdeps

pytestmark = pytest.mark.skipif(osdeps.IS_WINDOWS, reason="Unix process and signal behaviour")
ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
REPO = str(Path(__file__).resolve().parent.parent)


def spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        **osdeps.new_group_popen_kwargs(),
    )


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not osdeps.pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


CHILD_WITH_GRANDCHILD = (
    "import subprocess, sys, time\n"
    "g = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
    "print(g.pid, flush=True)\n"
    "time.sleep(60)\n"
)


def test_shell_argv_uses_bin_sh() -> None:
    assert osdeps.shell_argv("echo a | wc") == ["/bin/sh", "-c", "echo a | wc"]


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (0, "exit status 0"),
        (2, "exit status 2"),
        (-signal.SIGKILL, "signal: killed"),
        (-signal.SIGTERM, "signal: terminated"),
        (-signal.SIGSEGV, "signal: segmentation fault"),
    ],
)
def test_exit_status_text_matches_go(code: int, text: str) -> None:
    assert osdeps.exit_status_text(code) == text


def test_new_group_puts_the_child_in_its_own_process_group() -> None:
    proc = spawn("import os; print(os.getpgid(0), flush=True)")
    assert proc.stdout is not None
    assert int(proc.stdout.read()) == proc.pid != os.getpgid(0)
    proc.wait()


def test_tree_covers_grandchildren_and_kill_group_kills_them_all() -> None:
    proc = spawn(CHILD_WITH_GRANDCHILD)
    assert proc.stdout is not None
    grandchild = int(proc.stdout.readline())
    members = osdeps.tree_pids(proc.pid, osdeps.process_table())
    assert {proc.pid, grandchild} <= members
    assert osdeps.kill_group(proc)
    assert proc.wait(5) == -signal.SIGKILL
    assert wait_gone(grandchild)


def test_tree_rss_counts_the_memory_a_child_allocates() -> None:
    proc = spawn("a = b'x' * (80 << 20); print('ready', flush=True); import time; time.sleep(60)")
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == b"ready"
        rss = osdeps.tree_rss_bytes(proc.pid)
        assert rss >= 80 << 20
        assert osdeps.trees_rss_bytes([proc.pid, os.getpid()])[proc.pid] == pytest.approx(
            rss, rel=0.2
        )
    finally:
        osdeps.kill_group(proc)
        proc.wait(5)


def test_rss_of_a_finished_pid_is_zero() -> None:
    proc = spawn("pass")
    proc.wait(5)
    assert osdeps.tree_rss_bytes(proc.pid) == 0


def test_pid_alive_tracks_a_process() -> None:
    proc = spawn("import time; time.sleep(60)")
    assert osdeps.pid_alive(proc.pid)
    proc.kill()
    proc.wait(5)
    assert not osdeps.pid_alive(proc.pid)


@pytest.mark.parametrize("spec", ["", ":", "a:", ":b", "a:b:c"])
def test_bad_su_specs_are_rejected(spec: str) -> None:
    with pytest.raises(osdeps.SuError, match="expected user or user:group"):
        osdeps.parse_su(spec)


def test_su_spec_parts() -> None:
    assert osdeps.parse_su("app") == ("app", "")
    assert osdeps.parse_su("app:staff") == ("app", "staff")


def test_unknown_user_and_group_are_named() -> None:
    with pytest.raises(osdeps.SuError, match='unknown user "no-such-user-xyz"'):
        osdeps.resolve_su("no-such-user-xyz")
    with pytest.raises(osdeps.SuError, match='unknown group "no-such-group-xyz"'):
        osdeps.resolve_su("root:no-such-group-xyz")


@pytest.mark.skipif(not ROOT, reason="switching users needs root")
def test_root_resolves_nobody_and_builds_popen_credentials() -> None:
    import pwd

    entry = pwd.getpwnam("nobody")
    creds = osdeps.resolve_su("nobody")
    assert (creds.uid, creds.gid) == (entry.pw_uid, entry.pw_gid)
    kwargs = osdeps.credentials_popen_kwargs(creds)
    assert kwargs == {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def test_a_non_root_agent_gets_a_clear_su_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(osdeps.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(osdeps.os, "getegid", lambda: 1000)
    with pytest.raises(
        osdeps.SuError, match=r"needs the agent to run as root \(it runs as uid 1000\)"
    ):
        osdeps.resolve_su("root")


def test_su_as_the_current_user_needs_no_switch() -> None:
    import pwd

    me = pwd.getpwuid(os.geteuid()).pw_name
    creds = osdeps.resolve_su(me)
    if creds.gid == os.getegid():
        assert osdeps.credentials_popen_kwargs(creds) == {}


def test_signal_handlers_route_term_and_hup() -> None:
    seen: list[str] = []
    saved = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        installed = osdeps.install_signal_handlers(
            lambda: seen.append("term"), lambda: seen.append("reload")
        )
        assert installed == ["SIGTERM", "SIGINT", "SIGHUP"]
        os.kill(os.getpid(), signal.SIGHUP)
        os.kill(os.getpid(), signal.SIGTERM)
        end = time.monotonic() + 5
        while len(seen) < 2 and time.monotonic() < end:
            time.sleep(0.01)
    finally:
        for signum, handler in saved.items():
            signal.signal(signum, handler)
    assert seen == ["reload", "term"]


def test_signal_handlers_can_run_inside_an_asyncio_loop() -> None:
    async def main() -> list[str]:
        loop = asyncio.get_running_loop()
        seen: list[str] = []
        done = asyncio.Event()

        def reload() -> None:
            seen.append("reload")
            done.set()

        osdeps.install_signal_handlers(lambda: seen.append("term"), reload, loop=loop)
        try:
            os.kill(os.getpid(), signal.SIGHUP)
            await asyncio.wait_for(done.wait(), 5)
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
                loop.remove_signal_handler(signum)
        return seen

    assert asyncio.run(main()) == ["reload"]


def test_lock_file_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    path = str(tmp_path / "LOCK")
    lock = osdeps.lock_file(path)
    try:
        assert Path(path).read_text() == str(os.getpid())
        with pytest.raises(osdeps.LockedError, match=f"locked by pid {os.getpid()}"):
            osdeps.lock_file(path)
        code = (
            "import sys\n"
            "from dkron_pkg import osdeps\n"
            "try:\n"
            f"    osdeps.lock_file({path!r})\n"
            "except osdeps.LockedError as exc:\n"
            "    print(exc)\n"
        )
        out = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout
        assert "is another agent using this data dir?" in out
    finally:
        lock.release()
    with osdeps.lock_file(path) as again:
        assert again.path == path
    lock.release()  # a second release is harmless


def test_lock_is_freed_when_the_holder_dies(tmp_path: Path) -> None:
    path = str(tmp_path / "LOCK")
    code = (
        "from dkron_pkg import osdeps\n"
        f"held = osdeps.lock_file({path!r})\n"
        "print('locked', flush=True)\n"
        "import time; time.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(osdeps.LockedError):
            osdeps.lock_file(path)
    finally:
        holder.kill()
        holder.wait(5)
    osdeps.lock_file(path).release()


@pytest.mark.skipif(shutil.which("ps") is None, reason="the ps fallback needs ps")
def test_ps_fallback_agrees_with_proc_about_this_process() -> None:
    table = osdeps._ps_table()
    ppid, pgid, rss, _state = table[os.getpid()]
    assert (ppid, pgid) == (os.getppid(), os.getpgid(0))
    assert rss > 0


REPO = Path(__file__).resolve().parent.parent
_RSS_AFTER_BIG_BUFFERS = """
import sys
sys.path.insert(0, sys.argv[1])
from dkron_pkg import osdeps
if sys.argv[2] == "tuned":
    assert osdeps.tune_memory()
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
base = rss_mb()
for size_mb in (30, 20, 25, 30):  # snapshot-sized buffers, made and freed one after another
    buf = b"x" * (size_mb << 20)
    del buf
print(rss_mb() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc allocator tuning")
def test_tuned_memory_gives_big_freed_buffers_back_to_the_system() -> None:
    """A leader makes and frees snapshot-sized buffers all day: with the tuning its RSS falls
    back after each one instead of keeping the largest resident."""

    def growth(mode: str) -> float:
        out = subprocess.run(
            [sys.executable, "-c", _RSS_AFTER_BIG_BUFFERS, str(REPO), mode],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        return float(out.stdout.strip())

    tuned, untuned = growth("tuned"), growth("default")
    assert tuned < 5, f"RSS stayed {tuned:.1f} MB above its start after the buffers were freed"
    assert untuned > tuned + 15, "the default allocator was expected to keep a buffer resident"


def test_login_env_is_crons_for_the_account() -> None:
    import pwd

    me = pwd.getpwuid(os.geteuid())
    assert osdeps.login_env() == {
        "HOME": me.pw_dir,
        "LOGNAME": me.pw_name,
        "USER": me.pw_name,
        "SHELL": "/bin/sh",
        "PATH": "/usr/bin:/bin",
    }
    creds = osdeps.Credentials("alice", 1234, 1234, "/home/alice")
    assert osdeps.login_env(creds)["HOME"] == "/home/alice"
    assert osdeps.login_env(creds)["USER"] == "alice"


def test_file_facts_tell_a_link_from_its_target(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.write_text("x")
    target.chmod(0o640)
    link = tmp_path / "link"
    link.symlink_to(target)
    owners = osdeps.HOST_FILES
    own = owners.facts(str(link), follow=False)
    followed = owners.facts(str(link))
    assert own.is_symlink and not own.is_regular
    assert followed.is_regular and followed.permissions == 0o640 and followed.links == 1
    with open(target, "rb") as handle:
        assert owners.facts(str(link), fd=handle.fileno()) == followed
    assert owners.uid_of("root") == 0 and owners.name_of(0) == "root"
    assert owners.uid_of("no-such-user-xyz") is None
    assert owners.agent_uid() == os.geteuid()
