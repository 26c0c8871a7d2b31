"""Processors deliver the output to real receivers (files, syslog, Fluent) and never lose a record."""

import logging
import os
import re
import socket
import struct
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dkron_pkg import metrics
from dkron_pkg.processors import apply_processors, parse_bool
from dkron_pkg.processors.msgpack_encode import packb

EXECUTION = {
    "id": "1767225600000000000-node1",
    "job_name": "backup",
    "started_at": "2026-01-01T00:00:00Z",
    "finished_at": "2026-01-01T00:00:05Z",
    "success": True,
    "output": "copied 3 files\nall good\n",
    "node_name": "node1",
    "group": 1767225600000000000,
    "attempt": 1,
}


def _job(processors):
    return {"name": "backup", "processors": processors}


# ----------------------------------------------------------------- a tiny MessagePack decoder


def unpackb(data):
    value, pos = _unpack(data, 0)
    assert pos == len(data), "trailing bytes after the MessagePack value"
    return value


def _unpack(b, i):
    t = b[i]
    i += 1
    if t <= 0x7F:
        return t, i
    if t >= 0xE0:
        return t - 0x100, i
    if 0x80 <= t <= 0x8F:
        return _map(b, i, t & 0x0F)
    if 0x90 <= t <= 0x9F:
        return _array(b, i, t & 0x0F)
    if 0xA0 <= t <= 0xBF:
        n = t & 0x1F
        return b[i : i + n].decode("utf-8", "surrogatepass"), i + n
    fixed = {
        0xCC: ">B", 0xCD: ">H", 0xCE: ">I", 0xCF: ">Q",
        0xD0: ">b", 0xD1: ">h", 0xD2: ">i", 0xD3: ">q", 0xCB: ">d", 0xCA: ">f",
    }  # fmt: skip
    if t in fixed:
        size = struct.calcsize(fixed[t])
        return struct.unpack(fixed[t], b[i : i + size])[0], i + size
    if t in (0xC0, 0xC2, 0xC3):
        return {0xC0: None, 0xC2: False, 0xC3: True}[t], i
    lengths = {0xD9: 1, 0xDA: 2, 0xDB: 4, 0xC4: 1, 0xC5: 2, 0xC6: 4, 0xDC: 2, 0xDD: 4, 0xDE: 2}
    lengths[0xDF] = 4
    if t in lengths:
        w = lengths[t]
        n = int.from_bytes(b[i : i + w], "big")
        i += w
        if t in (0xD9, 0xDA, 0xDB):
            return b[i : i + n].decode("utf-8", "surrogatepass"), i + n
        if t in (0xC4, 0xC5, 0xC6):
            return bytes(b[i : i + n]), i + n
        if t in (0xDC, 0xDD):
            return _array(b, i, n)
        return _map(b, i, n)
    raise AssertionError(f"unexpected MessagePack type byte {t:#x}")


def _array(b, i, n):
    out = []
    for _ in range(n):
        v, i = _unpack(b, i)
        out.append(v)
    return out, i


def _map(b, i, n):
    out = {}
    for _ in range(n):
        k, i = _unpack(b, i)
        v, i = _unpack(b, i)
        out[k] = v
    return out, i


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text()
    | st.binary(),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=10), children, max_size=6)
    ),
    max_leaves=20,
)


@settings(max_examples=80, deadline=None)
@given(_values)
def test_msgpack_encoder_round_trips(value):
    assert unpackb(packb(value)) == value


def test_msgpack_encoder_uses_the_compact_forms_and_long_lengths():
    assert packb([1, -1, "a", None, True]) == b"\x95\x01\xff\xa1a\xc0\xc3"
    assert packb({"k": 300}) == b"\x81\xa1k\xcd\x01\x2c"
    for n in (31, 32, 255, 256, 65535, 65536):
        assert unpackb(packb("x" * n)) == "x" * n
        assert unpackb(packb(b"y" * n)) == b"y" * n
    assert unpackb(packb(list(range(70000)))) == list(range(70000))
    with pytest.raises(TypeError, match="cannot encode set"):
        packb({1, 2})


# ----------------------------------------------------------------- log and files


