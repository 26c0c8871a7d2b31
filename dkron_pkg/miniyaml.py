"""A small YAML reader for configuration files, so that dkron.pyz needs no third-party YAML library.

It reads the part of YAML 1.2 that configuration files use and rejects everything else with a
``file:line: message`` error instead of guessing.

Supported:

* block mappings (``key: value``) and block sequences (``- item``) nested by indentation
  (spaces only), including a sequence written at the same indentation as its key and
  compact forms such as ``- name: x``;
* flow sequences ``[a, b]`` and flow mappings ``{a: 1}``, nested, also spread over lines;
* plain scalars resolved by the YAML 1.2 core schema: ``null``/``~``/empty, ``true``/``false``
  (also ``True``, ``TRUE`` ...), decimal, ``0o`` octal and ``0x`` hex integers, floats,
  ``.inf`` and ``.nan``; anything else is a string (``yes``/``no``/``on``/``off`` stay strings,
  as YAML 1.2 says);
* single-quoted (``''`` escapes a quote) and double-quoted strings with backslash escapes,
  each on one line;
* literal ``|`` and folded ``>`` block scalars with ``-``/``+`` chomping and an optional
  indentation digit;
* ``#`` comments, a leading ``---`` and a trailing ``...``.

Rejected with an error: tabs in indentation, anchors ``&``, aliases ``*``, tags ``!``,
directives ``%``, complex keys ``?``, several documents, plain scalars continued on the next
line, quoted strings spread over lines, duplicate keys and ``key: value`` inside a plain value.
Keys are always strings.
"""

from __future__ import annotations

import bisect
import math
import re
from typing import Any

__all__ = ["YamlError", "load_file", "loads"]


class YamlError(ValueError):
    """A document outside the supported subset or malformed; the message starts with file:line."""

    def __init__(self, source: str, line: int, message: str) -> None:
        super().__init__(f"{source}:{line}: {message}")
        self.source = source
        self.line = line
        self.reason = message


_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT10 = re.compile(r"[-+]?[0-9]+")
_INT8 = re.compile(r"0o[0-7]+")
_INT16 = re.compile(r"0x[0-9a-fA-F]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(inf|Inf|INF)")
_NAN = re.compile(r"\.(nan|NaN|NAN)")
_BLOCK_HEADER = re.compile(r"([|>])([-+]?)([1-9]?)([-+]?)")
_ESCAPES = {
    "0": "\0",
    "a": "\a",
    "b": "\b",
    "t": "\t",
    "\t": "\t",
    "n": "\n",
    "v": "\v",
    "f": "\f",
    "r": "\r",
    "e": "\x1b",
    " ": " ",
    '"': '"',
    "/": "/",
    "\\": "\\",
    "N": "\x85",
    "_": "\xa0",
    "L": "\u2028",
    "P": "\u2029",
}
_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_UNSUPPORTED_START = {
    "&": "anchors (&) are not supported",
    "*": "aliases (*) are not supported",
    "!": "tags (!) are not supported",
    "%": "directives (%) are not supported",
    "@": "'@' cannot start a plain value; quote it",
    "`": "'`' cannot start a plain value; quote it",
}


def resolve_plain(text: str) -> Any:
    """Give a plain (unquoted) scalar its YAML 1.2 core-schema type."""
    if text in _NULL:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT10.fullmatch(text):
        return int(text, 10)
    if _INT8.fullmatch(text):
        return int(text, 0)
    if _INT16.fullmatch(text):
        return int(text, 0)
    if _FLOAT.fullmatch(text):
        return float(text)
    if _INF.fullmatch(text):
        return -math.inf if text.startswith("-") else math.inf
    if _NAN.fullmatch(text):
        return math.nan
    return text


class _Line:
    """One physical line: where it starts in the text, its indentation and its content."""

    __slots__ = ("end", "indent", "number", "start")

    def __init__(self, number: int, start: int, end: int, indent: int) -> None:
        self.number = number
        self.start = start
        self.end = end
        self.indent = indent


