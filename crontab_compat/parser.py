"""Parsing whole crontab files: user crontabs, system crontabs, environment, dialects.

Dialect `debian` behaves like Debian cron: one bad line (or a missing final newline) makes cron
ignore the whole file, so the result has no entries. Dialect `cronie` skips just the bad lines
and reports them, and understands CRON_TZ, RANDOM_DELAY, `X-0` weekday ranges, `~` and the `-`
prefix. Every problem names the file, the line number and cron's own error word.
"""

from __future__ import annotations

import re
import shutil
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crontab_compat.command import split_command
from crontab_compat.envline import parse_env_line
from crontab_compat.fields import DIALECTS, FIELD_SPECS, CronFieldError, parse_field
from crontab_compat.users import UserLookup, system_user_lookup

if TYPE_CHECKING:
    from crontab_compat.trust import Refusal

KEYWORDS = ("reboot", "yearly", "annually", "monthly", "weekly", "daily", "midnight", "hourly")
MAX_COMMAND_BYTES = 998
MAX_LINES = 10_000
DEFAULT_PATH = {"debian": "/usr/bin:/bin", "cronie": "/usr/bin:/bin:/usr/sbin:/sbin"}
_BLANKS = " \t"


@dataclass(frozen=True)
class Issue:
    """An error or warning about one line (line 0 means the whole file)."""

    file: str
    line: int
    word: str
    detail: str = ""

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.word}" + (f": {self.detail}" if self.detail else "")


@dataclass
class Entry:
    """One job line with everything needed to run it as cron would."""

    file: str
    line_no: int
    text: str
    user: str
    home: str
    schedule: str  # five canonical fields, or "@reboot"
    written_schedule: str  # the time part as written (fields or keyword)
    raw_command: str  # the command text as written (with `%` and escapes)
    command: str
    stdin: str | None
    env: dict[str, str]
    timezone: str | None = None  # CRON_TZ (cronie only)
    random_delay_minutes: int = 0
    options: dict[str, str] = field(default_factory=dict)
    occurrence: int = 1  # 2 for the second identical line in the same file, ...


@dataclass
class ParsedCrontab:
    file: str
    system: bool
    dialect: str
    entries: list[Entry] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    fatal: bool = False  # the file as a whole could not be used (unreadable, binary, too long)
    refusal: Refusal | None = None  # cron would not trust the file (owner, mode, symlink)

    @property
    def rejected(self) -> bool:
        """True when cron would ignore the whole file (always on fatal, Debian on any error)."""
        return self.fatal or (bool(self.errors) and self.dialect == "debian")


class _LineError(Exception):
    def __init__(self, word: str, detail: str = "") -> None:
        super().__init__(word)
        self.word = word
        self.detail = detail


def _split_token(text: str, pos: int) -> tuple[str, int]:
    start = pos
    while pos < len(text) and text[pos] not in _BLANKS:
        pos += 1
    return text[start:pos], pos


