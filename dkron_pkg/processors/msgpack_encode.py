"""A minimal MessagePack encoder: enough for Fluent's forward protocol, no dependency."""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any


def packb(value: Any) -> bytes:
    """Encode None, bool, int, float, str, bytes, lists/tuples and mappings as MessagePack."""
    out = bytearray()
    _pack(value, out)
    return bytes(out)


def _pack(value: Any, out: bytearray) -> None:
    if value is None:
        out.append(0xC0)
    elif value is True:
        out.append(0xC3)
    elif value is False:
        out.append(0xC2)
    elif isinstance(value, int):
        _pack_int(value, out)
    elif isinstance(value, float):
        out.append(0xCB)
        out += struct.pack(">d", value)
    elif isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
        _pack_len(len(data), out, fix=(0xA0, 31), codes=(0xD9, 0xDA, 0xDB))
        out += data
    elif isinstance(value, bytes | bytearray | memoryview):
        data = bytes(value)
        _pack_len(len(data), out, fix=None, codes=(0xC4, 0xC5, 0xC6))
        out += data
    elif isinstance(value, list | tuple):
        _pack_len(len(value), out, fix=(0x90, 15), codes=(None, 0xDC, 0xDD))
        for item in value:
            _pack(item, out)
    elif isinstance(value, Mapping):
        _pack_len(len(value), out, fix=(0x80, 15), codes=(None, 0xDE, 0xDF))
        for key, item in value.items():
            _pack(key, out)
            _pack(item, out)
    else:
        raise TypeError(f"cannot encode {type(value).__name__} as MessagePack")


def _pack_len(
    n: int, out: bytearray, fix: tuple[int, int] | None, codes: tuple[int | None, int, int]
) -> None:
    """Header for a str/bin/array/map of length n: fix form, then 8-, 16-, 32-bit lengths."""
    if fix is not None and n <= fix[1]:
        out.append(fix[0] | n)
    elif codes[0] is not None and n < 1 << 8:
        out += bytes((codes[0], n))
    elif n < 1 << 16:
        out.append(codes[1])
        out += struct.pack(">H", n)
    elif n < 1 << 32:
        out.append(codes[2])
        out += struct.pack(">I", n)
    else:
        raise ValueError("MessagePack cannot hold more than 2**32-1 items or bytes")


def _pack_int(n: int, out: bytearray) -> None:
    if 0 <= n <= 0x7F:
        out.append(n)
    elif -32 <= n < 0:
        out.append(n & 0xFF)
    elif n >= 0:
        for code, fmt, limit in ((0xCC, ">B", 8), (0xCD, ">H", 16), (0xCE, ">I", 32)):
            if n < 1 << limit:
                out.append(code)
                out += struct.pack(fmt, n)
                return
        if n >= 1 << 64:
            raise ValueError(f"integer {n} is too large for MessagePack")
        out.append(0xCF)
        out += struct.pack(">Q", n)
    else:
        for code, fmt, limit in ((0xD0, ">b", 7), (0xD1, ">h", 15), (0xD2, ">i", 31)):
            if n >= -(1 << limit):
                out.append(code)
                out += struct.pack(fmt, n)
                return
        if n < -(1 << 63):
            raise ValueError(f"integer {n} is too small for MessagePack")
        out.append(0xD3)
        out += struct.pack(">q", n)
