"""Everything that differs between Unix and Windows, in one place.

The executors, the agent and the store call these helpers instead of touching process
groups, signals, credentials, /proc or file locks themselves, so the rest of the code stays
portable and this module is the only one a port has to read.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, Self

IS_WINDOWS = sys.platform == "win32"
HAS_PROC = os.path.isdir("/proc/self")

if not IS_WINDOWS:
    import fcntl
    import grp
    import pwd
else:  # pragma: no cover - exercised on Windows only
    import msvcrt


# --------------------------------------------------------------------------- processes


def shell_argv(command: str) -> list[str]:
    """The argv that runs `command` through the platform shell (Dkron's `shell: true`)."""
    if IS_WINDOWS:  # pragma: no cover
        return ["cmd", "/C", command]
    return ["/bin/sh", "-c", command]


def new_group_popen_kwargs() -> dict[str, Any]:
    """Popen keyword arguments that put the child in a fresh process group of its own.

    A group lets a timeout or a cancel kill the job's grandchildren too (Dkron #1385).
    """
    if IS_WINDOWS:  # pragma: no cover
        return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP}
    return {"start_new_session": True}


def exit_status_text(returncode: int) -> str:
    """Describe a child's end the way Go's os/exec does ("exit status 1", "signal: killed")."""
    if returncode >= 0:
        return f"exit status {returncode}"
    signum = -returncode
    try:
        name = signal.strsignal(signum) or f"signal {signum}"
    except ValueError:
        name = f"signal {signum}"
    return f"signal: {name.lower()}"