def _skip(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _BLANKS:
        pos += 1
    return pos


class _FileParser:
    def __init__(
        self,
        path: str,
        system: bool,
        owner: str | None,
        dialect: str,
        lookup: UserLookup,
    ) -> None:
        self.result = ParsedCrontab(path, system, dialect)
        self.path = path
        self.system = system
        self.owner = owner
        self.dialect = dialect
        self.lookup = lookup
        self.env: dict[str, str] = {}
        self.cron_tz: str | None = None
        self.random_delay = 0
        self.seen_lines: dict[tuple[str, str], int] = {}

    def warn(self, line_no: int, word: str, detail: str = "") -> None:
        self.result.warnings.append(Issue(self.path, line_no, word, detail))

    def error(self, line_no: int, word: str, detail: str = "") -> None:
        self.result.errors.append(Issue(self.path, line_no, word, detail))

    def run(self, text: str) -> ParsedCrontab:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            line = text[: exc.start].count("\n") + 1
            self.error(line, "not UTF-8 text", f"character {exc.start} cannot be encoded")
            self.result.fatal = True
            return self.result
        if "\0" in text:
            line = text[: text.index("\0")].count("\n") + 1
            self.error(line, "binary file", "contains NUL characters")
            self.result.fatal = True
            return self.result
        lines = text.split("\n")
        last = lines.pop()  # text after the final newline ("" when the file ends with one)
        if len(lines) + (1 if last else 0) > MAX_LINES:
            self.error(0, "too many lines", f"cron reads at most {MAX_LINES} lines")
            self.result.fatal = True
            return self.result
        crlf = False
        for index, line in enumerate(lines, start=1):
            if line.endswith("\r"):
                crlf = True
                line = line[:-1]
            self.line(index, line)
        if crlf:
            self.warn(
                0,
                "CRLF line endings",
                "cron keeps the carriage return as part of each command and value; "
                "the import removes it",
            )
        stripped = last.strip(" \t\r")
        if stripped and not stripped.startswith("#"):
            line_no = len(lines) + 1
            if self.dialect == "debian":
                self.error(
                    line_no, "missing newline before EOF", "Debian cron ignores the whole file"
                )
            else:
                self.error(line_no, "missing newline before EOF", "cronie drops this last line")
        if self.result.rejected:
            self.result.entries = []
        return self.result

    def line(self, line_no: int, line: str) -> None:
        stripped = line.lstrip(_BLANKS)
        if not stripped or stripped.startswith("#"):
            return
        env = parse_env_line(line, allow_empty=self.dialect == "cronie")
        if env is not None:
            self.set_env(line_no, *env)
            return
        try:
            entry = self.entry(line_no, line, stripped)
        except _LineError as exc:
            self.error(line_no, exc.word, exc.detail)
            return
        self.result.entries.append(entry)

    def set_env(self, line_no: int, name: str, value: str) -> None:
        if not name:
            self.warn(line_no, "empty variable name", f"cron accepts '={value}' as a variable")
        if name == "CRON_TZ":
            if self.dialect == "debian":
                self.warn(
                    line_no,
                    "CRON_TZ ignored",
                    "Debian cron only exports CRON_TZ to the job; times stay in the host zone "
                    "(use --dialect cronie for cronie's meaning)",
                )
            else:
                try:
                    ZoneInfo(value)
                except (ZoneInfoNotFoundError, ValueError):
                    self.error(line_no, "bad timezone", f"unknown time zone {value!r}")
                    return
                self.cron_tz = value
        if name == "RANDOM_DELAY":
            self.set_random_delay(line_no, value)
        self.env = {**self.env, name: value}

    def set_random_delay(self, line_no: int, value: str) -> None:
        if self.dialect == "debian":
            self.warn(line_no, "RANDOM_DELAY ignored", "only cronie delays jobs by RANDOM_DELAY")
            return
        if not value.isdigit() or int(value) > 1440:
            self.warn(line_no, "RANDOM_DELAY ignored", f"{value!r} is not 0-1440 minutes")
            return
        self.random_delay = int(value)
        if self.random_delay:
            self.warn(
                line_no,
                "RANDOM_DELAY",
                f"entries below start up to {value} minutes late; the import fixes a stable "
                "delay per job (cronie redraws it when the daemon starts)",
            )

    def entry(self, line_no: int, line: str, text: str) -> Entry:
        options: dict[str, str] = {}
        if text.startswith("-") and self.dialect == "cronie" and self.system:
            options["no_log"] = "true"
            text = text[1:]
            self.warn(line_no, "'-' prefix", "cronie's 'do not log this job' prefix is dropped")
        seed = f"{self.path}|{line}"
        pos = 0
        if text.startswith("@"):
            word, pos = _split_token(text, 0)
            keyword = word[1:]
            if keyword not in KEYWORDS:
                hint = " (keywords are lowercase)" if keyword.lower() in KEYWORDS else ""
                raise _LineError("bad time specifier", f"unknown keyword {word!r}{hint}")
            written = word
            schedule = "@reboot" if keyword == "reboot" else _keyword_fields(keyword)
            if keyword == "reboot":
                self.warn(line_no, "@reboot", "runs once per boot of the host that owns the file")
        else:
            fields = []
            for spec in FIELD_SPECS:
                pos = _skip(text, pos)
                token, pos = _split_token(text, pos)
                if not token:
                    raise _LineError(spec.error, "the line ends before this field")
                try:
                    parsed = parse_field(token, spec, self.dialect, seed)
                except CronFieldError as exc:
                    raise _LineError(str(exc), f"{token!r}") from None
                for message in parsed.warnings:
                    self.warn(line_no, "surprising field", message)
                fields.append(parsed)
            written = text[:pos]
            schedule = " ".join(f.canonical for f in fields)
            self.check_star_rule(line_no, fields)
        pos = _skip(text, pos)
        user, home, pos = self.user_field(line_no, text, pos)
        raw = text[pos:]
        self.check_command(line_no, raw)
        self.check_user_as_command(line_no, raw)
        if self.dialect == "cronie" and raw.startswith("-n "):
            options["mail_on_failure_only"] = "true"
            raw = raw[3:].lstrip(_BLANKS)
        command, stdin = split_command(raw)
        if stdin is not None:
            self.warn(line_no, "'%' in command", "text after the first '%' is sent to stdin")
        env = self.job_env(user, home)
        key = (user, line.strip())
        occurrence = self.seen_lines.get(key, 0) + 1
        self.seen_lines[key] = occurrence
        return Entry(
            file=self.path,
            line_no=line_no,
            text=line,
            user=user,
            home=env["HOME"],
            schedule=schedule,
            written_schedule=written.strip(),
            raw_command=raw,
            command=command,
            stdin=stdin,
            env=env,
            timezone=self.cron_tz if self.dialect == "cronie" else None,
            random_delay_minutes=self.random_delay,
            options=options,
            occurrence=occurrence,
        )

    def check_star_rule(self, line_no: int, fields: list) -> None:
        dom, dow = fields[2], fields[4]
        if (dom.star or dow.star) and not (dom.text == "*" or dow.text == "*"):
            self.warn(
                line_no,
                "star rule",
                f"day-of-month {dom.text!r} and day-of-week {dow.text!r}: because one starts "
                "with '*', cron runs only on days matching BOTH (not either)",
            )

    def user_field(self, line_no: int, text: str, pos: int) -> tuple[str, str, int]:
        if self.system:
            name, pos = _split_token(text, pos)
            if not name or _skip(text, pos) >= len(text):
                raise _LineError("bad command", "a system crontab line needs a user and a command")
            info = self.lookup(name)
            if info is None:
                raise _LineError("bad username", f"no such user {name!r}{_user_field_hint(name)}")
            return info.name, info.home, _skip(text, pos)
        owner = self.owner or ""
        info = self.lookup(owner) if owner else None
        if info is None:
            raise _LineError("bad username", f"the crontab's owner {owner!r} does not exist")
        return info.name, info.home, pos

    def check_command(self, line_no: int, raw: str) -> None:
        if raw.startswith("*"):
            raise _LineError("bad command", f"{raw.split()[0]!r} looks like a sixth time field")
        if len(raw.encode("utf-8")) > MAX_COMMAND_BYTES:
            raise _LineError("command too long", f"cron allows at most {MAX_COMMAND_BYTES} bytes")
        if not raw.strip():
            self.warn(line_no, "empty command", "cron accepts it; the job does nothing")
            return
        first = raw.split()[0]
        if first.isdigit():
            self.warn(
                line_no,
                "numeric sixth token",
                f"{first!r} is not a year: cron runs the command {raw!r}",
            )

    def check_user_as_command(self, line_no: int, raw: str) -> None:
        """A personal crontab whose command starts with a user name is likely a system
        crontab (as /etc/crontab) read as a personal one: cron would run the user name."""
        if self.system or not raw.strip():
            return
        first = raw.split()[0]
        if self.lookup(first) is not None and shutil.which(first) is None:
            self.warn(
                line_no,
                "user name as command",
                f"{first!r} is a user, not a command: if this is a system crontab (a user "
                "field before each command, as /etc/crontab), give --system",
            )

    def job_env(self, user: str, home: str) -> dict[str, str]:
        env = {"SHELL": "/bin/sh", "HOME": home, "PATH": DEFAULT_PATH[self.dialect]}
        env.update(self.env)
        env["LOGNAME"] = user
        env["USER"] = user
        return env


def _user_field_hint(name: str) -> str:
    """Why a system crontab line may name no user: the file may be a personal crontab."""
    if _looks_like_command(name):
        return (
            f"; {name!r} looks like a command, so this is probably a personal crontab (the "
            "format of crontab -e, with no user field) read as a system one: import it as one "
            "user's crontab with --user NAME"
        )
    return (
        " (a system crontab names the user before the command; for a personal crontab, "
        "give --user NAME)"
    )


def _looks_like_command(word: str) -> bool:
    if any(ch in word for ch in "/=$\"'`;|&<>()") or word.startswith(("~", ".")):
        return True
    return shutil.which(word) is not None


def _keyword_fields(keyword: str) -> str:
    from crontab_compat.schedule import KEYWORDS as EXPANSIONS

    return EXPANSIONS["@" + keyword]


def parse_crontab(
    text: str,
    path: str,
    *,
    system: bool,
    owner: str | None = None,
    dialect: str = "debian",
    lookup: UserLookup = system_user_lookup,
) -> ParsedCrontab:
    """Parse crontab text. `system` files have a user field; user crontabs belong to `owner`."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (expected debian or cronie)")
    return _FileParser(path, system, owner, dialect, lookup).run(text)


def stable_delay_seconds(entry: Entry, name: str) -> int:
    """cronie's RANDOM_DELAY, made stable per job so re-imports do not change the job."""
    if entry.random_delay_minutes <= 0:
        return 0
    return zlib.crc32(name.encode()) % (entry.random_delay_minutes * 60)


_DEBIAN_CRON_D_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def cron_d_name_skipped(name: str, dialect: str) -> str | None:
    """Why cron would not read /etc/cron.d/<name>, or None when it reads it."""
    if dialect == "debian":
        if not _DEBIAN_CRON_D_NAME.match(name):
            return (
                "Debian cron ignores cron.d files whose names contain anything but letters, "
                "digits, '_' and '-' (a dot, for example)"
            )
        return None
    if name.startswith((".", "#")) or name.endswith(("~", ".rpmsave", ".rpmorig", ".rpmnew")):
        return "cronie ignores backup and hidden files in cron.d"
    return None
