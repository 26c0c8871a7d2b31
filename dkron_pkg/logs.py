"""One log line per event that matters, as logfmt-style text or JSON lines.

Operators grep or ship these lines, so each event (launch, finish, retry, leader change,
member change, ...) is a single line with stable keys:

    time=2026-11-26T23:30:25.123Z level=info event=launch job=backup scheduled=...
    {"time": "2026-11-26T23:30:25.123Z", "level": "info", "event": "launch", "job": "backup"}

`setup(level, json_lines, stream)` configures the `dkron` logger tree (the agent calls it once
from `--log-level`; calling it again replaces the handler). Levels are Dkron's: trace, debug,
info, warn (or warning), error, fatal, panic. `event(name, **fields)` writes one event at info,
or at warn for a failed `finish` (`success=False`); `event_at(level, name, **fields)` picks the
level. Plain `logging.getLogger("dkron.<module>")` records use the same format with `msg=`.
Text values that contain spaces, quotes, `=` or control characters are quoted with escapes, so
a line never breaks in two.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LOGGER_NAME = "dkron"
TRACE = 5

LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warn": logging.WARNING,
    "warning": logging.WARNING,
    "error": logging.ERROR,
    "fatal": logging.CRITICAL,
    "panic": logging.CRITICAL,
}
_LEVEL_NAMES = {
    TRACE: "trace",
    logging.DEBUG: "debug",
    logging.INFO: "info",
    logging.WARNING: "warn",
    logging.ERROR: "error",
    logging.CRITICAL: "fatal",
}

logging.addLevelName(TRACE, "TRACE")
_NON_ASCII = re.compile(r"[^\x20-\x7e]")


def parse_level(level: str) -> int:
    """A Dkron log level name to a logging level; ValueError naming the choices otherwise."""
    key = str(level).strip().lower()
    if key not in LEVELS:
        choices = ", ".join(LEVELS)
        raise ValueError(f'invalid log level "{level}": expected one of {choices}')
    return LEVELS[key]


def _timestamp(created: float) -> str:
    dt = datetime.fromtimestamp(created, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def _plain(value: Any) -> Any:
    """Fields as JSON-friendly values (bools stay bools, others become text)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _escape_unprintable(match: re.Match) -> str:
    char = match.group(0)
    if char.isprintable():
        return char
    cp = ord(char)
    if cp > 0xFFFF:
        cp -= 0x10000
        return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"
    return f"\\u{cp:04x}"


def json_text(value: Any) -> str:
    """JSON with readable non-ASCII text but every line-breaking or invisible character escaped."""
    text = json.dumps(value, ensure_ascii=False)
    return _NON_ASCII.sub(_escape_unprintable, text)


def logfmt_value(value: Any) -> str:
    """A value as logfmt text: bare when safe, else double-quoted with escapes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, list | tuple | dict):
        text = json.dumps(_plain(value), separators=(",", ":"))
    else:
        text = str(value)
    if text and all(c > " " and c not in '"=\\' and c.isprintable() for c in text):
        return text
    return json_text(text)


def _clean_key(key: str) -> str:
    return "".join(c if c.isalnum() or c in "_.-" else "_" for c in str(key)) or "_"


class _Formatter(logging.Formatter):
    def __init__(self, json_lines: bool) -> None:
        super().__init__()
        self.json_lines = json_lines

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = {
            "time": _timestamp(record.created),
            "level": _LEVEL_NAMES.get(record.levelno, record.levelname.lower()),
        }
        name = getattr(record, "dkron_event", None)
        if name is not None:
            fields["event"] = name
            for key, value in getattr(record, "dkron_fields", {}).items():
                k = _clean_key(key)
                if k in ("time", "level", "event"):
                    k = "field_" + k
                fields[k] = value
        else:
            if record.name != LOGGER_NAME:
                fields["logger"] = record.name
            fields["msg"] = record.getMessage()
            if record.exc_info:
                fields["error"] = self.formatException(record.exc_info)
        if self.json_lines:
            return json_text({k: _plain(v) for k, v in fields.items()})
        return " ".join(f"{k}={logfmt_value(v)}" for k, v in fields.items())


class _StreamHandler(logging.StreamHandler):
    """StreamHandler that never raises into the caller (a closed stream must not stop jobs)."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


_handler: logging.Handler | None = None


def setup(level: str = "info", json_lines: bool = False, stream: TextIO | None = None) -> None:
    """Configure the `dkron` logger tree; ValueError for an unknown level name."""
    global _handler
    numeric = parse_level(level)
    logger = logging.getLogger(LOGGER_NAME)
    if _handler is not None:
        logger.removeHandler(_handler)
    _handler = _StreamHandler(stream if stream is not None else sys.stderr)
    _handler.setFormatter(_Formatter(json_lines))
    logger.addHandler(_handler)
    logger.setLevel(numeric)
    logger.propagate = False


def event_at(level: str | int, name: str, **fields: Any) -> None:
    """Write event `name` with `fields` at `level` (a name such as "warn" or a logging level)."""
    numeric = level if isinstance(level, int) else parse_level(level)
    logger = logging.getLogger(LOGGER_NAME)
    if logger.isEnabledFor(numeric):
        logger.log(numeric, name, extra={"dkron_event": name, "dkron_fields": fields})


def event(name: str, **fields: Any) -> None:
    """Write one event line; a failed finish (`success=False`) is a warning, the rest info."""
    failed_finish = name == "finish" and fields.get("success") is False
    event_at(logging.WARNING if failed_finish else logging.INFO, name, **fields)
