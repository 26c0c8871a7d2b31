"""The five crontab time fields, parsed the way Debian cron (and, on request, cronie) parses them.

Debian reads a field character by character: a list of ranges separated by commas, where a range
is `*`, `N` or `N-M`, optionally followed by `/STEP`. Whatever follows the last complete range up
to the next blank is silently skipped (so `5#3` means `5`). Range ends must lie inside the field;
a reversed range (`10-5`, `fri-sun`) is accepted and selects nothing. A step on a single number
(`5/10`) and a zero step are errors. cronie additionally reads `X-0` in the day-of-week field as
`X-7` and `a~b` as one random value chosen when the file is read.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
DOW_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat", "sun")

DIALECTS = ("debian", "cronie")


class CronFieldError(ValueError):
    """A field that cron rejects; the message is cron's own error word (e.g. "bad minute")."""


@dataclass(frozen=True)
class FieldSpec:
    name: str
    low: int
    high: int
    names: tuple[str, ...] | None

    @property
    def error(self) -> str:
        return f"bad {self.name}"


MINUTE = FieldSpec("minute", 0, 59, None)
HOUR = FieldSpec("hour", 0, 23, None)
DOM = FieldSpec("day-of-month", 1, 31, None)
MONTH = FieldSpec("month", 1, 12, MONTH_NAMES)
DOW = FieldSpec("day-of-week", 0, 7, DOW_NAMES)
FIELD_SPECS = (MINUTE, HOUR, DOM, MONTH, DOW)


@dataclass
class ParsedField:
    """One parsed field: the selected values, cron's star flag and the canonical text."""

    values: frozenset[int]
    star: bool
    text: str
    canonical: str
    warnings: list[str] = field(default_factory=list)


class _Reader:
    """Cursor over one field's text, reading numbers and names as cron's get_number does."""

    def __init__(self, text: str, spec: FieldSpec) -> None:
        self.text = text
        self.pos = 0
        self.spec = spec

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def number(self, names: tuple[str, ...] | None, low: int) -> int:
        start = self.pos
        while self.pos < len(self.text) and _is_c_alnum(self.text[self.pos]):
            self.pos += 1
        word = self.text[start : self.pos]
        if not word:
            raise CronFieldError(self.spec.error)
        if names:
            for index, name in enumerate(names):
                if word.lower() == name:
                    return index + low
        if word.isascii() and word.isdigit():
            return int(word)
        raise CronFieldError(self.spec.error)


def _is_c_alnum(ch: str) -> bool:
    return ch.isascii() and ch.isalnum()


def _pick_random(low: int, high: int, seed: str, spec: FieldSpec) -> int:
    """cronie's `~` picks a random value when the file is read; we pick a stable one instead."""
    if high < low:
        return low
    digest = zlib.crc32(f"{seed}|{spec.name}".encode())
    return low + digest % (high - low + 1)


def parse_field(text: str, spec: FieldSpec, dialect: str = "debian", seed: str = "") -> ParsedField:
    """Parse one time field; raise CronFieldError(cron's error word) when cron would reject it."""
    if dialect not in DIALECTS:
        raise ValueError(f"unknown dialect {dialect!r} (expected debian or cronie)")
    reader = _Reader(text, spec)
    values: set[int] = set()
    pieces: list[str] = []
    warnings: list[str] = []
    while True:
        element_start = reader.pos
        piece = _parse_range(reader, spec, dialect, seed, values, warnings)
        pieces.append(piece if piece is not None else text[element_start : reader.pos])
        if reader.peek() == ",":
            reader.pos += 1
            continue
        break
    rest = text[reader.pos :]
    if rest:
        warnings.append(
            f"{spec.name} field {text!r}: cron ignores the trailing {rest!r} "
            f"and reads it as {text[: reader.pos]!r}"
        )
    if spec is DOW and (0 in values or 7 in values):
        values.update((0, 7))
    return ParsedField(
        values=frozenset(values),
        star=text.startswith("*"),
        text=text,
        canonical=",".join(pieces),
        warnings=warnings,
    )


def _check(value: int, spec: FieldSpec) -> int:
    if not spec.low <= value <= spec.high:
        raise CronFieldError(spec.error)
    return value


def _parse_range(
    reader: _Reader,
    spec: FieldSpec,
    dialect: str,
    seed: str,
    values: set[int],
    warnings: list[str],
) -> str | None:
    """Read one range into `values`; return replacement text when the canonical form differs."""
    replacement: str | None = None
    if reader.peek() == "*":
        reader.pos += 1
        first, last = spec.low, spec.high
    elif dialect == "cronie" and reader.peek() == "~":
        return _parse_random(reader, spec, seed, values, warnings, None)
    else:
        first = _check(reader.number(spec.names, spec.low), spec)
        if dialect == "cronie" and reader.peek() == "~":
            return _parse_random(reader, spec, seed, values, warnings, first)
        if reader.peek() != "-":
            if reader.peek() == "/":
                raise CronFieldError(spec.error)
            values.add(first)
            return None
        reader.pos += 1
        last = _check(reader.number(spec.names, spec.low), spec)
        if last < first:
            if dialect == "cronie" and spec is DOW and last == 0:
                warnings.append(
                    f"day-of-week range {first}-0 means {first}-7 in cronie "
                    "but selects no day in Debian cron"
                )
                last = 7
                replacement = f"{first}-7"
            else:
                warnings.append(
                    f"{spec.name} range {reader.text!r} is reversed: cron accepts it "
                    "but it selects nothing, so the entry never runs"
                )
    step = 1
    if reader.peek() == "/":
        reader.pos += 1
        step = reader.number(None, 0)
        if step == 0:
            raise CronFieldError(spec.error)
        if replacement is not None:
            replacement += f"/{step}"
    values.update(range(first, last + 1, step))
    return replacement


def _parse_random(
    reader: _Reader,
    spec: FieldSpec,
    seed: str,
    values: set[int],
    warnings: list[str],
    first: int | None,
) -> str:
    reader.pos += 1  # the `~`
    low = spec.low if first is None else first
    high = spec.high
    if reader.peek() and _is_c_alnum(reader.peek()):
        high = _check(reader.number(spec.names, spec.low), spec)
    chosen = _pick_random(low, high, seed, spec)
    values.add(chosen)
    warnings.append(
        f"{spec.name} uses cronie's random '~': cronie picks a new value each time it reads "
        f"the file; the import fixes it at {chosen}"
    )
    return str(chosen)
