"""The environment a job's process starts with, and the agent secrets it never gets.

Three layers, later ones winning: a base, the job's own `env`/`env_json` (which carries the
run variables DKRON_EXECUTION_ID, DKRON_NODE_NAME, DKRON_SCHEDULED_AT and DKRON_ATTEMPT), then
ENV_JOB_NAME. The base is
- for a job run as the agent's user (no `su`), the agent's environment without its secrets,
  as Dkron users expect;
- for a `su` job, or a job with `inherit_env: false` (every imported crontab job), only what
  cron gives a job (osdeps.login_env): HOME, LOGNAME, USER, SHELL=/bin/sh, PATH=/usr/bin:/bin.

A secret is a name in SECRET_ENV_VARS or any DKRON_* name holding one of SECRET_NAME_WORDS
(so a key-file option added later is covered too). The job's own env is never filtered: a job
that needs a token is given it explicitly.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from dkron_pkg import osdeps

SECRET_ENV_VARS = (
    "DKRON_API_TOKEN",
    "DKRON_ENCRYPT",
    "DKRON_MAIL_USERNAME",
    "DKRON_MAIL_PASSWORD",
    "DKRON_MAIL_PAYLOAD",
    "DKRON_WEBHOOK_ENDPOINT",
    "DKRON_WEBHOOK_HEADERS",
    "DKRON_WEBHOOK_PAYLOAD",
    "DKRON_PRE_WEBHOOK_ENDPOINT",
    "DKRON_PRE_WEBHOOK_HEADERS",
    "DKRON_PRE_WEBHOOK_PAYLOAD",
    "DKRON_CRONITOR_ENDPOINT",
    "DKRON_OTEL_ENDPOINT",
    "DKRON_RPC_TLS_CERT",
    "DKRON_RPC_TLS_KEY",
    "DKRON_RPC_TLS_CA",
)
"""Agent settings that are, or may hold, credentials (URLs and headers can carry tokens)."""

SECRET_NAME_WORDS = ("TOKEN", "KEY", "PASSWORD", "PASSWD", "SECRET", "ENCRYPT", "TLS", "AUTH")
"""Any DKRON_* variable whose name contains one of these is treated as a secret too."""


def is_secret(name: str) -> bool:
    """True for an agent variable a job must not inherit (names compared in upper case)."""
    upper = name.upper()
    if upper in SECRET_ENV_VARS:
        return True
    return upper.startswith("DKRON_") and any(word in upper for word in SECRET_NAME_WORDS)


def agent_env_without_secrets(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The agent's environment minus every secret (see is_secret)."""
    source = os.environ if environ is None else environ
    return {name: value for name, value in source.items() if not is_secret(name)}


def child_env(
    job_env: Iterable[tuple[str, str]],
    job_name: str,
    *,
    creds: osdeps.Credentials | None = None,
    inherit: bool = True,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The whole environment of one run (`creds`: the account of a `su` job); see the module
    docstring for the layers."""
    if creds is not None or not inherit:
        env = osdeps.login_env(creds)
    else:
        env = agent_env_without_secrets(environ)
    env.update(job_env)
    env["ENV_JOB_NAME"] = job_name
    return env
