"""The shell executor against real processes."""

from __future__ import annotations

import base64
import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from dkron_pkg import osdeps
from dkron_pkg.executors import ExecResult, get_executor
from dkron_pkg.executors.shell import STOPPED_MESSAGE, parse_mem_limit

pytestmark = pytest.mark.skipif(osdeps.IS_WINDOWS, reason="the commands below are POSIX sh")

SHELL = get_executor("shell")
PY = sys.executable


def run(config: dict[str, str], cancel: threading.Event | None = None, **kw: object) -> ExecResult:
    assert SHELL is not None
    chunks: list[bytes] = []
    result = SHELL.run(
        config,
        job_name=str(kw.get("job_name", "job-1")),
        on_output=chunks.append,
        cancel=cancel or threading.Event(),
    )
    if result.success:
        assert b"".join(chunks)[-256_000:] == result.output
    return result


def wait_gone(pid: int, seconds: float = 5.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not osdeps.pid_alive(pid):
            return True
        time.sleep(0.02)
    return False


def test_exit_zero_is_success_with_the_output() -> None:
    before = time.time_ns()
    result = run({"command": "echo hello", "shell": "true"})
    assert result.success
    assert result.output == b"hello\n"
    assert result.error == ""
    assert result.process_started_ns is not None
    assert before <= result.process_started_ns <= time.time_ns()


def test_nonzero_exit_fails_with_go_style_error_line_first() -> None:
    result = run({"command": "echo partial; exit 3", "shell": "true"})
    assert not result.success
    assert result.error == "exit status 3"
    assert result.exit_code == 3
    assert result.output == b"exit status 3\npartial\n"


def test_death_by_signal_is_reported_like_go() -> None:
    result = run({"command": "kill -TERM $$", "shell": "true"})
    assert not result.success
    assert result.error == "signal: terminated"


def test_stdout_and_stderr_are_interleaved_in_order() -> None:
    result = run({"command": "echo a; echo b >&2; echo c", "shell": "true"})
    assert result.output == b"a\nb\nc\n"


def test_output_of_300000_bytes_keeps_the_last_256000_and_streams_all() -> None:
    code = "import sys; sys.stdout.buffer.write(bytes(i % 251 for i in range(300000)))"
    chunks: list[bytes] = []
    assert SHELL is not None
    result = SHELL.run(
        {"command": f'{PY} -c "{code}"'},
        job_name="big",
        on_output=chunks.append,
        cancel=threading.Event(),
    )
    data = bytes(i % 251 for i in range(300_000))
    assert result.success
    assert result.output == data[-256_000:]
    assert b"".join(chunks) == data


def test_without_shell_the_command_is_split_into_words_and_not_interpreted() -> None:
    result = run({"command": "printf '%s|' 'a b' c"})
    assert result.output == b"a b|c|"
    piped = run({"command": "echo a | tr a b"})
    assert piped.output == b"a | tr a b\n"


@pytest.mark.parametrize("flag", ["1", "t", "True", "TRUE"])
def test_any_go_true_string_enables_the_shell(flag: str) -> None:
    assert run({"command": "echo a | tr a b", "shell": flag}).output == b"b\n"


def test_shell_false_strings_exec_directly() -> None:
    assert run({"command": "echo $HOME", "shell": "false"}).output == b"$HOME\n"


def test_env_env_json_and_job_name_reach_the_process(tmp_path: Path) -> None:
    config = {
        "command": 'printf "%s\\n" "$A" "$B" "$C" "$ENV_JOB_NAME"; pwd',
        "shell": "true",
        "env": "A=1,B=x=y",
        "env_json": json.dumps({"C": "with,commas"}),
        "cwd": str(tmp_path),
    }
    result = run(config, job_name="nightly-backup")
    lines = result.output.decode().splitlines()
    assert lines == ["1", "x=y", "with,commas", "nightly-backup", str(tmp_path.resolve())]


def test_agent_environment_is_inherited() -> None:
    os.environ["DKRON_EXECUTOR_TEST_VAR"] = "inherited"
    try:
        result = run({"command": "echo $DKRON_EXECUTOR_TEST_VAR", "shell": "true"})
    finally:
        del os.environ["DKRON_EXECUTOR_TEST_VAR"]
    assert result.output == b"inherited\n"


def test_payload_is_written_to_stdin() -> None:
    data = b"hello\x00world\n"
    result = run({"command": "cat", "payload": base64.b64encode(data).decode()})
    assert result.success
    assert result.output == data


def test_large_payload_is_delivered_whole() -> None:
    data = os.urandom(300_000)
    result = run({"command": "wc -c", "payload": base64.b64encode(data).decode()})
    assert result.output.strip() == b"300000"


def test_payload_for_a_command_that_does_not_read_stdin_is_harmless() -> None:
    payload = base64.b64encode(b"x" * 200_000).decode()
    assert run({"command": "true", "payload": payload}).success


def test_without_payload_stdin_is_empty() -> None:
    assert run({"command": "wc -c"}).output.strip() == b"0"


def test_timeout_kills_the_whole_group_including_grandchildren(tmp_path: Path) -> None:
    pidfile = tmp_path / "pids"
    command = f"sleep 30 & echo $! > {pidfile}; sleep 30"
    result = run({"command": command, "shell": "true", "timeout": "1s"})
    message = f"shell: Job '{command}' execution time exceeding defined timeout 1s. Job was killed"
    assert not result.success
    assert result.error == message
    assert result.output.startswith(b"signal: killed\n")
    assert result.output.endswith(message.encode())
    grandchild = int(pidfile.read_text())
    assert wait_gone(grandchild), f"grandchild {grandchild} survived the timeout"


def test_timeout_also_kills_a_descendant_that_left_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    code = f"import os; os.setsid(); open('{pidfile}', 'w').write(str(os.getpid())); os.pause()"
    command = f'{PY} -c "{code}" & sleep 30'
    result = run({"command": command, "shell": "true", "timeout": "1500ms"})
    assert "exceeding defined timeout 1.5s" in result.error
    escaped = int(pidfile.read_text())
    assert wait_gone(escaped), f"setsid descendant {escaped} survived the timeout"


def test_job_finishing_before_its_timeout_succeeds() -> None:
    result = run({"command": "echo quick", "shell": "true", "timeout": "30s"})
    assert result.success
    assert result.output == b"quick\n"


def test_mem_limit_kills_a_process_that_allocates_too_much() -> None:
    code = "import time; a = b'x' * (200 << 20); print('allocated', flush=True); time.sleep(30)"
    result = run({"command": f'{PY} -c "{code}"', "mem_limit": "50MB", "timeout": "20s"})
    assert not result.success
    assert "exceeding defined mem_limit 52428800 bytes. Job was killed" in result.error
    assert result.output.startswith(b"signal: killed\n")


def test_mem_limit_leaves_a_small_job_alone() -> None:
    result = run({"command": "echo small", "shell": "true", "mem_limit": "1GB"})
    assert result.success


def test_cancel_kills_the_group_and_reports_stopped(tmp_path: Path) -> None:
    assert SHELL is not None
    cancel = threading.Event()
    started = threading.Event()
    pidfile = tmp_path / "pid"
    box: list[ExecResult] = []

    def go() -> None:
        box.append(
            SHELL.run(
                {"command": f"sleep 30 & echo $! > {pidfile}; echo up; wait", "shell": "true"},
                job_name="c",
                on_output=lambda _chunk: started.set(),
                cancel=cancel,
            )
        )

    worker = threading.Thread(target=go)
    worker.start()
    assert started.wait(10)
    cancel.set()
    worker.join(10)
    assert not worker.is_alive()
    assert box[0].error == STOPPED_MESSAGE
    assert box[0].output.startswith(STOPPED_MESSAGE.encode() + b"\n")
    assert wait_gone(int(pidfile.read_text()))


def test_cancel_before_start_does_not_spawn(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"
    result = run({"command": f"touch {marker}", "shell": "true"}, cancel=cancel)
    assert result.error == STOPPED_MESSAGE
    assert not marker.exists()


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="su needs root")
def test_su_runs_the_command_as_that_user() -> None:
    result = run({"command": "id -u; id -g; id -G", "shell": "true", "su": "nobody"})
    assert result.success, result.output
    uid, gid, groups = result.output.decode().split("\n")[:3]
    import pwd

    entry = pwd.getpwnam("nobody")
    assert (int(uid), int(gid)) == (entry.pw_uid, entry.pw_gid)
    assert groups.split() == [str(entry.pw_gid)], "root's supplementary groups were kept"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="su needs root")
