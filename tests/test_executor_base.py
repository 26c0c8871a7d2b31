"""The output tail, the failure output layout and the executor registry."""

from __future__ import annotations

import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dkron_pkg.executors import OUTPUT_LIMIT, get_executor, names
from dkron_pkg.executors.base import OutputTail, failure_output, parse_go_bool


def test_tail_of_300000_bytes_keeps_the_last_256000() -> None:
    data = bytes(i % 251 for i in range(300_000))
    tail = OutputTail()
    for start in range(0, len(data), 4096):
        tail.write(data[start : start + 4096])
    assert OUTPUT_LIMIT == 256_000
    assert tail.getvalue() == data[-256_000:]
    assert tail.truncated
    assert tail.total == 300_000


def test_small_output_is_kept_whole_and_not_marked_truncated() -> None:
    tail = OutputTail()
    tail.write(b"hello ")
    tail.write(b"world")
    assert tail.getvalue() == b"hello world"
    assert not tail.truncated


def test_one_write_larger_than_the_limit_keeps_its_end() -> None:
    tail = OutputTail(limit=10)
    tail.write(b"0123456789abcdef")
    assert tail.getvalue() == b"6789abcdef"


@given(st.lists(st.binary(max_size=40), max_size=60), st.integers(min_value=1, max_value=64))
def test_tail_always_equals_the_end_of_everything_written(chunks: list[bytes], limit: int) -> None:
    tail = OutputTail(limit=limit)
    for chunk in chunks:
        assert tail.write(chunk) == len(chunk)
    everything = b"".join(chunks)
    assert tail.getvalue() == everything[-limit:]
    assert tail.truncated == (len(everything) > limit)


def test_concurrent_writers_lose_no_bytes_below_the_limit() -> None:
    tail = OutputTail()
    threads = [
        threading.Thread(target=lambda c=c: [tail.write(c * 10) for _ in range(500)])
        for c in (b"a", b"b", b"c", b"d")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    value = tail.getvalue()
    assert len(value) == 20_000
    assert sorted(set(value)) == sorted(b"abcd")


def test_failure_output_puts_the_error_first_and_stays_within_the_limit() -> None:
    assert failure_output("exit status 1", b"out\n") == b"exit status 1\nout\n"
    long = b"x" * 300_000
    out = failure_output("exit status 2", long)
    assert len(out) == OUTPUT_LIMIT
    assert out.startswith(b"exit status 2\nxxx")


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_go_true_strings(text: str) -> None:
    assert parse_go_bool(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_go_false_strings(text: str) -> None:
    assert parse_go_bool(text) is False


@pytest.mark.parametrize("text", ["yes", "on", "tRuE", " true", ""])
def test_other_strings_are_not_booleans(text: str) -> None:
    with pytest.raises(ValueError, match="invalid boolean"):
        parse_go_bool(text)


def test_registry_knows_shell_and_http_only() -> None:
    assert names() == ["http", "shell"]
    shell, http = get_executor("shell"), get_executor("http")
    assert shell is not None and shell.name == "shell"
    assert http is not None and http.name == "http"
    assert get_executor("docker") is None
