"""What clients written for other Dkron versions send, turned into the job shape `jobs` checks.

Dkron decodes a job with Go's JSON decoder, which ignores fields it does not know: clients made
for older or newer versions (pydkron, dkron-python, old job files) send such fields and expect
201. Dkron 1.x also ran jobs without an executor through the shell executor, built from the
top-level `command`, `shell` and `environment_variables` fields. The API does the same here,
before anything is committed: the store keeps checking its commands strictly
(`jobs.normalize_job` refuses unknown fields).
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Any

from dkron_pkg.jobs import READ_ONLY_EXTRAS, SERVER_FIELDS, USER_FIELDS, JobError

# Dkron 1.x's job fields for the shell executor, used when the job names no executor.
LEGACY_SHELL_FIELDS = ("command", "shell", "environment_variables")
KNOWN_FIELDS = frozenset(USER_FIELDS) | frozenset(SERVER_FIELDS) | frozenset(READ_ONLY_EXTRAS)
_GO_BOOLS = {
    **dict.fromkeys(("1", "t", "T", "true", "TRUE", "True"), True),
    **dict.fromkeys(("0", "f", "F", "false", "FALSE", "False"), False),
}


@dataclass
class ClientJob:
    """A client's job with unknown fields dropped and Dkron 1.x fields mapped."""

    payload: Any
    ignored: list[str] = field(default_factory=list)  # unknown top-level fields, sorted
    mapped: list[str] = field(default_factory=list)  # 1.x fields turned into executor_config

    def hints(self, limit: int = 10) -> str:
        """The first `limit` ignored fields, each with the known field it may be a typo of."""
        out = []
        for name in self.ignored[:limit]:
            shown = json.dumps(name[:100], ensure_ascii=False)
            close = difflib.get_close_matches(name[:100], list(USER_FIELDS), n=1)
            out.append(f'{shown} (did you mean "{close[0]}"?)' if close else shown)
        if len(self.ignored) > limit:
            out.append(f"and {len(self.ignored) - limit} more")
        return ", ".join(out)


def accept_client_job(payload: Any) -> ClientJob:
    """Drop the fields this server does not know; map Dkron 1.x's shell fields.

    Anything that is not a JSON object is passed on untouched for `normalize_job` to refuse.
    Raises JobError when a 1.x field that is used has the wrong type.
    """
    if not isinstance(payload, dict):
        return ClientJob(payload)
    out = {k: v for k, v in payload.items() if k in KNOWN_FIELDS}
    mapped: list[str] = []
    config = payload.get("executor_config")
    if (
        not payload.get("executor")
        and payload.get("command") not in (None, "")
        and (config is None or isinstance(config, dict))
    ):
        out["executor"] = "shell"
        out["executor_config"] = {**(config or {}), **_legacy_shell_config(payload)}
        mapped = [k for k in LEGACY_SHELL_FIELDS if k in payload]
    ignored = sorted(k for k in payload if k not in KNOWN_FIELDS and k not in mapped)
    return ClientJob(out, ignored, mapped)


def _legacy_shell_config(payload: dict) -> dict[str, str]:
    """executor_config for the shell executor from Dkron 1.x's command, shell and env list."""
    command = payload["command"]
    if not isinstance(command, str):
        raise JobError("Unable to parse payload: field command must be a string", "command")
    shell = payload.get("shell")
    if shell is None:
        shell = False
    elif isinstance(shell, str) and shell in _GO_BOOLS:
        shell = _GO_BOOLS[shell]
    elif not isinstance(shell, bool):
        raise JobError("Unable to parse payload: field shell must be true or false", "shell")
    config = {"command": command, "shell": "true" if shell else "false"}
    env = payload.get("environment_variables")
    if env is None:
        return config
    if not isinstance(env, list) or not all(isinstance(e, str) and "=" in e for e in env):
        raise JobError(
            'Unable to parse payload: field environment_variables must be a list of "NAME=value"',
            "environment_variables",
        )
    pairs = [e.partition("=") for e in env]
    if any("," in value for _, _, value in pairs):
        config["env_json"] = json.dumps({name: value for name, _, value in pairs})
    elif env:
        config["env"] = ",".join(env)
    return config