def test_su_with_a_group() -> None:
    import grp

    group = grp.getgrgid(0).gr_name
    result = run({"command": "id -u; id -g", "shell": "true", "su": f"nobody:{group}"})
    assert result.output.decode().split()[1] == "0"


def test_su_with_an_unknown_user_fails_clearly() -> None:
    result = run({"command": "true", "su": "no-such-user-xyz"})
    assert not result.success
    assert result.error == 'shell: su: unknown user "no-such-user-xyz"'


def test_missing_executable_fails_with_a_clear_error() -> None:
    result = run({"command": "no-such-program-xyz --flag"})
    assert not result.success
    assert result.error == 'exec: "no-such-program-xyz": executable file not found in $PATH'
    assert result.output.startswith(result.error.encode())
    assert result.process_started_ns is None


def test_missing_cwd_fails_with_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    result = run({"command": "pwd", "cwd": str(missing)})
    assert not result.success
    assert result.error == f"chdir {missing}: no such file or directory"


def test_a_failing_output_listener_does_not_break_the_run() -> None:
    assert SHELL is not None

    def boom(_chunk: bytes) -> None:
        raise RuntimeError("listener bug")

    result = SHELL.run(
        {"command": "echo ok", "shell": "true"},
        job_name="x",
        on_output=boom,
        cancel=threading.Event(),
    )
    assert result.success
    assert result.output == b"ok\n"


