"""Looking up the accounts crontab entries run as (injectable, so tests need no real users)."""

from __future__ import annotations

import os
import pwd
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class UserInfo:
    name: str
    home: str


UserLookup = Callable[[str], UserInfo | None]


def system_user_lookup(name: str) -> UserInfo | None:
    """The host's passwd database, as cron uses it."""
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):
        return None
    return UserInfo(entry.pw_name, entry.pw_dir)


def current_user() -> str:
    """The account this process runs as (the agent's own user when run on the agent host)."""
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def fake_lookup(users: dict[str, str]) -> UserLookup:
    """A lookup over {name: home}, for tests and for importing another host's files."""

    def lookup(name: str) -> UserInfo | None:
        home = users.get(name)
        return UserInfo(name, home) if home is not None else None

    return lookup
