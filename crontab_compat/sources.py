"""Finding and reading crontab files safely: directories, permissions, binary and huge files.

A path names a system crontab (with a user field) unless `--user` says whose crontab it is or it
lies in a spool directory (`/var/spool/cron/crontabs/<user>`, `/var/spool/cron/<user>` or any
directory called `crontabs`), where the file name is the owner. Directory arguments expand to
the files cron itself would read there.
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


def _is_spool_dir(directory: str) -> bool:
    directory = os.path.normpath(directory)
    return os.path.basename(directory) == "crontabs" or directory == "/var/spool/cron"


def collect_sources(
    paths: list[str], user: str | None, dialect: str
) -> tuple[list[Source], list[Issue], list[Issue]]:
    """Expand the command-line paths into crontab sources; returns (sources, errors, warnings)."""
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
            for name in names:
                child = os.path.join(path, name)
                if not os.path.isfile(child):
                    continue
                why = None if spool or user else cron_d_name_skipped(name, dialect)
                if why:
                    warnings.append(Issue(child, 0, "file skipped", why))
                    continue
                sources.append(_source_for(child, user, spool))
        else:
            spool = _is_spool_dir(os.path.dirname(path))
            sources.append(_source_for(path, user, spool))
    return sources, errors, warnings


def _source_for(path: str, user: str | None, spool: bool) -> Source:
    if user:
        return Source(path, False, user)
    if spool:
        return Source(path, False, os.path.basename(path))
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