class _Parser:
    """Recursive descent over lines for block structure and over characters for flow values."""

    def __init__(self, text: str, source: str) -> None:
        text = text.removeprefix("\ufeff")
        self.text = text.replace("\r\n", "\n").replace("\r", "\n")
        self.source = source
        self.lines: list[_Line] = []
        pos = 0
        raws = self.text.split("\n")
        if len(raws) > 1 and raws[-1] == "":
            raws.pop()  # the final newline ends the last line; it does not start another
        for number, raw in enumerate(raws, start=1):
            indent = len(raw) - len(raw.lstrip(" "))
            self.lines.append(_Line(number, pos, pos + len(raw), indent))
            pos += len(raw) + 1
        self.starts = [ln.start for ln in self.lines]
        self.i = 0  # index of the next line to look at

    # -- helpers -------------------------------------------------------------------------------

    def error(self, message: str, offset: int | None = None, line: int | None = None) -> YamlError:
        if line is None:
            if offset is None:
                line = self.lines[min(self.i, len(self.lines) - 1)].number
            else:
                line = bisect.bisect_right(self.starts, offset)
        return YamlError(self.source, line, message)

    def content(self, ln: _Line) -> str:
        return self.text[ln.start + ln.indent : ln.end]

    def is_blank(self, ln: _Line) -> bool:
        body = self.text[ln.start : ln.end].strip(" \t")
        return body == "" or body.startswith("#")

    def next_line(self) -> _Line | None:
        """Skip blank and comment lines; return the next line with content (not consumed)."""
        while self.i < len(self.lines):
            ln = self.lines[self.i]
            if not self.is_blank(ln):
                raw = self.text[ln.start : ln.end]
                if raw[: ln.indent + 1].endswith("\t"):
                    raise self.error("tabs are not allowed for indentation; use spaces")
                return ln
            self.i += 1
        return None

    def line_end(self, offset: int) -> int:
        return self.lines[bisect.bisect_right(self.starts, offset) - 1].end

    def expect_line_end(self, offset: int) -> None:
        """After a value only spaces and a comment may follow on the same line."""
        rest = self.text[offset : self.line_end(offset)]
        stripped = rest.lstrip(" \t")
        if stripped and not (stripped.startswith("#") and len(stripped) < len(rest)):
            raise self.error(f"unexpected text after the value: {stripped!r}", offset)

    def skip_to_line_after(self, offset: int) -> None:
        self.i = bisect.bisect_right(self.starts, offset)

    # -- document ------------------------------------------------------------------------------

    def document(self) -> Any:
        ln = self.next_line()
        if ln is None:
            return None
        if ln.indent == 0 and self.content(ln).startswith("%"):
            raise self.error("directives (%) are not supported")
        if self.is_marker(ln, "---"):
            rest = self.text[ln.start + 3 : ln.end]
            if rest.strip(" \t") and not rest.strip(" \t").startswith("#"):
                raise self.error("a value on the '---' line is not supported; start it below")
            self.i += 1
            ln = self.next_line()
            if ln is None:
                return None
        value = self.block(ln.indent, allow_scalar=True)
        ln = self.next_line()
        if ln is not None:
            if self.is_marker(ln, "..."):
                self.i += 1
                if self.next_line() is None:
                    return value
            if self.is_marker(ln, "---") or self.is_marker(ln, "..."):
                raise self.error("only one document per file is supported")
            raise self.error("unexpected indentation or text after the document")
        return value

    def is_document_marker(self, ln: _Line) -> bool:
        return ln.indent == 0 and (self.is_marker(ln, "---") or self.is_marker(ln, "..."))

    def is_marker(self, ln: _Line, marker: str) -> bool:
        raw = self.text[ln.start : ln.end]
        return raw.startswith(marker) and (len(raw) == 3 or raw[3] in " \t")

    # -- block structure -----------------------------------------------------------------------

    def block(self, indent: int, allow_scalar: bool = False) -> Any:
        """Parse the node whose first line is the next line, at exactly `indent` columns."""
        ln = self.next_line()
        assert ln is not None and ln.indent == indent
        body = self.content(ln)
        if self.is_seq_entry(body):
            return self.sequence(indent)
        if self.mapping_colon(ln.start + indent, ln.end) is not None or body.startswith(("? ",)):
            return self.mapping(indent)
        if not allow_scalar:
            raise self.error("expected 'key: value' or '- item'")
        value, _ = self.inline_value(ln.start + indent, indent - 1)
        return value

    @staticmethod
    def is_seq_entry(body: str) -> bool:
        return body == "-" or body.startswith(("- ", "-\t"))

    def sequence(self, indent: int) -> list[Any]:
        items: list[Any] = []
        while True:
            ln = self.next_line()
            if ln is None or ln.indent < indent or self.is_document_marker(ln):
                return items
            if ln.indent > indent:
                raise self.error("bad indentation: this line is deeper than the list around it")
            if not self.is_seq_entry(self.content(ln)):
                return items  # e.g. the next key of a mapping whose list sat at its indentation
            items.append(self.entry_value(ln, ln.start + indent + 1, indent))

    def mapping(self, indent: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        while True:
            ln = self.next_line()
            if ln is None or ln.indent < indent or self.is_document_marker(ln):
                return result
            if ln.indent > indent:
                raise self.error("bad indentation: this line is deeper than the keys around it")
            start = ln.start + indent
            if self.text.startswith("? ", start) or self.text[start : ln.end] == "?":
                raise self.error("complex keys ('?') are not supported")
            if self.is_seq_entry(self.content(ln)):
                raise self.error("a list item cannot follow mapping keys at the same indentation")
            key, after = self.key(start, ln.end)
            if key in result:
                raise self.error(f"duplicate key {key!r}")
            result[key] = self.entry_value(ln, after, indent, mapping_value=True)

    def key(self, start: int, end: int) -> tuple[str, int]:
        """Read a mapping key; return it and the offset just after its colon."""
        ch = self.text[start]
        if ch in "\"'":
            key, pos = self.quoted(start)
            if not self.text.startswith(":", pos) or not (
                pos + 1 >= end or self.text[pos + 1] in " \t"
            ):
                raise self.error("expected ':' after the quoted key", pos)
            return key, pos + 1
        colon = self.mapping_colon(start, end)
        if colon is None:
            raise self.error("expected 'key: value'", start)
        if ch in _UNSUPPORTED_START:
            raise self.error(_UNSUPPORTED_START[ch], start)
        if ch in "[{":
            raise self.error("flow collections as keys are not supported", start)
        key = self.text[start:colon].rstrip(" \t")
        return key, colon + 1

    def mapping_colon(self, start: int, end: int) -> int | None:
        """Offset of the ':' that ends a plain or quoted key on this line, if it is a key line."""
        ch = self.text[start] if start < end else ""
        if ch in "\"'":
            try:
                _, pos = self.quoted(start)
            except YamlError:
                return None
            pos_ok = pos < end and self.text[pos] == ":"
            return pos if pos_ok and (pos + 1 >= end or self.text[pos + 1] in " \t") else None
        if ch in "[{#" or ch == "":
            return None
        pos = start
        while pos < end:
            c = self.text[pos]
            if c == "#" and pos > start and self.text[pos - 1] in " \t":
                return None
            if c == ":" and (pos + 1 >= end or self.text[pos + 1] in " \t"):
                return pos
            pos += 1
        return None

    def entry_value(self, ln: _Line, pos: int, indent: int, mapping_value: bool = False) -> Any:
        """The value after '- ' or 'key:' starting at `pos` on line `ln`."""
        text = self.text
        while pos < ln.end and text[pos] in " \t":
            pos += 1
        rest = text[pos : ln.end]
        if rest == "" or rest.startswith("#"):
            self.i += 1
            nxt = self.next_line()
            if nxt is None or nxt.indent < indent:
                return None
            if nxt.indent == indent:
                if mapping_value and self.is_seq_entry(self.content(nxt)):
                    return self.sequence(indent)
                return None
            return self.block(nxt.indent)
        if rest[0] in "|>":
            return self.block_scalar(ln, pos, indent)
        if mapping_value and self.is_seq_entry(rest):
            raise self.error("a list cannot start on the same line as its key", pos)
        if self.is_seq_entry(rest) or (
            not mapping_value and self.mapping_colon(pos, ln.end) is not None
        ):
            # compact nested node: "- - a" or "- key: v"; re-read this line at its column.
            ln.indent = pos - ln.start
            return self.block(ln.indent)
        value, _ = self.inline_value(pos, indent)
        return value

    def inline_value(self, pos: int, indent: int) -> tuple[Any, int]:
        """A flow collection, quoted string or plain scalar that starts on the current line."""
        ch = self.text[pos]
        if ch in "[{":
            value, end = self.flow(pos)
            self.expect_line_end(end)
            self.skip_to_line_after(end)
        elif ch in "\"'":
            value, end = self.quoted(pos)
            self.expect_line_end(end)
            self.skip_to_line_after(end)
        else:
            value, end = self.plain(pos, flow=False)
            self.skip_to_line_after(end)
        self.reject_continuation(indent)
        return value, end

    def reject_continuation(self, indent: int) -> None:
        ln = self.next_line()
        if ln is not None and ln.indent > indent:
            raise self.error(
                "unexpected indentation (a value continued on the next line is not supported;"
                " use a quoted string or a '|' block)"
            )

    def plain(self, pos: int, flow: bool) -> tuple[Any, int]:
        text = self.text
        ch = text[pos]
        if ch in _UNSUPPORTED_START:
            raise self.error(_UNSUPPORTED_START[ch], pos)
        if ch in "]}," and flow:
            raise self.error(f"unexpected {ch!r}", pos)
        if ch in "]}" and not flow:
            raise self.error(f"unexpected {ch!r}", pos)
        end = self.line_end(pos)
        stop = pos
        while stop < end:
            c = text[stop]
            if c == "#" and text[stop - 1] in " \t":
                break
            enders = " \t,]}" if flow else " \t"
            if c == ":" and (stop + 1 >= end or text[stop + 1] in enders):
                if flow:
                    break
                raise self.error(
                    "a ': ' inside a plain value is not allowed; quote the value", stop
                )
            if flow and c in ",]}":
                break
            stop += 1
        value = text[pos:stop].rstrip(" \t")
        return resolve_plain(value), pos + len(value) if value else stop

    def quoted(self, pos: int) -> tuple[str, int]:
        """Read a quoted string starting at `pos` on one line; return it and the offset after it."""
        text = self.text
        quote = text[pos]
        end = self.line_end(pos)
        out: list[str] = []
        i = pos + 1
        while i < end:
            c = text[i]
            if c == quote:
                if quote == "'" and i + 1 < end and text[i + 1] == "'":
                    out.append("'")
                    i += 2
                    continue
                return "".join(out), i + 1
            if c == "\\" and quote == '"':
                if i + 1 >= end:
                    break
                esc = text[i + 1]
                if esc in _ESCAPES:
                    out.append(_ESCAPES[esc])
                    i += 2
                    continue
                if esc in _HEX_ESCAPES:
                    width = _HEX_ESCAPES[esc]
                    digits = text[i + 2 : i + 2 + width]
                    if len(digits) != width or not all(
                        d in "0123456789abcdefABCDEF" for d in digits
                    ):
                        raise self.error(
                            f"bad escape '\\{esc}{digits}' in a double-quoted string", i
                        )
                    code = int(digits, 16)
                    i += 2 + width
                    low = text[i + 2 : i + 6] if text.startswith("\\u", i) else ""
                    if 0xD800 <= code < 0xDC00 and len(low) == 4 and "dc00" <= low.lower() < "e000":
                        code = 0x10000 + ((code - 0xD800) << 10) + (int(low, 16) - 0xDC00)
                        i += 6  # a JSON-style surrogate pair names one character
                    out.append(chr(code))
                    continue
                raise self.error(f"unknown escape '\\{esc}' in a double-quoted string", i)
            out.append(c)
            i += 1
        raise self.error(
            "quoted string not closed on this line (strings over several lines are not supported)",
            pos,
        )

    def flow(self, pos: int) -> tuple[Any, int]:
        """Read a flow sequence or mapping starting at `pos`; it may span lines."""
        text = self.text
        opener = text[pos]
        closer = "]" if opener == "[" else "}"
        items: list[Any] = []
        mapping: dict[str, Any] = {}
        i = self.skip_space(pos + 1)
        while True:
            if i >= len(text):
                raise self.error(f"'{opener}' is never closed", pos)
            if text[i] == closer:
                return (items if opener == "[" else mapping), i + 1
            if text[i] == ",":
                raise self.error("unexpected ','", i)
            value, i = self.flow_node(i)
            i = self.skip_space(i)
            if opener == "{" or (i < len(text) and text[i] == ":"):
                if i >= len(text) or text[i] != ":":
                    raise self.error("expected ':' after a key in a flow mapping", i)
                if not isinstance(value, (str, int, float, bool)) and value is not None:
                    raise self.error("flow collections as keys are not supported", i)
                key = _key_text(value)
                i = self.skip_space(i + 1)
                if i < len(text) and text[i] in ",}]":
                    val: Any = None
                else:
                    val, i = self.flow_node(i)
                    i = self.skip_space(i)
                if opener == "{":
                    if key in mapping:
                        raise self.error(f"duplicate key {key!r}", i)
                    mapping[key] = val
                else:
                    items.append({key: val})
            else:
                items.append(value)
            if i >= len(text):
                raise self.error(f"'{opener}' is never closed", pos)
            if text[i] == ",":
                i = self.skip_space(i + 1)
            elif text[i] != closer:
                opened = bisect.bisect_right(self.starts, pos)
                raise self.error(
                    f"expected ',' or '{closer}' (the '{opener}' of line {opened} is not closed)", i
                )

    def flow_node(self, i: int) -> tuple[Any, int]:
        ch = self.text[i]
        if ch in "[{":
            return self.flow(i)
        if ch in "\"'":
            return self.quoted(i)
        if ch in "|>":
            raise self.error("block scalars cannot appear inside [ ] or { }", i)
        return self.plain(i, flow=True)

    def skip_space(self, i: int) -> int:
        """Skip spaces, newlines and comments inside a flow collection."""
        text = self.text
        while i < len(text):
            c = text[i]
            if c in " \t\n":
                i += 1
            elif c == "#" and (i == 0 or text[i - 1] in " \t\n"):
                nl = text.find("\n", i)
                i = len(text) if nl < 0 else nl
            else:
                break
        return i

    def block_scalar(self, ln: _Line, pos: int, indent: int) -> str:
        """A '|' (literal) or '>' (folded) block scalar whose header is at `pos`."""
        header_end = pos
        while header_end < ln.end and self.text[header_end] not in " \t":
            header_end += 1
        header = self.text[pos:header_end]
        m = _BLOCK_HEADER.fullmatch(header)
        if not m or (m.group(2) and m.group(4)):
            raise self.error(f"bad block scalar header {header!r}", pos)
        self.expect_line_end(header_end)
        style, chomp, digit = m.group(1), m.group(2) or m.group(4), m.group(3)
        self.i += 1
        content_indent = indent + int(digit) if digit else None
        lines: list[str] = []
        while self.i < len(self.lines):
            cur = self.lines[self.i]
            raw = self.text[cur.start : cur.end]
            if raw.strip(" ") == "":
                lines.append(raw)
                self.i += 1
                continue
            if content_indent is None:
                if cur.indent <= indent:
                    break
                if raw[cur.indent : cur.indent + 1] == "\t":
                    raise self.error("tabs are not allowed for indentation; use spaces")
                content_indent = cur.indent
            if cur.indent < content_indent:
                if cur.indent > indent and not raw.lstrip(" ").startswith("#"):
                    raise self.error("bad indentation inside a block scalar")
                break
            lines.append(raw)
            self.i += 1
        width = content_indent or 0
        body = [line[width:] if len(line) >= width else "" for line in lines]
        trailing = 0
        while body and body[-1] == "":
            body.pop()
            trailing += 1
        text = "\n".join(body) if style == "|" else _fold(body)
        if not body:
            return "\n" * trailing if chomp == "+" else ""
        if chomp == "-":
            return text
        if chomp == "+":
            return text + "\n" + "\n" * trailing
        return text + "\n"


def _key_text(value: Any) -> str:
    """Keys are strings: a flow key that resolved to another scalar is written back as text."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _fold(lines: list[str]) -> str:
    """Folding for '>' scalars: a single break between two text lines becomes a space, each
    empty line stays a newline, and breaks around more-indented lines are kept."""
    out = ""
    prev: str | None = None
    empty = 0
    for line in lines:
        if line == "":
            empty += 1
            continue
        if prev is None:
            out += "\n" * empty
        elif prev.startswith((" ", "\t")) or line.startswith((" ", "\t")):
            out += "\n" * (empty + 1)
        else:
            out += "\n" * empty if empty else " "
        out += line
        prev, empty = line, 0
    return out


def loads(text: str, source: str = "<string>") -> Any:
    """Parse one YAML document in the supported subset; `source` names it in error messages."""
    return _Parser(text, source).document()


def load_file(path: str) -> Any:
    """Read and parse a YAML file; errors name the file and line."""
    with open(path, encoding="utf-8") as f:
        return loads(f.read(), path)
