"""Finding 3: jobs inherited the agent's secrets (token, cluster key, mail password...).

A job's process now starts without any of them: a plain job keeps the rest of the agent's
environment, a `su` job and every imported crontab job get only cron's minimal environment,
and each gets its own env and the run's DKRON_* variables."""

from __future__ import annotations

import os
import pwd
import threading

import pytest

from crontab_compat.convert import entry_to_job
from crontab_compat.parser import parse_crontab
from dkron_pkg import config, osdeps
from dkron_pkg.executors import get_executor
from dkron_pkg.runner import Runner

pytestmark = pytest.mark.skipif(osdeps.IS_WINDOWS, reason="POSIX processes and accounts")

AGENT_SECRETS = {
    "DKRON_API_TOKEN": "token-123",
    "DKRON_ENCRYPT": "a2V5LWtleS1rZXkta2V5LWtleS1rZXkta2V5IQ==",
    "DKRON_MAIL_PASSWORD": "smtp-pass",
    "DKRON_WEBHOOK_HEADERS": "Authorization: Bearer hook",
    "DKRON_RPC_TLS_KEY": "/etc/dkron/node.key",
    "DKRON_ENCRYPT_FILE": "/etc/dkron/cluster.key",  # a key-file option: covered by its name
}
RUN_VARIABLES = {"DKRON_EXECUTION_ID", "DKRON_NODE_NAME", "DKRON_SCHEDULED_AT", "DKRON_ATTEMPT"}
CRON_BASE = {"HOME", "LOGNAME", "USER", "SHELL", "PATH"}


@pytest.fixture
def agent_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent was started with its secrets (and one ordinary variable) in its environment."""
    for name, value in AGENT_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AGENT_ORDINARY_VAR", "kept")


def run_env(job: dict) -> dict[str, str]:
    """Run `job` through the runner, as the agent does, and return the process environment."""
    done = threading.Event()
    finished: list[dict] = []

    def on_finished(_job: dict, execution: dict, _stopped: bool, _to: str | None) -> None:
        finished.append(execution)
        done.set()

    runner = Runner("node-a", lambda *_: None, on_finished)
    runner.start(job, group=1, attempt=1)
    assert done.wait(20), "the run did not finish"
    execution = finished[0]
    assert execution["success"], execution["output"]
    return dict(line.split("=", 1) for line in execution["output"].splitlines() if "=" in line)


def env_job(name: str, **config_keys: str) -> dict:
    """A job whose whole output is its environment, one NAME=value per line (no shell)."""
    return {
        "name": name,
        "executor": "shell",
        "executor_config": {"command": "/usr/bin/env", **config_keys},
    }


def other_account() -> pwd.struct_passwd:
    """nobody when we can switch users (root), else our own account (su to oneself)."""
    if os.geteuid() == 0:
        return pwd.getpwnam("nobody")
    return pwd.getpwuid(os.geteuid())


def test_a_plain_job_does_not_inherit_the_agents_secrets(agent_env: None) -> None:
    env = run_env(env_job("plain", env="OWN=mine"))
    leaked = sorted(set(AGENT_SECRETS) & set(env))
    assert leaked == [], f"the job saw the agent's {leaked}"
    assert env["AGENT_ORDINARY_VAR"] == "kept"  # the rest of the agent's environment stays
    assert env["OWN"] == "mine" and env["ENV_JOB_NAME"] == "plain"
    assert RUN_VARIABLES <= set(env) and env["DKRON_NODE_NAME"] == "node-a"


def test_a_su_job_gets_crons_minimal_environment(agent_env: None) -> None:
    account = other_account()
    env = run_env(env_job("as-other", su=account.pw_name, env="OWN=mine"))
    assert set(env) == CRON_BASE | RUN_VARIABLES | {"OWN", "ENV_JOB_NAME"}, sorted(env)
    assert env["USER"] == env["LOGNAME"] == account.pw_name
    assert env["HOME"] == account.pw_dir
    assert (env["SHELL"], env["PATH"]) == ("/bin/sh", "/usr/bin:/bin")


def test_an_imported_user_crontab_job_lacks_the_agents_secrets(agent_env: None) -> None:
    account = other_account()
    crontab = "HOME=/\nGREETING=hello\n* * * * * /usr/bin/env\n"  # nobody's home is missing
    path = f"/var/spool/cron/crontabs/{account.pw_name}"
    parsed = parse_crontab(crontab, path, system=False, owner=account.pw_name)
    assert parsed.entries, parsed.errors
    job = entry_to_job(parsed.entries[0], timezone="UTC", host="node-a", agent_user="root")
    env = run_env(job)
    shell_own = {"PWD"}  # /bin/sh -c exports it itself, under cron too
    expected = CRON_BASE | RUN_VARIABLES | shell_own | {"GREETING", "ENV_JOB_NAME"}
    assert set(env) == expected, sorted(env)
    assert env["USER"] == account.pw_name and env["GREETING"] == "hello"


def test_every_secret_setting_of_the_agent_is_withheld() -> None:
    from dkron_pkg.executors.childenv import SECRET_ENV_VARS, is_secret

    secret_keys = [spec for spec in config.KEYS.values() if spec.name in config._SECRET_KEYS]
    assert secret_keys and all(is_secret(spec.env) for spec in secret_keys)
    assert all(is_secret(name) for name in SECRET_ENV_VARS)
    assert not is_secret("DKRON_NODE_NAME") and not is_secret("PATH")


def test_a_su_job_cannot_ask_for_the_agents_environment() -> None:
    shell = get_executor("shell")
    assert shell is not None
    errors = shell.validate({"command": "env", "su": "nobody", "inherit_env": "true"})
    assert errors == [
        "executor_config.inherit_env: cannot be true with su: a su job gets cron's environment"
    ]
