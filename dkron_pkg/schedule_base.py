"""The schedule error type and the base class every schedule kind shares.

Schedules compute in whole Unix seconds (`next_after_epoch`), because the leader asks for the
next fire time of thousands of jobs and integer arithmetic is both exact and fast; the
datetime form (`next_after`) is a thin wrapper for everyone else.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SECOND = timedelta(seconds=1)
PARSE_PREFIX = "can't parse job schedule: "


class ScheduleError(ValueError):
    """A schedule or time zone the user gave is not valid; str(e) is the message to show."""


def parse_error(detail: str) -> ScheduleError:
    """A ScheduleError for bad schedule text, worded as all schedule parse errors are."""
    return ScheduleError(PARSE_PREFIX + detail)


def to_epoch(moment: datetime) -> int:
    """Whole Unix seconds at or before an aware datetime (exact, no float rounding)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("schedule times must be timezone-aware datetimes")
    return (moment - EPOCH) // _SECOND


def from_epoch(seconds: int) -> datetime:
    """The aware UTC datetime of whole Unix seconds."""
    return EPOCH + timedelta(seconds=seconds)


def zone_name(tz: tzinfo) -> str:
    """The IANA name of a zone when it has one ("Europe/Berlin"), else its printable form."""
    key = getattr(tz, "key", None)
    return key if key else str(tz)


class Schedule:
    """When a job fires. Concrete kinds implement `next_after_epoch` and `describe`.

    Instances are immutable and shared through the parse cache, so they keep no state
    between calls; the caller passes the last scheduled time to keep the phase.
    """

    kind: str = ""

    def __init__(self, spec: str, tz: tzinfo) -> None:
        self.spec = spec
        self.tz = tz

    def next_after_epoch(self, after: int) -> int | None:
        """First fire time in Unix seconds strictly after `after`; None when it never fires again."""
        raise NotImplementedError

    def next_after(self, after: datetime) -> datetime | None:
        """First fire time strictly after the aware datetime `after`, in UTC whole seconds.

        Fire times are whole seconds, so "after a fractional time" equals "after its floor".
        """
        nxt = self.next_after_epoch(to_epoch(after))
        return None if nxt is None else from_epoch(nxt)

    def describe(self) -> str:
        """The schedule in plain words, for the API and the UI."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.spec!r} {zone_name(self.tz)}>"