def test_many_concurrent_runs_each_get_their_own_output() -> None:
    results: dict[int, ExecResult] = {}

    def go(i: int) -> None:
        results[i] = run({"command": f"echo run-{i}", "shell": "true", "timeout": "30s"})

    threads = [threading.Thread(target=go, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert {i: r.output for i, r in results.items()} == {
        i: f"run-{i}\n".encode() for i in range(40)
    }


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({}, "executor_config.command: is required"),
        ({"command": "   "}, "executor_config.command: is required"),
        ({"command": "echo 'open"}, "executor_config.command: cannot split into words"),
        ({"command": "x", "shell": "yes"}, 'executor_config.shell: invalid boolean "yes"'),
        ({"command": "x", "env": "A=1,NOEQUALS"}, 'executor_config.env: entry "NOEQUALS"'),
        ({"command": "x", "env": "=v"}, 'executor_config.env: entry "=v" is not NAME=value'),
        ({"command": "x", "env_json": "{"}, "executor_config.env_json: not valid JSON"),
        ({"command": "x", "env_json": "[1]"}, "executor_config.env_json: must be a JSON object"),
        ({"command": "x", "env_json": '{"A": 1}'}, 'executor_config.env_json: value of "A"'),
        ({"command": "x", "timeout": "5x"}, 'executor_config.timeout: invalid duration "5x"'),
        ({"command": "x", "timeout": "-1s"}, "executor_config.timeout: must be positive"),
        ({"command": "x", "mem_limit": "10q"}, 'executor_config.mem_limit: invalid size "10q"'),
        ({"command": "x", "mem_limit": "0"}, "executor_config.mem_limit: invalid size"),
        ({"command": "x", "su": "a:"}, 'executor_config.su: invalid su value "a:"'),
        ({"command": "x", "su": ":g"}, 'executor_config.su: invalid su value ":g"'),
        ({"command": "x", "payload": "!!notb64"}, "executor_config.payload: is not valid base64"),
        (
            {"command": "x", "inherit_env": "no"},
            'executor_config.inherit_env: invalid boolean "no"',
        ),
        ({"command": "x", "timeout": 5}, "executor_config.timeout: must be a string, got int"),
        ({"command": "echo \x00"}, "executor_config.command: must not contain NUL"),
        ({"command": "x", "cwd": "/tmp\x00"}, "executor_config.cwd: must not contain NUL"),
        ({"command": "x", "env": "A=\x00"}, "executor_config.env: must not contain NUL"),
        ({"command": "x", "env_json": '{"A": "\\u0000"}'}, 'executor_config.env_json: "A" must'),
    ],
)
def test_validation_names_the_bad_key(config: dict[str, str], message: str) -> None:
    assert SHELL is not None
    errors = SHELL.validate(config)
    assert len(errors) == 1, errors
    assert errors[0].startswith(message)


def test_run_with_a_bad_config_fails_without_raising() -> None:
    result = run({"command": "x", "timeout": "soon"})
    assert not result.success
    assert "executor_config.timeout" in result.error


def test_a_full_valid_config_has_no_messages(tmp_path: Path) -> None:
    assert SHELL is not None
    config = {
        "command": "echo hi",
        "shell": "true",
        "env": "A=1,B=2",
        "env_json": '{"C": "3"}',
        "cwd": str(tmp_path),
        "timeout": "1h30m",
        "mem_limit": "1.5GB",
        "su": "nobody:nogroup",
        "payload": base64.b64encode(b"data").decode(),
    }
    assert SHELL.validate(config) == []


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1024", 1024),
        ("100B", 100),
        ("1K", 1024),
        ("1.5kb", 1536),
        ("2M", 2 << 20),
        ("10 MB", 10 << 20),
        ("1g", 1 << 30),
        ("0.5GB", 1 << 29),
        ("1TB", 1 << 40),
        ("1t", 1 << 40),
    ],
)
def test_mem_limit_sizes_use_binary_multiples(text: str, size: int) -> None:
    assert parse_mem_limit(text) == size


@pytest.mark.parametrize("text", ["", "MB", "1.2.3M", "1PB", "-1M", "1 M B"])
def test_bad_mem_limit_sizes_are_rejected(text: str) -> None:
    with pytest.raises(ValueError, match="invalid size"):
        parse_mem_limit(text)


def test_timeout_applies_to_a_process_that_closed_its_output() -> None:
    result = run({"command": "exec >&- 2>&-; sleep 30", "shell": "true", "timeout": "1s"})
    assert not result.success
    assert "exceeding defined timeout 1s. Job was killed" in result.error


def test_a_detached_background_child_outlives_a_successful_job(tmp_path: Path) -> None:
    pidfile = tmp_path / "pid"
    command = f"sleep 30 >/dev/null 2>&1 & echo $! > {pidfile}; echo started"
    result = run({"command": command, "shell": "true"})
    background = int(pidfile.read_text())
    try:
        assert result.success
        assert result.output == b"started\n"
        assert osdeps.pid_alive(background), "a normal exit must not kill the job's group"
    finally:
        os.kill(background, 9)
