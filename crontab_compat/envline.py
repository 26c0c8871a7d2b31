"""Crontab environment lines (`NAME = VALUE`), read the way cron's load_env reads them.

A line is an environment setting only if it has this exact shape; otherwise cron tries it as a job
entry (which is why `MAILTO=` without quotes ends up as "bad minute" in Debian). The name or the
value may be wrapped in matching quotes; nothing but blanks may follow a closing quote; an
unquoted value loses its trailing blanks; `#` is part of the value; nothing is expanded.
"""

from __future__ import annotations

_BLANKS = " \t\r\n\v\f"


def _skip_blanks(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _BLANKS:
        pos += 1
    return pos


def _quoted(text: str, pos: int) -> tuple[str, int] | None:
    """Read a quoted word starting at text[pos] (a quote); return (content, index after)."""
    quote = text[pos]
    end = text.find(quote, pos + 1)
    if end < 0:
        return None
    return text[pos + 1 : end], end + 1


def parse_env_line(line: str, allow_empty: bool = False) -> tuple[str, str] | None:
    """Return (name, value) when `line` is an environment setting, else None.

    `allow_empty` accepts `NAME=` with nothing after it (cronie does; Debian does not).
    """
    pos = _skip_blanks(line, 0)
    if pos < len(line) and line[pos] in "'\"":
        got = _quoted(line, pos)
        if got is None:
            return None
        name, pos = got
    else:
        start = pos
        while pos < len(line) and line[pos] != "=" and line[pos] not in _BLANKS:
            pos += 1
        name = line[start:pos]
    pos = _skip_blanks(line, pos)
    if pos >= len(line) or line[pos] != "=":
        return None
    pos = _skip_blanks(line, pos + 1)
    if pos >= len(line):
        return (name, "") if allow_empty else None
    if line[pos] in "'\"":
        got = _quoted(line, pos)
        if got is None:
            return None
        value, pos = got
        if line[pos:].strip(_BLANKS):
            return None
        return name, value
    return name, line[pos:].rstrip(_BLANKS)
