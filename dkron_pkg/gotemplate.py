"""The small subset of Go's text/template that Dkron's notification payloads use.

Dkron renders `mail-payload`, `webhook-payload` and `pre-webhook-payload` with Go templates, so
operators already have templates such as ``{"text": "{{.JobName}} {{.Success}}"}``. This module
renders those without Go. Supported (anything else is a TemplateError naming line and column):

- text, and actions ``{{ pipeline }}``; trim markers ``{{- `` and `` -}}`` remove the white space
  (space, tab, CR, LF) before/after the action, as in Go (the dash must be followed/preceded
  by white space);
- comments ``{{/* ... */}}``;
- ``{{if pipeline}} ... {{else if pipeline}} ... {{else}} ... {{end}}``;
- operands: ``.Field`` and chains ``.A.B`` (data is a dict), ``.`` itself, "strings" with Go
  escapes, `raw strings`, integers, ``true``, ``false``, ``nil`` and parenthesised pipelines;
- pipes ``a | f | g`` (the value is passed as the last argument, as in Go);
- functions: ``html``, ``js``, ``urlquery`` (Go's escapers), ``print``, ``len``, ``not``,
  ``and``, ``or``, ``eq``, ``ne``, and ``json`` (ours: the value as a JSON string literal, for
  payloads that must stay valid JSON whatever the output contains).

Truth follows Go: false, 0, nil and empty strings/collections are false. Dkron's ``.Success`` is
the *string* "true" or "false", so ``{{if .Success}}`` is always true, as in Dkron; write
``{{if eq .Success "true"}}``. A field missing from the data is an error at render time (Dkron
passes a struct, where a missing field is an error too); ``check_fields`` finds it earlier.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Template", "TemplateError", "parse", "render"]

_TRIM_SPACE = " \t\r\n"


class TemplateError(ValueError):
    """A template that cannot be parsed or rendered; the message names the position."""

    def __init__(self, name: str, line: int, col: int, message: str) -> None:
        super().__init__(f"template {name}:{line}:{col}: {message}")
        self.line = line
        self.col = col
        self.reason = message


# ---------------------------------------------------------------- syntax tree


@dataclass
class _Field:
    path: tuple[str, ...]  # () is the dot itself
    pos: int


@dataclass
class _Literal:
    value: Any
    pos: int


@dataclass
class _Call:
    name: str
    args: list[Any]
    pos: int


@dataclass
class _Pipeline:
    commands: list[Any]  # each a _Field, _Literal, _Call or nested _Pipeline
    pos: int


@dataclass
class _Text:
    text: str


@dataclass
class _Action:
    pipe: _Pipeline


@dataclass
class _If:
    branches: list[tuple[_Pipeline, list[Any]]]
    otherwise: list[Any] = field(default_factory=list)


# ---------------------------------------------------------------- functions


def _truth(value: Any) -> bool:
    if value is None or value is False:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str | bytes | list | tuple | dict | set):
        return len(value) > 0
    return True


def _text(value: Any) -> str:
    if value is None:
        return "<no value>"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _html(*args: Any) -> str:
    s = "".join(_text(a) for a in args) if len(args) != 1 else _text(args[0])
    out = []
    for ch in s:
        out.append(
            {
                "<": "&lt;",
                ">": "&gt;",
                "&": "&amp;",
                "'": "&#39;",
                '"': "&#34;",
                "\0": "\ufffd",
            }.get(ch, ch)
        )
    return "".join(out)


_JS_SPECIAL = {
    "\\": "\\\\",
    "'": "\\'",
    '"': '\\"',
    "<": "\\u003C",
    ">": "\\u003E",
    "&": "\\u0026",
    "=": "\\u003D",
}


def _js(*args: Any) -> str:
    s = "".join(_text(a) for a in args) if len(args) != 1 else _text(args[0])
    out = []
    for ch in s:
        if ch in _JS_SPECIAL:
            out.append(_JS_SPECIAL[ch])
        elif ch < " ":
            out.append(f"\\u{ord(ch):04X}")
        elif ord(ch) >= 0x80 and not ch.isprintable():
            out.append(f"\\u{ord(ch):04X}" if ord(ch) <= 0xFFFF else ch)
        else:
            out.append(ch)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    s = "".join(_text(a) for a in args) if len(args) != 1 else _text(args[0])
    return urllib.parse.quote_plus(s, safe="")


def _json(value: Any) -> str:
    return json.dumps(_text(value) if not isinstance(value, int | float) else value)


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise ValueError("eq needs at least two arguments")
    return any(a == b for b in others)


def _ne(a: Any, b: Any) -> bool:
    return a != b


def _and(*args: Any) -> Any:
    for a in args:
        if not _truth(a):
            return a
    return args[-1]


def _or(*args: Any) -> Any:
    for a in args:
        if _truth(a):
            return a
    return args[-1]


def _len(value: Any) -> int:
    try:
        return len(value)
    except TypeError:
        raise ValueError(f"len of {type(value).__name__} is not defined") from None


def _print(*args: Any) -> str:
    # Go's fmt.Sprint puts spaces only between operands when neither is a string.
    out = ""
    for i, a in enumerate(args):
        if i and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out += " "
        out += _text(a)
    return out


_FUNCS: dict[str, tuple[Callable[..., Any], int, int]] = {
    # name: (function, min args, max args (-1 = any))
    "html": (_html, 1, -1),
    "js": (_js, 1, -1),
    "urlquery": (_urlquery, 1, -1),
    "json": (_json, 1, 1),
    "print": (_print, 0, -1),
    "len": (_len, 1, 1),
    "not": (lambda a: not _truth(a), 1, 1),
    "and": (_and, 1, -1),
    "or": (_or, 1, -1),
    "eq": (_eq, 2, -1),
    "ne": (_ne, 2, 2),
}

_UNSUPPORTED_KEYWORDS = {"range", "with", "define", "template", "block", "break", "continue"}


# ---------------------------------------------------------------- lexer for one action


@dataclass
class _Tok:
    kind: str  # field, string, number, ident, pipe, lparen, rparen, bad
    text: str
    pos: int
    value: Any = None


class _Parser:
    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.src = source

    # positions ------------------------------------------------------------
    def error(self, pos: int, message: str) -> TemplateError:
        line = self.src.count("\n", 0, pos) + 1
        col = pos - (self.src.rfind("\n", 0, pos) + 1) + 1
        return TemplateError(self.name, line, col, message)

    # top level -------------------------------------------------------------
    def parse(self) -> list[Any]:
        items = self._split()
        nodes, _, _ = self._block(items, 0, top=True)
        return nodes

    def _split(self) -> list[Any]:
        """Cut the source into text pieces and (tokens, pos) actions, applying trim markers."""
        out: list[Any] = []
        i = 0
        src = self.src
        trim_next = False
        while True:
            start = src.find("{{", i)
            text = src[i:] if start < 0 else src[i:start]
            if trim_next:
                text = text.lstrip(_TRIM_SPACE)
            if start < 0:
                if text:
                    out.append(_Text(text))
                return out
            body = start + 2
            if src.startswith("-", body) and body + 1 < len(src) and src[body + 1] in _TRIM_SPACE:
                text = text.rstrip(_TRIM_SPACE)
                body += 2
            if text:
                out.append(_Text(text))
            toks, end, trim_next = self._lex_action(start, body)
            if toks is not None:
                out.append((toks, start))
            i = end

    def _lex_action(self, start: int, i: int) -> tuple[list[_Tok] | None, int, bool]:
        src = self.src
        n = len(src)
        j = i
        while j < n and src[j] in _TRIM_SPACE:
            j += 1
        if src.startswith("/*", j):
            close = src.find("*/", j + 2)
            if close < 0:
                raise self.error(j, "unclosed comment")
            k = close + 2
            while k < n and src[k] in _TRIM_SPACE:
                k += 1
            if src.startswith("-}}", k) and k > close + 2:
                return None, k + 3, True
            if src.startswith("}}", k):
                return None, k + 2, False
            raise self.error(k, "comment ends before the closing }}")
        toks: list[_Tok] = []
        while True:
            while i < n and src[i] in _TRIM_SPACE:
                i += 1
            if i >= n:
                raise self.error(start, "unclosed action: missing }}")
            ch = src[i]
            if src.startswith("}}", i):
                return toks, i + 2, False
            if ch == "-" and src.startswith("-}}", i) and src[i - 1] in _TRIM_SPACE:
                return toks, i + 3, True
            if ch == ".":
                j = i + 1
                while j < n and (src[j].isalnum() or src[j] in "_."):
                    j += 1
                text = src[i:j]
                parts = text[1:].split(".") if text != "." else []
                if any(not p or p[0].isdigit() for p in parts):
                    raise self.error(i, f"bad field name {text!r}")
                toks.append(_Tok("field", text, i, tuple(parts)))
                i = j
            elif ch == '"':
                j = i + 1
                while j < n and src[j] != '"':
                    if src[j] == "\n":
                        break
                    j += 2 if src[j] == "\\" else 1
                if j >= n or src[j] != '"':
                    raise self.error(i, "unterminated string")
                toks.append(_Tok("string", src[i : j + 1], i, self._unquote(src[i : j + 1], i)))
                i = j + 1
            elif ch == "`":
                j = src.find("`", i + 1)
                if j < 0:
                    raise self.error(i, "unterminated raw string")
                toks.append(_Tok("string", src[i : j + 1], i, src[i + 1 : j]))
                i = j + 1
            elif ch.isdigit() or (ch == "-" and i + 1 < n and src[i + 1].isdigit()):
                j = i + 1
                while j < n and src[j].isdigit():
                    j += 1
                if j < n and (src[j].isalnum() or src[j] in "._"):
                    raise self.error(i, "only decimal integer numbers are supported")
                toks.append(_Tok("number", src[i:j], i, int(src[i:j])))
                i = j
            elif ch.isalpha() or ch == "_":
                j = i
                while j < n and (src[j].isalnum() or src[j] == "_"):
                    j += 1
                toks.append(_Tok("ident", src[i:j], i))
                i = j
            elif ch == "|":
                toks.append(_Tok("pipe", ch, i))
                i += 1
            elif ch == "(":
                toks.append(_Tok("lparen", ch, i))
                i += 1
            elif ch == ")":
                toks.append(_Tok("rparen", ch, i))
                i += 1
            elif ch == "$":
                raise self.error(i, "variables ($) are not supported in this template subset")
            else:
                raise self.error(i, f"unexpected {ch!r} in action")

    def _unquote(self, quoted: str, pos: int) -> str:
        """Decode Go double-quoted string escapes (simple ones, \\x, \\u and \\U)."""
        simple = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v"}
        simple.update({"\\": "\\", '"': '"'})
        widths = {"x": 2, "u": 4, "U": 8}
        body = quoted[1:-1]
        out = []
        k = 0
        while k < len(body):
            c = body[k]
            if c != "\\":
                out.append(c)
                k += 1
                continue
            e = body[k + 1]
            if e in simple:
                out.append(simple[e])
                k += 2
                continue
            digits = body[k + 2 : k + 2 + widths.get(e, 0)]
            if e in widths and len(digits) == widths[e]:
                try:
                    out.append(chr(int(digits, 16)))
                    k += 2 + widths[e]
                    continue
                except ValueError:
                    pass
            raise self.error(pos + 1 + k, f"bad escape \\{e} in string")
        return "".join(out)

    # blocks --------------------------------------------------------------------
    def _block(self, items: list[Any], i: int, top: bool) -> tuple[list[Any], int, Any]:
        """Parse nodes until else/end (returned as the stop item) or the end of input."""
        nodes: list[Any] = []
        while i < len(items):
            item = items[i]
            if isinstance(item, _Text):
                nodes.append(item)
                i += 1
                continue
            toks, pos = item
            if not toks:
                raise self.error(pos, "empty action")
            head = toks[0]
            if head.kind == "ident" and head.text in ("else", "end"):
                if top:
                    raise self.error(head.pos, f"unexpected {{{{{head.text}}}}}")
                return nodes, i, item
            if head.kind == "ident" and head.text == "if":
                node, i = self._if(items, i)
                nodes.append(node)
                continue
            if head.kind == "ident" and head.text in _UNSUPPORTED_KEYWORDS:
                raise self.error(
                    head.pos, f"{{{{{head.text}}}}} is not supported in this template subset"
                )
            nodes.append(_Action(self._pipeline(toks, pos)))
            i += 1
        if not top:
            raise self.error(len(self.src), "unexpected end of template: missing {{end}}")
        return nodes, i, None

    def _if(self, items: list[Any], i: int) -> tuple[_If, int]:
        toks, _ = items[i]
        if len(toks) == 1:
            raise self.error(toks[0].pos, "missing condition in {{if}}")
        node = _If(branches=[])
        cond = self._pipeline(toks[1:], toks[1].pos)
        while True:
            body, i, stop = self._block(items, i + 1, top=False)
            stop_toks, _ = stop
            node.branches.append((cond, body))
            word = stop_toks[0]
            if word.text == "end":
                if len(stop_toks) > 1:
                    raise self.error(stop_toks[1].pos, "unexpected words after {{end}}")
                return node, i + 1
            # else
            if len(stop_toks) == 1:
                rest, i, stop2 = self._block(items, i + 1, top=False)
                stop2_toks, _ = stop2
                if stop2_toks[0].text != "end" or len(stop2_toks) > 1:
                    raise self.error(stop2_toks[0].pos, "expected {{end}} after {{else}}")
                node.otherwise = rest
                return node, i + 1
            if stop_toks[1].kind == "ident" and stop_toks[1].text == "if":
                if len(stop_toks) == 2:
                    raise self.error(stop_toks[1].pos, "missing condition in {{else if}}")
                cond = self._pipeline(stop_toks[2:], stop_toks[2].pos)
                continue
            raise self.error(stop_toks[1].pos, "{{else}} takes no arguments except 'if'")

    def _pipeline(self, toks: list[_Tok], pos: int) -> _Pipeline:
        pipe, k = self._parse_pipe(toks, 0, pos)
        if k != len(toks):
            raise self.error(toks[k].pos, f"unexpected {toks[k].text!r}")
        return pipe

    def _parse_pipe(self, toks: list[_Tok], k: int, pos: int) -> tuple[_Pipeline, int]:
        commands = []
        while True:
            cmd, k = self._command(toks, k, pos)
            commands.append(cmd)
            if k < len(toks) and toks[k].kind == "pipe":
                k += 1
                if k >= len(toks) or toks[k].kind in ("pipe", "rparen"):
                    raise self.error(toks[k - 1].pos, "missing command after |")
                continue
            return _Pipeline(commands, pos), k

    def _command(self, toks: list[_Tok], k: int, pos: int) -> tuple[Any, int]:
        operands = []
        start = toks[k].pos if k < len(toks) else pos
        while k < len(toks) and toks[k].kind not in ("pipe", "rparen"):
            op, k = self._operand(toks, k)
            operands.append((op, toks[k - 1]))
        if not operands:
            raise self.error(start, "missing value in action")
        first, first_tok = operands[0]
        if isinstance(first, _Call):
            first.args = [o for o, _ in operands[1:]]
            return first, k
        if len(operands) > 1:
            raise self.error(operands[1][1].pos, f"{first_tok.text!r} is not a function")
        return first, k

    def _operand(self, toks: list[_Tok], k: int) -> tuple[Any, int]:
        t = toks[k]
        if t.kind == "field":
            return _Field(t.value, t.pos), k + 1
        if t.kind in ("string", "number"):
            return _Literal(t.value, t.pos), k + 1
        if t.kind == "lparen":
            pipe, j = self._parse_pipe(toks, k + 1, t.pos)
            if j >= len(toks) or toks[j].kind != "rparen":
                raise self.error(t.pos, "unclosed (")
            return pipe, j + 1
        if t.kind == "ident":
            if t.text in ("true", "false"):
                return _Literal(t.text == "true", t.pos), k + 1
            if t.text == "nil":
                return _Literal(None, t.pos), k + 1
            if t.text in _FUNCS:
                return _Call(t.text, [], t.pos), k + 1
            if t.text in _UNSUPPORTED_KEYWORDS or t.text in ("if", "else", "end"):
                raise self.error(t.pos, f"{t.text!r} is not allowed here")
            raise self.error(t.pos, f'function "{t.text}" not defined')
        raise self.error(t.pos, f"unexpected {t.text!r}")


# ---------------------------------------------------------------- rendering


class Template:
    """A parsed template; render it with a dict of variables."""

    def __init__(self, source: str, name: str = "payload") -> None:
        self.source = source
        self.name = name
        self._parser = _Parser(name, source)
        self._nodes = self._parser.parse()

    def fields(self) -> list[tuple[tuple[str, ...], int]]:
        """Every field path the template reads, with its source offset."""
        found: list[tuple[tuple[str, ...], int]] = []

        def walk(obj: Any) -> None:
            if isinstance(obj, _Field):
                found.append((obj.path, obj.pos))
            elif isinstance(obj, _Call):
                for a in obj.args:
                    walk(a)
            elif isinstance(obj, _Pipeline):
                for c in obj.commands:
                    walk(c)
            elif isinstance(obj, _Action):
                walk(obj.pipe)
            elif isinstance(obj, _If):
                for cond, body in obj.branches:
                    walk(cond)
                    for n in body:
                        walk(n)
                for n in obj.otherwise:
                    walk(n)

        for node in self._nodes:
            walk(node)
        return found

    def check_fields(self, allowed: set[str] | frozenset[str]) -> None:
        """Raise TemplateError for the first top-level field not in `allowed` (catch typos early)."""
        for path, pos in self.fields():
            if path and path[0] not in allowed:
                known = ", ".join(sorted(allowed))
                raise self._parser.error(pos, f"unknown field .{path[0]} (known: {known})")

    def render(self, data: Mapping[str, Any]) -> str:
        out: list[str] = []
        self._exec(self._nodes, data, out)
        return "".join(out)

    def _exec(self, nodes: list[Any], data: Mapping[str, Any], out: list[str]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                out.append(node.text)
            elif isinstance(node, _Action):
                out.append(_text(self._eval_pipe(node.pipe, data)))
            else:
                for cond, body in node.branches:
                    if _truth(self._eval_pipe(cond, data)):
                        self._exec(body, data, out)
                        break
                else:
                    self._exec(node.otherwise, data, out)

    def _eval_pipe(self, pipe: _Pipeline, data: Mapping[str, Any]) -> Any:
        value: Any = None
        for i, cmd in enumerate(pipe.commands):
            if isinstance(cmd, _Call):
                args = [self._eval(a, data) for a in cmd.args]
                if i > 0:
                    args.append(value)
                value = self._call(cmd, args)
            elif i > 0:
                raise self._parser.error(self._pos(cmd), "only a function can follow |")
            else:
                value = self._eval(cmd, data)
        return value

    def _pos(self, obj: Any) -> int:
        return getattr(obj, "pos", 0)

    def _call(self, cmd: _Call, args: list[Any]) -> Any:
        fn, lo, hi = _FUNCS[cmd.name]
        if len(args) < lo or (hi >= 0 and len(args) > hi):
            want = f"{lo}" if lo == hi else f"at least {lo}" if hi < 0 else f"{lo} to {hi}"
            raise self._parser.error(
                cmd.pos, f"wrong number of arguments for {cmd.name}: want {want}, got {len(args)}"
            )
        try:
            return fn(*args)
        except ValueError as exc:
            raise self._parser.error(cmd.pos, f"error calling {cmd.name}: {exc}") from None

    def _eval(self, obj: Any, data: Mapping[str, Any]) -> Any:
        if isinstance(obj, _Literal):
            return obj.value
        if isinstance(obj, _Pipeline):
            return self._eval_pipe(obj, data)
        if isinstance(obj, _Call):
            return self._call(obj, [self._eval(a, data) for a in obj.args])
        value: Any = data
        for depth, part in enumerate(obj.path):
            if not isinstance(value, Mapping) or part not in value:
                shown = "." + ".".join(obj.path[: depth + 1])
                raise self._parser.error(obj.pos, f"can't evaluate field {shown}: no such field")
            value = value[part]
        return value


def parse(source: str, name: str = "payload") -> Template:
    """Parse `source`; raises TemplateError naming line and column on unsupported syntax."""
    return Template(source, name)


def render(source: str, data: Mapping[str, Any], name: str = "payload") -> str:
    """Parse and render in one step."""
    return Template(source, name).render(data)
