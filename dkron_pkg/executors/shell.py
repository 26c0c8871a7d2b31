"""The `shell` executor: runs a command in its own process group, as Dkron's shell plugin.

The run thread blocks on the child's output and exit only; cancel, timeout and mem_limit
are enforced by the shared watchdog thread, which kills the whole process group. The child's
environment never holds the agent's secrets (executors/childenv.py).
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from dkron_pkg import osdeps
from dkron_pkg.durations import format_duration, parse_duration
from dkron_pkg.executors.base import (
    ExecResult,
    OutputTail,
    failure_output,
    key_error,
    non_string_keys,
    parse_go_bool,
    safe_emit,
)
from dkron_pkg.executors.childenv import child_env
from dkron_pkg.executors.spawner import SPAWNER
from dkron_pkg.executors.watchdog import WATCHDOG, Watch

STOPPED_MESSAGE = "shell: execution stopped by request"
_READ_SIZE = 65_536
_BURST_YIELD_SECONDS = 2.0
_PIPE_BUFFER = 4096  # payloads this small always fit an empty pipe, so are written inline
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgt]?b?)\s*$", re.IGNORECASE)
_UNIT = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def parse_mem_limit(text: str) -> int:
    """Bytes from "512", "100MB", "1.5g" (binary multiples); ValueError on anything else."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f'invalid size "{text}": expected bytes or a number with B, K, M, G or T')
    unit = m.group(2).lower().rstrip("b")
    size = int(float(m.group(1)) * _UNIT[unit])
    if size <= 0:
        raise ValueError(f'invalid size "{text}": must be more than 0 bytes')
    return size


def parse_env(text: str) -> list[tuple[str, str]]:
    """Dkron's `env`: "K1=v1,K2=v2" (values cannot hold commas; use env_json for that)."""
    if "\x00" in text:
        raise ValueError("must not contain NUL characters")
    pairs = []
    for item in text.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f'entry "{item}" is not NAME=value')
        pairs.append((name.strip(), value))
    return pairs


