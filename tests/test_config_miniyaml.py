"""The bundled YAML reader: the subset config files use is read right, the rest is refused."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg.miniyaml import YamlError, load_file, loads

DKRON_EXAMPLE = """\
# Dkron example configuration
---
server: true
bootstrap-expect: 3
data-dir: /var/lib/dkron     # where Raft lives
node-name: "node-1"
http-addr: :8080
join:
- 10.0.0.1
- "10.0.0.2:8946"
retry-join: [10.0.0.3, 'provider=aws tag_key=dkron']
tags:
  role: web
  "zone": eu-1
raft-multiplier: 1
mail-port: 587
webhook-headers:
  - "Content-Type: application/json"
  - 'X-Token: it''s secret'
mail-payload: |
  Job {{.JobName}} finished
    success: {{.Success}}
...
"""


def test_dkron_style_config_file() -> None:
    assert loads(DKRON_EXAMPLE, "dkron.yml") == {
        "server": True,
        "bootstrap-expect": 3,
        "data-dir": "/var/lib/dkron",
        "node-name": "node-1",
        "http-addr": ":8080",
        "join": ["10.0.0.1", "10.0.0.2:8946"],
        "retry-join": ["10.0.0.3", "provider=aws tag_key=dkron"],
        "tags": {"role": "web", "zone": "eu-1"},
        "raft-multiplier": 1,
        "mail-port": 587,
        "webhook-headers": ["Content-Type: application/json", "X-Token: it's secret"],
        "mail-payload": "Job {{.JobName}} finished\n  success: {{.Success}}\n",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("~", None),
        ("null", None),
        ("NULL", None),
        ("true", True),
        ("False", False),
        ("yes", "yes"),  # YAML 1.2: not a boolean
        ("off", "off"),
        ("42", 42),
        ("-7", -7),
        ("0o17", 15),
        ("0x1F", 31),
        ("017", 17),  # YAML 1.2: decimal, not octal
        ("1.5", 1.5),
        ("-2e3", -2000.0),
        (".5", 0.5),
        ("-.inf", -math.inf),
        ("1h30m", "1h30m"),
        ("127.0.0.1:8080", "127.0.0.1:8080"),
        ("'42'", "42"),
        ('"true"', "true"),
        ("'it''s'", "it's"),
        (r'"tab\there \u00e9 \x41 \\ \""', 'tab\there é A \\ "'),
        ("a # comment", "a"),
        ("a#b", "a#b"),
        ("http://x:80/y", "http://x:80/y"),
    ],
)
def test_scalars_follow_yaml_1_2_core_schema(text: str, expected: object) -> None:
    assert loads(f"k: {text}\n")["k"] == expected


def test_nan_is_a_float() -> None:
    assert math.isnan(loads("k: .nan")["k"])


def test_nested_blocks_and_compact_forms() -> None:
    text = """\
outer:
  inner:
    - name: a
      port: 1
    - - x
      - y
    -
      deep: true
  same-indent-list:
  - 1
  - 2
  after: z