def test_log_processor_prints_framed_output_and_replaces_it(capsys):
    stored = apply_processors(_job({"log": {}}), EXECUTION, "leader1")
    out = capsys.readouterr()
    assert out.out == (
        f"----- BEGIN OUTPUT job=backup execution={EXECUTION['id']} -----\n"
        "copied 3 files\nall good\n----- END OUTPUT -----\n"
    )
    assert stored["output"] == "Output in dkron log"
    assert stored["id"] == EXECUTION["id"] and stored["success"] is True

    failed = {**EXECUTION, "success": False, "output": "boom"}
    stored = apply_processors(_job({"log": {"forward": "true"}}), failed, "leader1")
    out = capsys.readouterr()
    assert out.out == "" and "boom\n----- END OUTPUT -----" in out.err
    assert stored["output"] == "boom"


def test_files_processor_creates_log_dir_and_writes_one_file_per_execution(tmp_path):
    log_dir = tmp_path / "deep" / "logs"
    stored = apply_processors(_job({"files": {"log_dir": str(log_dir)}}), EXECUTION, "leader1")
    path = log_dir / f"{EXECUTION['id']}.log"
    assert path.read_text() == EXECUTION["output"]
    assert stored["output"] == str(path)
    forwarded = apply_processors(
        _job({"files": {"log_dir": str(log_dir), "forward": "1"}}), EXECUTION, "leader1"
    )
    assert forwarded["output"] == EXECUTION["output"]


def test_files_processor_keeps_hostile_ids_inside_log_dir(tmp_path):
    hostile = {**EXECUTION, "id": "../../etc/evil"}
    stored = apply_processors(_job({"files": {"log_dir": str(tmp_path)}}), hostile, "leader1")
    assert os.path.dirname(stored["output"]) == str(tmp_path)
    assert sorted(os.listdir(tmp_path)) == ["_.._etc_evil.log"]


def test_every_processor_sees_the_original_output_and_placeholders_join(tmp_path, capsys):
    job = _job({"log": {}, "files": {"log_dir": str(tmp_path)}})
    stored = apply_processors(job, EXECUTION, "leader1")
    assert (tmp_path / f"{EXECUTION['id']}.log").read_text() == EXECUTION["output"]
    assert stored["output"] == "Output in dkron log\n" + str(tmp_path / f"{EXECUTION['id']}.log")
    assert "all good" in capsys.readouterr().out