def parse_env_json(text: str) -> list[tuple[str, str]]:
    """`env_json`: a JSON object of names to string values, for values with commas."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise ValueError("must be a JSON object of names to string values")  # noqa: TRY004
    pairs = []
    for name, value in data.items():
        if not name or "=" in name:
            raise ValueError(f'bad variable name "{name}"')
        if not isinstance(value, str):
            raise ValueError(f'value of "{name}" must be a string')  # noqa: TRY004
        if "\x00" in name + value:
            raise ValueError(f'"{name}" must not contain NUL characters')
        pairs.append((name, value))
    return pairs


@dataclass
class ShellConfig:
    """executor_config of a shell job, checked and converted."""

    command: str
    argv: list[str]
    env: list[tuple[str, str]] = field(default_factory=list)
    cwd: str | None = None
    timeout: float | None = None
    mem_limit: int | None = None
    su: str | None = None
    payload: bytes | None = None
    inherit_env: bool = True  # False: cron's minimal environment, even without su


def parse_shell_config(config: dict[str, str]) -> tuple[ShellConfig | None, list[str]]:
    """Check every key; return the converted config or the messages naming bad keys."""
    errors = non_string_keys(config)
    if errors:
        return None, errors
    command = config.get("command", "")
    use_shell = False
    if config.get("shell", "") != "":
        try:
            use_shell = parse_go_bool(config["shell"])
        except ValueError as exc:
            errors.append(key_error("shell", str(exc)))
    inherit_env = True
    if config.get("inherit_env", "") != "":
        try:
            inherit_env = parse_go_bool(config["inherit_env"])
        except ValueError as exc:
            errors.append(key_error("inherit_env", str(exc)))
    argv: list[str] = []
    if not command.strip():
        errors.append(key_error("command", "is required"))
    elif use_shell:
        argv = osdeps.shell_argv(command)
    else:
        try:
            argv = shlex.split(command)
        except ValueError as exc:
            errors.append(key_error("command", f"cannot split into words: {exc}"))
    env: list[tuple[str, str]] = []
    for key, parser in (("env", parse_env), ("env_json", parse_env_json)):
        if config.get(key, "") != "":
            try:
                env += parser(config[key])
            except ValueError as exc:
                errors.append(key_error(key, str(exc)))
    timeout = None
    if config.get("timeout", "") != "":
        try:
            timeout = parse_duration(config["timeout"])
            if timeout <= 0:
                errors.append(key_error("timeout", f'must be positive, got "{config["timeout"]}"'))
        except ValueError as exc:
            errors.append(key_error("timeout", str(exc)))
    mem_limit = None
    if config.get("mem_limit", "") != "":
        try:
            mem_limit = parse_mem_limit(config["mem_limit"])
        except ValueError as exc:
            errors.append(key_error("mem_limit", str(exc)))
    su = config.get("su", "") or None
    if su is not None:
        try:
            osdeps.parse_su(su)
            if osdeps.IS_WINDOWS:  # pragma: no cover
                errors.append(key_error("su", "not supported on Windows"))
        except osdeps.SuError as exc:
            errors.append(key_error("su", str(exc)))
        if inherit_env and config.get("inherit_env", "") != "":
            errors.append(
                key_error("inherit_env", "cannot be true with su: a su job gets cron's environment")
            )
    payload = None
    if config.get("payload", "") != "":
        try:
            payload = base64.b64decode(config["payload"], validate=True)
        except (binascii.Error, ValueError):
            errors.append(key_error("payload", "is not valid base64"))
    for key in ("command", "cwd"):
        if "\x00" in config.get(key, ""):
            errors.append(key_error(key, "must not contain NUL characters"))
    if errors:
        return None, errors
    cfg = ShellConfig(
        command, argv, env, config.get("cwd") or None, timeout, mem_limit, su, payload, inherit_env
    )
    return cfg, []


def _spawn_error(exc: OSError, argv: list[str], cwd: str | None) -> str:
    """Go-style text for a child that could not start."""
    reason = (exc.strerror or str(exc)).lower()
    if cwd and exc.filename == cwd:
        return f"chdir {cwd}: {reason}"
    if isinstance(exc, FileNotFoundError) and os.sep not in argv[0]:
        return f'exec: "{argv[0]}": executable file not found in $PATH'
    return f"fork/exec {argv[0]}: {reason}"


def _feed_stdin(proc: subprocess.Popen[bytes], payload: bytes) -> None:
    """Write the payload and close stdin; a child that does not read it is not an error."""
    assert proc.stdin is not None
    view = memoryview(payload)
    try:
        while view:
            view = view[proc.stdin.write(view) or 0 :]
    except (BrokenPipeError, OSError):
        pass
    finally:
        try:
            proc.stdin.close()
        except OSError:
            pass


class _Outcome:
    """Why the watchdog ended a run; set under the lock that also guards the kill."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.lock = threading.Lock()
        self.exited = False
        self.reason: str | None = None  # "stopped", "timeout", "mem"
        self.mem_used = 0

    def kill(self, reason: str, mem_used: int = 0) -> None:
        with self.lock:
            if self.exited:
                return  # the child is gone; its pid (the group id) may be reused
            self.reason, self.mem_used = reason, mem_used
            osdeps.kill_group(self.proc)

    def wait(self) -> int:
        """Wait for exit without reaping, close the kill window, then reap."""
        if hasattr(os, "waitid"):
            while True:
                try:
                    os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
                    break
                except ChildProcessError:
                    break
                except InterruptedError:  # pragma: no cover - Python retries EINTR
                    continue
        with self.lock:
            self.exited = True
        return self.proc.wait()