top: [1, [2, 3], {a: b, c: [d]}, "e, f"]
spread: {
  a: 1,   # comment inside a flow mapping
  b: [x,
      y],
}
empty-list: []
empty-map: {}
nothing:
"""
    assert loads(text) == {
        "outer": {
            "inner": [{"name": "a", "port": 1}, ["x", "y"], {"deep": True}],
            "same-indent-list": [1, 2],
            "after": "z",
        },
        "top": [1, [2, 3], {"a": "b", "c": ["d"]}, "e, f"],
        "spread": {"a": 1, "b": ["x", "y"]},
        "empty-list": [],
        "empty-map": {},
        "nothing": None,
    }


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("|", "a\n  b\n\nc\n"),
        ("|-", "a\n  b\n\nc"),
        ("|+", "a\n  b\n\nc\n\n"),
        (">", "a\n  b\n\nc\n"),
        (">-", "a\n  b\n\nc"),
    ],
)
def test_block_scalars(header: str, expected: str) -> None:
    text = f"k: {header}\n  a\n    b\n\n  c\n\nnext: 1\n"
    assert loads(text) == {"k": expected, "next": 1}


def test_folded_scalar_joins_lines() -> None:
    assert loads("k: >\n  one\n  two\n\n  three\n") == {"k": "one two\nthree\n"}


def test_indentation_indicator_and_comment_after_block() -> None:
    assert loads("k: |2\n    indented\n  # a comment line inside\nj: 2") == {
        "k": "  indented\n# a comment line inside\n",
        "j": 2,
    }


def test_crlf_bom_and_empty_documents() -> None:
    assert loads("\ufeffa: 1\r\nb: [2]\r\n") == {"a": 1, "b": [2]}
    assert loads("") is None
    assert loads("# only a comment\n\n") is None
    assert loads("---\n") is None


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("a: 1\nb: &anchor 2", 2, "anchors"),
        ("a: 1\nb: *alias", 2, "aliases"),
        ("a: !!str 1", 1, "tags"),
        ("%YAML 1.2\n---\na: 1", 1, "directives"),
        ("? complex\n: key", 1, "complex keys"),
        ("a: 1\n\tb: 2", 2, "tabs"),
        ("a: 1\nb: 2\na: 3", 3, "duplicate key 'a'"),
        ("a: {x: 1, x: 2}", 1, "duplicate key 'x'"),
        ("a: 1\n---\nb: 2", 2, "one document"),
        ('a: "open\n  more"', 1, "not closed"),
        ("a: [1, 2\nb: 3", 2, "the '[' of line 1 is not closed"),
        ("a: [1, 2", 1, "never closed"),
        ("a: plain\n  continued", 2, "continued on the next line"),
        ("a:\n    b: 1\n  c: 2", 3, "bad indentation"),
        ("a: b: c", 1, "quote the value"),
        ("a: - 1", 1, "list cannot start"),
        ('a: "x" y', 1, "unexpected text"),
        (r'a: "\q"', 1, "unknown escape"),
        (r'a: "\u12"', 1, "bad escape"),
        ("a: |x\n  b", 1, "bad block scalar header"),
        ("- a\nb: 1", 2, "after the document"),
        ("a: 1\nplain words", 2, "expected 'key: value'"),
        ("a: {b}", 1, "expected ':'"),
    ],
)
def test_outside_the_subset_is_refused_with_file_and_line(text: str, line: int, words: str) -> None:
    with pytest.raises(YamlError) as info:
        loads(text, "conf/dkron.yml")
    message = str(info.value)
    assert message.startswith(f"conf/dkron.yml:{line}: "), message
    assert words in message
    assert info.value.line == line


def test_load_file_names_the_path(tmp_path) -> None:
    path = tmp_path / "dkron.yml"
    path.write_text("server: true\nrpc-port: [\n", encoding="utf-8")
    with pytest.raises(YamlError) as info:
        load_file(str(path))
    assert str(info.value).startswith(f"{path}:2: ")


# -- round trip against a tiny block-style writer ------------------------------------------------

_plain_text = st.from_regex(r"[a-z][a-z0-9_./-]{0,12}", fullmatch=True)
_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20),
    _plain_text,
)
_keys = st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)
_values = st.recursive(
    _scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(_keys, inner, min_size=1, max_size=4)
    ),
    max_leaves=12,
)


def _dump_scalar(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid YAML double-quoted string
    return json.dumps(value) if value is not None else "null"


def _dump(value: object, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, dict):
        lines = []
        for key, item in value.items():
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}{key}:")
                lines.extend(_dump(item, indent + 2))
            else:
                lines.append(f"{pad}{key}: {_dump_inline(item)}")
        return lines
    if isinstance(value, list):
        lines = []
        for item in value:
            if isinstance(item, (dict, list)) and item:
                lines.append(f"{pad}-")
                lines.extend(_dump(item, indent + 2))
            else:
                lines.append(f"{pad}- {_dump_inline(item)}")
        return lines
    return [pad + _dump_scalar(value)]


def _dump_inline(value: object) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_dump_inline(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_dump_inline(v) for v in value) + "]"
    return _dump_scalar(value)


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(_keys, _values, min_size=1, max_size=5))
def test_block_and_flow_writing_round_trip(doc: dict) -> None:
    block = "\n".join(_dump(doc, 0)) + "\n"
    assert loads(block) == doc
    assert loads(_dump_inline(doc)) == doc
