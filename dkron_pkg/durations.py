"""Go-style duration strings ("1h30m", "500ms", "2.5s"), as Dkron's config and jobs use them."""

from __future__ import annotations

import re

_UNITS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "μs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Return the duration in seconds; raise ValueError naming the text when it is not Go syntax."""
    s = text.strip()
    if not s:
        raise ValueError('invalid duration "": empty')
    sign = 1.0
    if s[0] in "+-":
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    pos, total = 0, 0.0
    while pos < len(s):
        m = _PART.match(s, pos)
        if not m:
            raise ValueError(
                f'invalid duration "{text}": expected a number and a unit (ns, us, ms, s, m, h)'
            )
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos == 0:
        raise ValueError(f'invalid duration "{text}"')
    return sign * total


def format_duration(seconds: float) -> str:
    """Render seconds as a short Go-style duration ("1h2m3s", "500ms")."""
    if seconds == 0:
        return "0s"
    neg = seconds < 0
    seconds = abs(seconds)
    if seconds < 1:
        out = f"{seconds * 1000:g}ms"
    else:
        whole = int(seconds)
        frac = seconds - whole
        h, rem = divmod(whole, 3600)
        m, s = divmod(rem, 60)
        out = ""
        if h:
            out += f"{h}h"
        if h or m:
            out += f"{m}m"
        out += f"{s + frac:g}s"
    return ("-" if neg else "") + out