class ShellExecutor:
    """Runs `command` directly or through /bin/sh, with Dkron's shell plugin options."""

    name = "shell"

    def validate(self, config: dict[str, str]) -> list[str]:
        return parse_shell_config(config)[1]

    def run(
        self,
        config: dict[str, str],
        *,
        job_name: str,
        on_output: Callable[[bytes], None],
        cancel: threading.Event,
        start_at_ns: int | None = None,
    ) -> ExecResult:
        """Run the command; with `start_at_ns`, everything is prepared first and the process
        is spawned at that instant (a scheduled run starts on its second)."""
        cfg, errors = parse_shell_config(config)
        if cfg is None:
            return _failed("; ".join(errors))
        extra = {}
        creds = None
        if cfg.su:
            try:
                creds = osdeps.resolve_su(cfg.su)
            except osdeps.SuError as exc:
                return _failed(f"shell: {exc}")
            extra = osdeps.credentials_popen_kwargs(creds)
        env = child_env(cfg.env, job_name, creds=creds, inherit=cfg.inherit_env)
        try:
            spawned = SPAWNER.popen(
                cfg.argv,
                stdin=subprocess.PIPE if cfg.payload is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=cfg.cwd,
                bufsize=0,
                **osdeps.new_group_popen_kwargs(),
                **extra,
                start_at_ns=start_at_ns,
                cancel=cancel,
            )
        except OSError as exc:
            return _failed(_spawn_error(exc, cfg.argv, cfg.cwd))
        except ValueError as exc:  # e.g. a NUL byte that slipped past validation
            return _failed(f"shell: cannot start the command: {exc}")
        if spawned is None:
            return _failed(STOPPED_MESSAGE)
        proc, started_ns = spawned
        SPAWNER.wait_quiet(_BURST_YIELD_SECONDS)  # the rest of a burst starts first
        outcome = _Outcome(proc)
        watch = Watch(cancel=cancel, on_cancel=lambda: outcome.kill("stopped"))
        if cfg.timeout is not None:
            watch.deadline = time.monotonic() + cfg.timeout
            watch.on_deadline = lambda: outcome.kill("timeout")
        if cfg.mem_limit is not None:
            watch.mem_pid, watch.mem_limit = proc.pid, cfg.mem_limit
            watch.on_mem = lambda used: outcome.kill("mem", used)
        WATCHDOG.add(watch)
        try:
            if cfg.payload is not None:
                if len(cfg.payload) <= _PIPE_BUFFER:
                    _feed_stdin(proc, cfg.payload)
                else:
                    threading.Thread(
                        target=_feed_stdin, args=(proc, cfg.payload), daemon=True
                    ).start()
            tail = OutputTail()
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            while chunk := os.read(fd, _READ_SIZE):
                tail.write(chunk)
                safe_emit(on_output, chunk)
            proc.stdout.close()
            returncode = outcome.wait()
        finally:
            WATCHDOG.remove(watch)
            if proc.returncode is None:  # an exception above: never leave the group behind
                outcome.kill("stopped")
                proc.wait()
        return _result(cfg, outcome, returncode, tail.getvalue(), started_ns)


def _failed(error: str, started_ns: int | None = None) -> ExecResult:
    return ExecResult(False, failure_output(error, b""), error, started_ns)


def _result(
    cfg: ShellConfig, outcome: _Outcome, returncode: int, output: bytes, started_ns: int
) -> ExecResult:
    """Turn the exit into Dkron's success flag, error and stored output."""
    if outcome.reason == "stopped":
        error = STOPPED_MESSAGE
    elif outcome.reason == "timeout" and cfg.timeout is not None:
        error = (
            f"shell: Job '{cfg.command}' execution time exceeding defined timeout "
            f"{format_duration(cfg.timeout)}. Job was killed"
        )
    elif outcome.reason == "mem":
        error = (
            f"shell: Job '{cfg.command}' memory usage {outcome.mem_used} bytes exceeding "
            f"defined mem_limit {cfg.mem_limit} bytes. Job was killed"
        )
    elif returncode != 0:
        error = osdeps.exit_status_text(returncode)
    else:
        return ExecResult(True, output, "", started_ns, returncode)
    if outcome.reason in ("timeout", "mem"):
        # As Dkron: the exit line first, the output, then the explanation appended.
        body = output + error.encode()
        first = osdeps.exit_status_text(returncode)
        return ExecResult(False, failure_output(first, body), error, started_ns, returncode)
    return ExecResult(False, failure_output(error, output), error, started_ns, returncode)
