"""Whether a crontab file may be trusted, judged as Debian cron judges it before loading.

A crontab's jobs run as root (system files) or as the crontab's user, so cron only loads a
file whose owner and mode prove that nobody else could have written it. The same rules guard
`--crontab-sync` and `dkron crontab check`:

- system crontab (`/etc/crontab`, `/etc/cron.d/*`, any file with a user field): owned by
  root and not writable by group or others ("WRONG FILE OWNER",
  "INSECURE MODE (group/other writable)"). A symbolic link is followed only when the link
  itself belongs to root ("WRONG SYMLINK OWNER"); the file it points to is then judged.
- user crontab (a spool file named after its user): owned by that user or root, mode exactly
  0600 ("INSECURE MODE (mode 0600 expected)"), never a symbolic link.
- both: a regular file with a single hard link ("NUMBER OF HARD LINKS > 1").

Where cron says "root", files owned by the account the agent (or `crontab check`) runs as are
accepted too: anyone who owns such a file can already run commands as that account. When the
agent runs as root the rules are cron's exactly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from crontab_compat.parser import Issue
from dkron_pkg.osdeps import FileFacts, FileOwners

if TYPE_CHECKING:
    from crontab_compat.sources import Source

REASONS = ("wrong_owner", "insecure_mode", "symlink", "not_regular", "hard_links")
"""Why a file is refused, as metric labels (dkron_crontab_files_refused_total{reason})."""

CRON_PLACES = ("/etc/crontab", "/etc/cron.d/", "/var/spool/cron/")
"""Files `crontab check` judges by owner and mode without being asked (cron's own files)."""


@dataclass(frozen=True)
class Refusal:
    """A crontab file cron would not load, with cron's word for it and what would fix it."""

    path: str
    reason: str  # one of REASONS
    word: str  # cron's log wording
    detail: str

    def issue(self) -> Issue:
        return Issue(self.path, 0, self.word, self.detail)

    def __str__(self) -> str:
        return str(self.issue())


def in_cron_place(path: str) -> bool:
    """True for the files cron itself reads on this host."""
    path = os.path.abspath(path)
    return path == CRON_PLACES[0] or path.startswith(CRON_PLACES[1:])


def check_open(source: Source, fd: int, owners: FileOwners) -> Refusal | None:
    """Judge the file open as `fd` (what will be read) and the path it was opened by."""
    if not owners.supported:
        return None
    link = owners.facts(source.path, follow=False)
    return judge(source, link, owners.facts(source.path, fd=fd), owners)


def symlink_refusal(path: str) -> Refusal:
    """A user crontab that is a symbolic link (cron opens them without following links)."""
    return Refusal(path, "symlink", "CAN'T OPEN", "a user crontab must not be a symbolic link")


def judge(source: Source, link: FileFacts, target: FileFacts, owners: FileOwners) -> Refusal | None:
    """The refusal for a file whose path has `link` facts (lstat) and whose content has
    `target` facts (fstat of what is read), or None when cron would load it."""
    trusted = {0, owners.agent_uid()}
    path = source.path
    if link.is_symlink:
        if not source.system:
            return symlink_refusal(path)
        if link.uid not in trusted:
            return Refusal(
                path,
                "symlink",
                "WRONG SYMLINK OWNER",
                f"the link belongs to {_who(link.uid, owners)}; it must belong to root",
            )
    if not target.is_regular:
        return Refusal(path, "not_regular", "NOT A REGULAR FILE", "")
    if source.system:
        return _judge_system(path, target, trusted, owners)
    return _judge_user(path, source.owner or "", target, trusted, owners)


def _judge_system(
    path: str, facts: FileFacts, trusted: set[int], owners: FileOwners
) -> Refusal | None:
    if facts.uid not in trusted:
        return Refusal(
            path,
            "wrong_owner",
            "WRONG FILE OWNER",
            f"owned by {_who(facts.uid, owners)}; a system crontab must belong to root",
        )
    if facts.permissions & 0o022:
        return Refusal(
            path,
            "insecure_mode",
            "INSECURE MODE (group/other writable)",
            f"mode {facts.permissions:04o}; remove write access for group and others",
        )
    return _judge_links(path, facts)


def _judge_user(
    path: str, user: str, facts: FileFacts, trusted: set[int], owners: FileOwners
) -> Refusal | None:
    uid = owners.uid_of(user) if user else None
    if facts.uid not in trusted and facts.uid != uid:
        return Refusal(
            path,
            "wrong_owner",
            "WRONG FILE OWNER",
            f"owned by {_who(facts.uid, owners)}; the crontab of {user!r} must belong to "
            f"{user!r} or root",
        )
    if facts.permissions != 0o600:
        return Refusal(
            path,
            "insecure_mode",
            "INSECURE MODE (mode 0600 expected)",
            f"mode {facts.permissions:04o}",
        )
    return _judge_links(path, facts)


def _judge_links(path: str, facts: FileFacts) -> Refusal | None:
    if facts.links != 1:
        return Refusal(path, "hard_links", "NUMBER OF HARD LINKS > 1", f"{facts.links} links")
    return None


def _who(uid: int, owners: FileOwners) -> str:
    name = owners.name_of(uid)
    return f"{name} (uid {uid})" if name != str(uid) else f"uid {uid}"
