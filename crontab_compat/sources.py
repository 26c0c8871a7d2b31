"""Finding and reading crontab files safely: directories, permissions, binary and huge files.

Whose crontab a file is, decided as cron decides it:
- `--user NAME`: the files are that user's crontab (no user field);
- `/etc/crontab` (or `.../etc/crontab`, a copy of an /etc tree) and files in a `cron.d`
  directory are system crontabs, with a user field before the command;
- a file in a spool directory (`/var/spool/cron/crontabs/<user>`, `/var/spool/cron/<user>`,
  `/var/spool/cron/tabs/<user>` or any directory called `crontabs`) is the crontab of the user
  it is named after;
- any other file is the crontab of `other_owner` (the command line passes the invoking user,
  as `crontab FILE` would install it), or a system crontab when `other_owner` is None
  (`--system`, and `--crontab-sync`, which owns only the host's cron files).
Directory arguments expand to the files cron itself would read there.
"""

from __future__ import annotations

import errno
import os
import stat
from dataclasses import dataclass

from crontab_compat import trust
from crontab_compat.parser import Issue, ParsedCrontab, cron_d_name_skipped, parse_crontab
from crontab_compat.users import UserLookup, system_user_lookup
from dkron_pkg.osdeps import FileOwners

MAX_FILE_BYTES = 1024 * 1024  # far above any real crontab; Debian also caps lines at 10,000


@dataclass(frozen=True)
class Source:
    path: str
    system: bool
    owner: str | None


SPOOL_DIRS = ("/var/spool/cron", "/var/spool/cron/tabs")


def _is_spool_dir(directory: str) -> bool:
    directory = os.path.normpath(directory)
    return os.path.basename(directory) == "crontabs" or directory in SPOOL_DIRS


def _is_system_place(path: str, is_dir: bool) -> bool:
    """/etc/crontab (also inside a copied /etc tree) and cron.d, the system crontabs."""
    path = os.path.normpath(path)
    if is_dir:
        return os.path.basename(path) == "cron.d"
    parent = os.path.basename(os.path.dirname(path))
    return parent == "cron.d" or (parent == "etc" and os.path.basename(path) == "crontab")


def collect_sources(
    paths: list[str], user: str | None, dialect: str, other_owner: str | None = None
) -> tuple[list[Source], list[Issue], list[Issue]]:
    """Expand the command-line paths into crontab sources; returns (sources, errors, warnings).

    `other_owner` owns the files that are neither cron's system files nor spool files (see the
    module's docstring); None makes them system crontabs."""
    sources: list[Source] = []
    errors: list[Issue] = []
    warnings: list[Issue] = []
    for given in paths:
        path = os.path.abspath(given)
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as exc:
                errors.append(Issue(path, 0, "cannot read directory", exc.strerror or str(exc)))
                continue
            spool = _is_spool_dir(path)
            system = not user and (_is_system_place(path, True) or not spool and not other_owner)
            for name in names:
                child = os.path.join(path, name)
                if not os.path.isfile(child):
                    continue
                why = cron_d_name_skipped(name, dialect) if system else None
                if why:
                    warnings.append(Issue(child, 0, "file skipped", why))
                    continue
                sources.append(_source_for(child, user, spool, system, other_owner))
        else:
            spool = _is_spool_dir(os.path.dirname(path))
            system = _is_system_place(path, False)
            sources.append(_source_for(path, user, spool, system, other_owner))
    return sources, errors, warnings


def _source_for(
    path: str, user: str | None, spool: bool, system: bool, other_owner: str | None
) -> Source:
    if user:
        return Source(path, False, user)
    if system:
        return Source(path, True, None)
    if spool:
        return Source(path, False, os.path.basename(path))
    if other_owner:
        return Source(path, False, other_owner)
    return Source(path, True, None)


def read_source(
    source: Source,
    dialect: str,
    lookup: UserLookup = system_user_lookup,
    owners: FileOwners | None = None,
) -> ParsedCrontab:
    """Read and parse one file; unreadable, binary, non-UTF-8 or huge files become errors.

    With `owners`, the file is also judged by owner and mode as cron judges it (trust.py), on
    the very file that is read: a refused file becomes an error and sets `refusal`.
    """
    result = ParsedCrontab(source.path, source.system, dialect, fatal=True)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    if owners is not None and not source.system:
        flags |= getattr(os, "O_NOFOLLOW", 0)
    try:
        with open(source.path, "rb", opener=lambda path, _mode: os.open(path, flags)) as handle:
            if owners is not None:
                refusal = trust.check_open(source, handle.fileno(), owners)
                if refusal is not None:
                    return _refused(result, refusal)
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                result.errors.append(Issue(source.path, 0, "not a regular file"))
                return result
            if info.st_size > MAX_FILE_BYTES:
                result.errors.append(
                    Issue(
                        source.path,
                        0,
                        "file too large",
                        f"{info.st_size} bytes; a crontab may be at most {MAX_FILE_BYTES} bytes "
                        "here",
                    )
                )
                return result
            data = handle.read(MAX_FILE_BYTES + 1)
    except IsADirectoryError:
        result.errors.append(Issue(source.path, 0, "not a regular file"))
        return result
    except OSError as exc:
        if exc.errno == errno.ELOOP and owners is not None and owners.supported:
            return _refused(result, trust.symlink_refusal(source.path))
        result.errors.append(Issue(source.path, 0, "cannot read file", exc.strerror or str(exc)))
        return result
    text = decode_crontab(data, source.path, result)
    if text is None:
        return result
    return parse_crontab(
        text,
        source.path,
        system=source.system,
        owner=source.owner,
        dialect=dialect,
        lookup=lookup,
    )


def _refused(result: ParsedCrontab, refusal: trust.Refusal) -> ParsedCrontab:
    result.errors.append(refusal.issue())
    result.refusal = refusal
    return result


def decode_crontab(data: bytes, path: str, result: ParsedCrontab) -> str | None:
    """UTF-8 text, or None after recording why the bytes are not a crontab."""
    if len(data) > MAX_FILE_BYTES:
        result.errors.append(Issue(path, 0, "file too large", f"over {MAX_FILE_BYTES} bytes"))
        return None
    if b"\0" in data:
        line = data[: data.index(b"\0")].count(b"\n") + 1
        result.errors.append(Issue(path, line, "binary file", "contains NUL bytes"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        result.errors.append(Issue(path, line, "not UTF-8 text", f"byte {exc.start}"))
        return None
