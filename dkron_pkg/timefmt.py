"""RFC 3339 times as Dkron's JSON carries them (zero time = "0001-01-01T00:00:00Z")."""

from __future__ import annotations

import re
from datetime import UTC, datetime

ZERO_TIME = "0001-01-01T00:00:00Z"
_LOCAL_FORM = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2})?$")


def parse_rfc3339(text: str) -> datetime:
    """Parse RFC 3339 (or the HTML datetime-local form, read as UTC) into an aware datetime."""
    s = text.strip()
    if _LOCAL_FORM.match(s):
        return datetime.fromisoformat(s).replace(tzinfo=UTC)
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    # Python 3.11 fromisoformat accepts fractions of any length and offsets.
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise ValueError(f'invalid time "{text}": expected RFC 3339 such as 2024-01-02T15:04:05Z')
    if dt.tzinfo is None or "T" not in s.upper():
        raise ValueError(f'invalid time "{text}": expected RFC 3339 with a time zone offset')
    return dt


def format_rfc3339(dt: datetime | None, tz=None) -> str:
    """Format an aware datetime as RFC 3339 (in `tz` when given); None gives the zero time."""
    if dt is None:
        return ZERO_TIME
    if tz is not None:
        dt = dt.astimezone(tz)
    if dt.utcoffset() == UTC.utcoffset(None) and tz is None:
        dt = dt.astimezone(UTC)
        base = dt.strftime("%Y-%m-%dT%H:%M:%S")
        frac = f".{dt.microsecond:06d}".rstrip("0").rstrip(".") if dt.microsecond else ""
        return base + frac + "Z"
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f".{dt.microsecond:06d}".rstrip("0").rstrip(".") if dt.microsecond else ""
    off = dt.strftime("%z")
    return base + frac + (off[:3] + ":" + off[3:] if off else "Z")


def ns_to_datetime(ns: int) -> datetime:
    """Unix nanoseconds to an aware UTC datetime (microsecond precision)."""
    return datetime.fromtimestamp(ns / 1e9, tz=UTC)


def datetime_to_ns(dt: datetime) -> int:
    """Aware datetime to Unix nanoseconds."""
    return round(dt.timestamp() * 1e6) * 1000
