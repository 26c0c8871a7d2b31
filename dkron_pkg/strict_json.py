"""JSON decoding for request bodies, with bounds a client cannot push past.

Python's `json.loads` accepts NaN and Infinity, recurses once per nesting level (a body nested
50,000 deep raises RecursionError) and turns integers of more than 4,300 digits into a
ValueError. Each of those became a 500. `loads` here refuses them all with `JsonError`, whose
message says what was wrong and where, so the API answers 400.
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32  # a job is 3 levels deep, a restore file 4
MAX_INT_DIGITS = 20  # enough for any 64-bit integer
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonError(ValueError):
    """The body is not JSON we accept; the message is meant for the client."""


def _reject_constant(name: str) -> Any:
    raise JsonError(f"{name} is not a JSON number")


def _bounded_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise JsonError(f"an integer of {digits} digits is too long (at most {MAX_INT_DIGITS})")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise JsonError(f"the number {shown} is out of range")
    return value


def nesting_depth(text: str) -> int:
    """How deeply arrays and objects nest in `text` (brackets inside strings do not count).

    Exact above MAX_DEPTH; below it, a cheap upper bound (the number of opening brackets).
    """
    opening = text.count("[") + text.count("{")
    if opening <= MAX_DEPTH:
        return opening
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    steps = (1 if ch in "[{" else -1 for ch in brackets)
    return max(accumulate(steps), default=0)


def loads(data: bytes | str) -> Any:
    """Decode a UTF-8 JSON document; JsonError names what is refused."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise JsonError(f"body is not UTF-8 (byte {e.start})") from None
    else:
        text = data
    depth = nesting_depth(text)
    if depth > MAX_DEPTH:
        raise JsonError(f"arrays and objects nest {depth} deep (at most {MAX_DEPTH})")
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_bounded_int,
            parse_float=_finite_float,
        )
    except JsonError:
        raise
    except json.JSONDecodeError as e:
        raise JsonError(f"{e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # a bound the checks above did not foresee
        raise JsonError(str(e) or type(e).__name__) from None
