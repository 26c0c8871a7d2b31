"""Event lines: one per event, logfmt text or JSON, filtered by --log-level."""

import io
import json
import logging
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg import logs

_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def stream():
    buf = io.StringIO()
    yield buf
    logs.setup("info", False, io.StringIO())


def _parse_logfmt(line):
    """A small logfmt reader for checking our lines (bare words or JSON-quoted strings)."""
    out = {}
    pos = 0
    pattern = re.compile(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)\s*')
    while pos < len(line):
        m = pattern.match(line, pos)
        assert m, f"not logfmt at {pos}: {line!r}"
        key, value = m.group(1), m.group(2)
        out[key] = json.loads(value) if value.startswith('"') else value
        pos = m.end()
    return out


def test_text_lines_are_logfmt_with_one_line_per_event(stream):
    logs.setup("info", json_lines=False, stream=stream)
    logs.event("launch", job="backup", scheduled="2026-01-01T00:00:00Z", node="n1")
    logs.event("finish", job="backup", success=True, duration=1.5, output='a "b"\nc=d')
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (_parse_logfmt(line) for line in lines)
    assert _TIME.match(first["time"])
    assert first["level"] == "info" and first["event"] == "launch"
    assert first["job"] == "backup" and first["scheduled"] == "2026-01-01T00:00:00Z"
    assert second["success"] == "true" and second["duration"] == "1.5"
    assert second["output"] == 'a "b"\nc=d'


def test_json_lines_carry_typed_fields(stream):
    logs.setup("debug", json_lines=True, stream=stream)
    logs.event("leader_change", leader="n2", term=7)
    logs.event("member_change", member="n3", status="failed", tags={"role": "dkron"})
    logs.event("retry", job="j", attempt=2, time="clash")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [r["event"] for r in records] == ["leader_change", "member_change", "retry"]
    assert records[0]["term"] == 7 and records[0]["leader"] == "n2"
    assert records[1]["tags"] == {"role": "dkron"}
    assert records[2]["field_time"] == "clash" and _TIME.match(records[2]["time"])


def test_failed_finish_is_a_warning_and_levels_filter(stream):
    logs.setup("warn", json_lines=True, stream=stream)
    logs.event("launch", job="quiet")
    logs.event("finish", job="loud", success=False)
    logs.event_at("error", "store_error", reason="disk full")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(r["event"], r["level"]) for r in records] == [
        ("finish", "warn"),
        ("store_error", "error"),
    ]


def test_module_loggers_share_the_format(stream):
    logs.setup("info", json_lines=False, stream=stream)
    logging.getLogger("dkron.notify").warning("delivery failed: %s", "timeout")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("dkron.store").exception("apply failed")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (_parse_logfmt(line) for line in lines)
    assert first["logger"] == "dkron.notify" and first["msg"] == "delivery failed: timeout"
    assert first["level"] == "warn"
    assert second["level"] == "error" and "RuntimeError: boom" in second["error"]


def test_setup_again_replaces_the_handler(stream):
    other = io.StringIO()
    logs.setup("info", False, stream)
    logs.setup("info", True, other)
    logs.event("launch", job="x")
    assert stream.getvalue() == ""
    assert json.loads(other.getvalue())["job"] == "x"


@pytest.mark.parametrize("level", ["verbose", "", "10"])
def test_unknown_level_is_a_clear_error(level):
    with pytest.raises(ValueError, match=r'invalid log level ".*": expected one of trace, debug'):
        logs.setup(level, False, io.StringIO())


def test_trace_and_dkron_level_names_are_accepted(stream):
    for name in ("trace", "debug", "info", "warn", "warning", "error", "fatal", "panic", "INFO"):
        logs.setup(name, False, stream)
    logs.setup("trace", True, stream)
    logs.event_at("trace", "tick", n=1)
    assert json.loads(stream.getvalue())["level"] == "trace"


@settings(max_examples=60, deadline=None)
@given(st.dictionaries(st.from_regex(r"[a-z][a-z_]{0,8}", fullmatch=True), st.text(), max_size=5))
def test_any_text_fields_stay_on_one_line_and_parse_back(fields):
    fields = {k: v for k, v in fields.items() if k not in ("time", "level", "event")}
    buf = io.StringIO()
    logs.setup("info", False, buf)
    logs.event("custom", **fields)
    text = buf.getvalue()
    assert len(text.splitlines()) == 1 and text.endswith("\n")
    parsed = _parse_logfmt(text.rstrip("\n"))
    for k, v in fields.items():
        assert parsed[k] == v
    logs.setup("info", False, io.StringIO())


@settings(max_examples=60, deadline=None)
@given(st.text())
def test_json_lines_never_break_whatever_the_text(value):
    buf = io.StringIO()
    logs.setup("info", True, buf)
    logs.event("custom", output=value)
    text = buf.getvalue()
    assert len(text.splitlines()) == 1
    assert json.loads(text)["output"] == value
    logs.setup("info", False, io.StringIO())
