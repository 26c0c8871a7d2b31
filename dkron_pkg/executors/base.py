"""What every executor shares: the result type, the output tail and config helpers."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

OUTPUT_LIMIT = 256_000
"""Bytes of output kept per execution; Dkron keeps the tail of this size."""

log = logging.getLogger(__name__)

_GO_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_GO_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


class OutputTail:
    """Keeps the last `limit` bytes written (a ring), so long outputs cost bounded memory.

    Thread-safe: a reader thread may write while the agent reads the live tail.
    """

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        self.limit = limit
        self.total = 0
        self._buf = bytearray()
        self._slack = max(65_536, limit // 4)
        self._lock = threading.Lock()

    @property
    def truncated(self) -> bool:
        """True once more than `limit` bytes were written and the head was dropped."""
        return self.total > self.limit

    def write(self, data: bytes) -> int:
        """Append data, dropping the oldest bytes beyond the limit; returns len(data)."""
        with self._lock:
            self.total += len(data)
            if len(data) >= self.limit:
                self._buf[:] = data[-self.limit :]
            else:
                self._buf += data
                # Trim in batches so each byte is moved only a few times.
                if len(self._buf) > self.limit + self._slack:
                    del self._buf[: len(self._buf) - self.limit]
        return len(data)

    def getvalue(self) -> bytes:
        """The kept tail: at most `limit` bytes, the newest last."""
        with self._lock:
            return bytes(self._buf[-self.limit :])


@dataclass
class ExecResult:
    """The outcome of one run as the agent reports it."""

    success: bool
    output: bytes
    error: str
    process_started_ns: int | None = None
    exit_code: int | None = None


class Executor(Protocol):
    """A way to run a job (`executor` field of the job)."""

    name: str

    def validate(self, config: dict[str, str]) -> list[str]:
        """Messages naming each bad key of executor_config; empty when it is fine."""
        ...

    def run(
        self,
        config: dict[str, str],
        *,
        job_name: str,
        on_output: Callable[[bytes], None],
        cancel: threading.Event,
        start_at_ns: int | None = None,
    ) -> ExecResult:
        """Run to the end (or until cancel is set) and report; with `start_at_ns`, prepare
        first and start at that instant (time.time_ns() clock)."""
        ...


def parse_go_bool(text: str) -> bool:
    """Go's strconv.ParseBool, which Dkron uses for flags like `shell`; ValueError otherwise."""
    if text in _GO_TRUE:
        return True
    if text in _GO_FALSE:
        return False
    raise ValueError(f'invalid boolean "{text}" (use true or false)')


def key_error(key: str, message: str) -> str:
    """A validation message that names the config key, as the API reports it."""
    return f"executor_config.{key}: {message}"


def non_string_keys(config: dict[str, object]) -> list[str]:
    """Messages for values that are not strings (executor_config is a string map in Dkron)."""
    return [
        key_error(key, f"must be a string, got {type(value).__name__}")
        for key, value in config.items()
        if not isinstance(value, str)
    ]


def failure_output(error: str, tail: bytes, limit: int = OUTPUT_LIMIT) -> bytes:
    """Dkron's stored output for a failed run: the error line first, then the output tail.

    The error line is always kept; the output is cut from the front to fit the limit.
    """
    head = (error + "\n").encode("utf-8", "replace")[:limit]
    room = limit - len(head)
    return head + (tail[-room:] if room > 0 else b"")


def safe_emit(on_output: Callable[[bytes], None], chunk: bytes) -> None:
    """Forward live output; a failing listener must not break or orphan the run."""
    try:
        on_output(chunk)
    except Exception:  # the run goes on whatever the listener does
        log.exception("on_output listener failed")


def wait_for_start(start_at_ns: int | None, cancel: threading.Event) -> bool:
    """Wait until `start_at_ns` (time.time_ns() clock); False if the run was cancelled first."""
    if start_at_ns is not None:
        delay = (start_at_ns - time.time_ns()) / 1e9
        if delay > 0 and cancel.wait(delay):
            return False
    return not cancel.is_set()