class _Capture(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def processor_log():
    handler = _Capture()
    logger = logging.getLogger("dkron.processors")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def test_failing_and_unknown_processors_are_logged_and_the_record_is_kept(tmp_path, processor_log):
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens here now
    before = metrics.PROCESSOR_FAILURES.value(processor="fluent")
    blocker = tmp_path / "file-not-dir"
    blocker.write_text("x")
    job = _job(
        {
            "fluent": {},
            "nosuch": {},
            "files": {"log_dir": str(blocker / "sub")},
        }
    )
    env = {"FLUENTBIT_HOST": "127.0.0.1", "FLUENTBIT_PORT": str(port)}
    stored = apply_processors(job, EXECUTION, "leader1", env=env)
    assert stored == EXECUTION
    assert metrics.PROCESSOR_FAILURES.value(processor="fluent") == before + 1
    text = "\n".join(processor_log.messages)
    assert "processor fluent failed" in text
    assert "unknown processor 'nosuch'" in text
    assert "processor files failed" in text
    assert "record kept with its output" in text


def test_bad_fluent_port_and_bad_processor_map_do_not_lose_the_record(processor_log):
    stored = apply_processors(_job({"fluent": {}}), EXECUTION, "l", env={"FLUENTBIT_PORT": "x"})
    assert stored == EXECUTION
    assert 'invalid FLUENTBIT_PORT "x"' in "\n".join(processor_log.messages)
    assert apply_processors({"name": "j", "processors": ["log"]}, EXECUTION, "l") == EXECUTION
    assert apply_processors({"name": "j"}, EXECUTION, "l") == EXECUTION


def test_forward_is_read_like_go_parse_bool():
    assert [parse_bool(v) for v in ("true", "1", "t", "T", "TRUE", "True")] == [True] * 6
    assert [parse_bool(v) for v in ("false", "0", "f", "yes", "", None)] == [False] * 6


# ----------------------------------------------------------------- syslog


def _udp():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(5)
    return sock


def _datagrams(sock, n):
    return [sock.recv(65535).decode() for _ in range(n)]


def test_syslog_rfc3164_over_udp_uses_facility_cron_and_tag_dkron():
    listener = _udp()
    port = listener.getsockname()[1]
    job = _job({"syslog": {"address": f"udp://127.0.0.1:{port}"}})
    stored = apply_processors(job, EXECUTION, "leader1")
    assert stored["output"] == "Output in syslog"
    messages = _datagrams(listener, 3)
    prefix = f"job=backup execution={EXECUTION['id']}"
    pid = os.getpid()
    header = rf"^<78>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d \S+ dkron\[{pid}\]: "
    for msg in messages:
        assert re.match(header, msg), msg
    assert messages[0].endswith(f"{prefix} node=node1 success=true attempt=1")
    assert messages[1].endswith(f"{prefix} copied 3 files")
    assert messages[2].endswith(f"{prefix} all good")
    listener.close()


def test_syslog_rfc5424_marks_failures_as_errors():
    listener = _udp()
    port = listener.getsockname()[1]
    failed = {**EXECUTION, "success": False, "output": "disk full"}
    job = _job({"syslog": {"address": f"udp://127.0.0.1:{port}", "format": "rfc5424"}})
    apply_processors(job, failed, "leader1")
    first, second = _datagrams(listener, 2)
    pattern = (
        r"^<75>1 \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z \S+ dkron "
        + str(os.getpid())
        + r" execution - job=backup execution=\S+ (.*)$"
    )
    assert re.match(pattern, first).group(1) == "node=node1 success=false attempt=1"
    assert re.match(pattern, second).group(1) == "disk full"
    listener.close()


def test_syslog_to_a_unix_datagram_socket_like_dev_log(tmp_path):
    path = str(tmp_path / "log.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(5)
    job = _job({"syslog": {"address": path, "forward": "true", "max_lines": "1"}})
    stored = apply_processors(job, EXECUTION, "leader1")
    assert stored["output"] == EXECUTION["output"]
    messages = _datagrams(listener, 3)
    assert messages[1].endswith("copied 3 files")
    assert messages[2].endswith("... 1 more lines not sent to syslog")
    listener.close()


def test_syslog_falls_back_to_a_unix_stream_socket(tmp_path):
    path = str(tmp_path / "stream.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    server.settimeout(5)
    received = []

    def accept():
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            while chunk := conn.recv(65536):
                received.append(chunk)

    t = threading.Thread(target=accept)
    t.start()
    apply_processors(_job({"syslog": {"address": f"unix://{path}"}}), EXECUTION, "leader1")
    t.join(10)
    lines = b"".join(received).decode().splitlines()
    assert len(lines) == 3 and lines[2].endswith("all good")
    server.close()


def test_syslog_bad_config_is_reported_and_record_kept(processor_log):
    for cfg, words in (
        ({"format": "json"}, 'invalid syslog format "json"'),
        ({"address": "udp://nohostport"}, 'invalid syslog address "udp://nohostport"'),
        ({"address": "http://x"}, "unknown scheme"),
    ):
        assert apply_processors(_job({"syslog": cfg}), EXECUTION, "l") == EXECUTION
        assert words in processor_log.messages[-1]


# ----------------------------------------------------------------- fluent


def _tcp_collector():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(5)
    received = []

    def accept():
        conn, _ = server.accept()
        with conn:
            conn.settimeout(5)
            while chunk := conn.recv(65536):
                received.append(chunk)

    thread = threading.Thread(target=accept)
    thread.start()
    return server, thread, received


def test_fluent_forward_message_carries_tag_time_and_record():
    server, thread, received = _tcp_collector()
    env = {
        "FLUENTBIT_HOST": "127.0.0.1",
        "FLUENTBIT_PORT": str(server.getsockname()[1]),
        "FLUENTBIT_TAG": "cron.jobs",
    }
    stored = apply_processors(_job({"fluent": {}}), EXECUTION, "leader1", env=env)
    thread.join(10)
    server.close()
    assert stored["output"] == "Output sent to Fluent"
    tag, when, record = unpackb(b"".join(received))
    assert tag == "cron.jobs"
    assert when == 1767225605  # finished_at 2026-01-01T00:00:05Z
    assert record["host"] == "node1"
    assert record["job_name"] == "backup"
    assert record["message"] == EXECUTION["output"]
    assert record["execution_id"] == EXECUTION["id"]
    assert record["success"] is True and record["attempt"] == 1
    assert record["reporting_node"] == "leader1"
    assert record["group"] == EXECUTION["group"]


def test_fluent_defaults_tag_and_forward_keeps_output():
    server, thread, received = _tcp_collector()
    env = {"FLUENTBIT_HOST": "127.0.0.1", "FLUENTBIT_PORT": str(server.getsockname()[1])}
    stored = apply_processors(_job({"fluent": {"forward": "true"}}), EXECUTION, "l", env=env)
    thread.join(10)
    server.close()
    assert stored["output"] == EXECUTION["output"]
    assert unpackb(b"".join(received))[0] == "dkron"