def _proc_table() -> dict[int, tuple[int, int, int, str]]:
    """Map pid -> (ppid, pgid, rss_bytes, state) for every process visible in /proc."""
    page = os.sysconf("SC_PAGE_SIZE")
    table: dict[int, tuple[int, int, int, str]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue  # the process ended while we were looking
        # The command name is in parentheses and may hold spaces or ')'.
        rest = raw[raw.rfind(b")") + 2 :].split()
        if len(rest) < 22:
            continue
        state = rest[0].decode("ascii", "replace")
        table[int(entry.name)] = (int(rest[1]), int(rest[2]), int(rest[21]) * page, state)
    return table


def _ps_table() -> dict[int, tuple[int, int, int, str]]:
    """The same table as _proc_table from `ps`, for Unix systems without /proc (macOS)."""
    try:
        out = subprocess.run(
            ["ps", "-A", "-o", "pid=,ppid=,pgid=,rss=,state="],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    table: dict[int, tuple[int, int, int, str]] = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0].isdigit():
            table[int(parts[0])] = (int(parts[1]), int(parts[2]), int(parts[3]) * 1024, parts[4])
    return table


def process_table() -> dict[int, tuple[int, int, int, str]]:
    """pid -> (ppid, pgid, rss_bytes, state) for all processes; empty when unsupported."""
    if IS_WINDOWS:  # pragma: no cover
        return {}
    return _proc_table() if HAS_PROC else _ps_table()


def tree_pids(root: int, table: dict[int, tuple[int, int, int, str]]) -> set[int]:
    """The root, its descendants by parent link, and every process left in its group."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _pgid, _rss, _state) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in found:
            continue
        if pid in table:
            found.add(pid)
        todo.extend(children.get(pid, ()))
    # A grandchild whose parent died is re-parented, but it still sits in the job's group.
    found.update(pid for pid, (_p, pgid, _r, _s) in table.items() if pgid == root)
    return found


def tree_rss_bytes(root: int, table: dict[int, tuple[int, int, int, str]] | None = None) -> int:
    """Resident memory of a process tree (the job's memory use for `mem_limit`)."""
    if table is None:
        table = process_table()
    return sum(table[pid][2] for pid in tree_pids(root, table) if table[pid][3] != "Z")


def trees_rss_bytes(roots: Iterable[int]) -> dict[int, int]:
    """RSS for several trees from one scan of the process table (one scan per sampling tick)."""
    table = process_table()
    return {root: tree_rss_bytes(root, table) for root in roots}


def kill_group(proc: subprocess.Popen[bytes]) -> bool:
    """SIGKILL the child's whole process tree and group; True when the kill was delivered.

    The tree is read first, while parent links are intact, so a descendant that left the
    group (setsid) is killed too.
    """
    if IS_WINDOWS:  # pragma: no cover
        result = subprocess.run(
            ["taskkill", "/T", "/F", "/PID", str(proc.pid)], capture_output=True, check=False
        )
        if result.returncode != 0:
            try:
                proc.kill()
            except OSError:
                return False
        return True
    pid = proc.pid
    try:
        members = tree_pids(pid, process_table()) if proc.returncode is None else set()
    except OSError:
        members = set()
    delivered = False
    try:
        os.killpg(pid, signal.SIGKILL)
        delivered = True
    except ProcessLookupError:
        delivered = True  # nothing left in the group
    except PermissionError:
        pass
    for member in members - {pid}:
        try:
            os.kill(member, signal.SIGKILL)
        except OSError:
            pass
    if proc.returncode is None:
        try:
            proc.kill()
            delivered = True
        except OSError:
            pass
    return delivered


def pid_alive(pid: int) -> bool:
    """True while the pid names a running (not zombie) process."""
    if IS_WINDOWS:  # pragma: no cover
        out = subprocess.run(
            ["tasklist", "/FI", f"PID eq {pid}"], capture_output=True, text=True, check=False
        ).stdout
        return str(pid) in out
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if HAS_PROC:
        try:
            with open(f"/proc/{pid}/stat", "rb") as fh:
                raw = fh.read()
            return raw[raw.rfind(b")") + 2 : raw.rfind(b")") + 3] not in (b"Z", b"X")
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- credentials


@dataclass(frozen=True)
class Credentials:
    """Who a job runs as (`su: user[:group]`)."""

    user: str
    uid: int
    gid: int
    home: str = "/"


class SuError(ValueError):
    """`su` cannot be honoured here; the message says why."""


def parse_su(spec: str) -> tuple[str, str]:
    """Split `user[:group]`; raise SuError when the text is not that shape."""
    user, _, group = spec.partition(":")
    if not user.strip() or (":" in spec and not group.strip()) or ":" in group:
        raise SuError(f'invalid su value "{spec}": expected user or user:group')
    return user.strip(), group.strip()


def resolve_su(spec: str) -> Credentials:
    """Look up the user and group of `su`; the agent must be root unless it is that user."""
    user, group = parse_su(spec)
    if IS_WINDOWS:  # pragma: no cover
        raise SuError("su is not supported on Windows")
    try:
        entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
    except KeyError:
        raise SuError(f'su: unknown user "{user}"') from None
    gid = entry.pw_gid
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise SuError(f'su: unknown group "{group}"') from None
    creds = Credentials(entry.pw_name, entry.pw_uid, gid, entry.pw_dir or "/")
    if os.geteuid() != 0 and (creds.uid != os.geteuid() or creds.gid != os.getegid()):
        raise SuError(f'su "{spec}" needs the agent to run as root (it runs as uid {os.geteuid()})')
    return creds


def credentials_popen_kwargs(creds: Credentials | None) -> dict[str, Any]:
    """Popen keyword arguments that switch to `creds` (and drop the agent's extra groups)."""
    if creds is None or (os.geteuid() == creds.uid and os.getegid() == creds.gid):
        return {}
    return {"user": creds.uid, "group": creds.gid, "extra_groups": []}


CRON_PATH = "/usr/bin:/bin"
"""PATH of a job started by Debian cron (cron's _PATH_DEFPATH)."""


def login_env(creds: Credentials | None = None) -> dict[str, str]:
    """The few variables cron gives a job: HOME, LOGNAME, USER, SHELL=/bin/sh, PATH.

    For `creds` (a `su` job) they describe that account; without, the agent's own account.
    On Windows, where there is no su, the variables a process needs to start at all.
    """
    if IS_WINDOWS:  # pragma: no cover
        keep = ("SYSTEMROOT", "SYSTEMDRIVE", "COMSPEC", "PATH", "PATHEXT", "TEMP", "TMP")
        return {name: os.environ[name] for name in keep if name in os.environ}
    if creds is None:
        try:
            entry = pwd.getpwuid(os.geteuid())
            user, home = entry.pw_name, entry.pw_dir or "/"
        except KeyError:  # an account without a passwd entry (containers)
            user, home = str(os.geteuid()), "/"
    else:
        user, home = creds.user, creds.home
    return {"HOME": home, "LOGNAME": user, "USER": user, "SHELL": "/bin/sh", "PATH": CRON_PATH}


# --------------------------------------------------------------------------- file ownership


@dataclass(frozen=True)
class FileFacts:
    """What cron looks at before trusting a crontab: owner, type and mode, hard links."""

    uid: int
    mode: int  # st_mode: the file type and the permission bits
    links: int

    @property
    def is_symlink(self) -> bool:
        return stat.S_ISLNK(self.mode)

    @property
    def is_regular(self) -> bool:
        return stat.S_ISREG(self.mode)

    @property
    def permissions(self) -> int:
        return stat.S_IMODE(self.mode)


class FileOwners:
    """Owners and modes of files, and the uids of accounts, as this host sees them.

    The crontab checks ask this object only, so a test can hand them a fake one (a file
    owned by "nobody" without being root).
    """

    supported = not IS_WINDOWS  # Windows files have no Unix owner or mode; cron is not there

    def facts(self, path: str, *, fd: int | None = None, follow: bool = True) -> FileFacts:
        """Facts of the open file `fd` (what is really read), else of `path` (lstat when
        `follow` is False). OSError when the file is gone."""
        if fd is not None:
            info = os.fstat(fd)
        else:
            info = os.stat(path) if follow else os.lstat(path)
        return FileFacts(info.st_uid, info.st_mode, info.st_nlink)

    def uid_of(self, user: str) -> int | None:
        """The uid of account `user`, or None when there is no such account."""
        if IS_WINDOWS:  # pragma: no cover
            return None
        try:
            return pwd.getpwnam(user).pw_uid
        except (KeyError, ValueError):
            return None

    def name_of(self, uid: int) -> str:
        """The account name of `uid` (the number itself when it has no name), for messages."""
        if IS_WINDOWS:  # pragma: no cover
            return str(uid)
        try:
            return pwd.getpwuid(uid).pw_name
        except KeyError:
            return str(uid)

    def agent_uid(self) -> int:
        """The uid this process runs as: files it owns are as trusted as the agent itself."""
        return os.geteuid() if hasattr(os, "geteuid") else 0


HOST_FILES = FileOwners()


# --------------------------------------------------------------------------- signals


def install_signal_handlers(
    on_terminate: Callable[[], None],
    on_reload: Callable[[], None] | None = None,
    loop: Any = None,
) -> list[str]:
    """Route SIGTERM/SIGINT to on_terminate and SIGHUP to on_reload; return what was set.

    With an asyncio loop the handlers run inside the loop (Unix); otherwise they are plain
    signal handlers. Windows has no SIGHUP, so reload is skipped there.
    """
    wanted: list[tuple[str, Callable[[], None]]] = [
        ("SIGTERM", on_terminate),
        ("SIGINT", on_terminate),
    ]
    if on_reload is not None:
        wanted.append(("SIGHUP", on_reload))
    installed: list[str] = []
    for name, callback in wanted:
        signum = getattr(signal, name, None)
        if signum is None:
            continue
        if loop is not None and not IS_WINDOWS:
            loop.add_signal_handler(signum, callback)
        else:
            signal.signal(signum, lambda _s, _f, cb=callback: cb())
        installed.append(name)
    return installed


# --------------------------------------------------------------------------- file locks


class LockedError(RuntimeError):
    """Another process holds the lock (for example a second agent on the same data dir)."""


class FileLock:
    """An exclusive lock held on an open file until release() (or the process ends)."""

    def __init__(self, path: str, handle: IO[str]) -> None:
        self.path = path
        self._handle: IO[str] | None = handle

    def release(self) -> None:
        """Drop the lock; safe to call twice."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        try:
            if IS_WINDOWS:  # pragma: no cover
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
        finally:
            handle.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def lock_file(path: str) -> FileLock:
    """Take an exclusive, non-blocking lock on `path` (created if missing) and note our pid.

    Raises LockedError naming the holder when another process has it, so a second agent
    started on the same data directory stops with a clear message instead of corrupting it.
    Keep the returned FileLock referenced: when it is garbage collected the file closes and
    the lock is gone.
    """
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - kept open while locked
    try:
        if IS_WINDOWS:  # pragma: no cover
            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        else:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        holder = handle.read().strip()
        handle.close()
        who = f" by pid {holder}" if holder else ""
        raise LockedError(f"{path} is locked{who}: is another agent using this data dir?") from None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return FileLock(path, handle)


# --------------------------------------------------------------------------- memory

_M_ARENA_MAX = -8
_M_MMAP_THRESHOLD = -3


def tune_memory() -> bool:
    """Keep a long-running agent's memory flat under glibc; True when the tuning applied.

    Raft snapshots and their messages are buffers of tens of MB. glibc raises its mmap
    threshold to the size of each large block freed, so later ones come from the heap and
    stay resident after use: a leader's RSS would climb by a snapshot's size now and then.
    A fixed 1 MiB threshold returns every large buffer to the system when it is freed, and
    two arenas are plenty for an interpreter that runs one thread at a time.
    """
    if IS_WINDOWS or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl has no mallopt)
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 20) == 1
    return mallopt(_M_ARENA_MAX, 2) == 1 and ok
