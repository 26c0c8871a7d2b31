"""Processors: what happens to a finished execution before it is stored (Dkron §6.3).

A job names its processors with Dkron's keys, all values strings:

    "processors": {"files": {"forward": "true", "log_dir": "/var/log/dkron"},
                   "syslog": {"address": "udp://127.0.0.1:514", "format": "rfc5424"}}

`apply_processors(job, execution, reporting_node, env=os.environ) -> dict` runs them on the
leader and returns the execution to store. Executions are dicts in Dkron's JSON shape (id,
job_name, started_at, finished_at, success, output, node_name, group, attempt).

- `log`: prints the output between `----- BEGIN OUTPUT job=<job> execution=<id> -----` and
  `----- END OUTPUT -----` to stdout (success) or stderr (failure).
- `files`: writes the output to `<log_dir>/<execution id>.log` (`log_dir` defaults to
  /var/log/dkron and is created); unsafe characters in the id become `_`.
- `syslog`: see `syslog_out` (facility cron, tag dkron, RFC 3164 or 5424, /dev/log or a
  udp://, tcp:// or unix:// address).
- `fluent`: see `fluent` (forward protocol over TCP to FLUENTBIT_HOST:FLUENTBIT_PORT).

`forward` is read like Go's ParseBool ("true", "1", "t", ...); when it is false or absent the
stored output is replaced by the processor's placeholder (Dkron's texts: "Output in dkron log",
the file path, "Output in syslog", "Output sent to Fluent"). Differences from Dkron, on
purpose: processors run in the order the job lists them and every one sees the *original*
output (in Dkron a non-forwarding processor hides the output from the next one, in random map
order); when several do not forward, their placeholders are joined with newlines. A processor
that fails (or is unknown) is logged and counted in `dkron_processor_failures_total`, its
placeholder is not applied, and the record is kept with its output.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .. import metrics
from . import files, fluent, logoutput, syslog_out

log = logging.getLogger("dkron.processors")


@dataclass(frozen=True)
class Context:
    """What a processor may need besides the execution and its own config."""

    job: Mapping[str, Any]
    reporting_node: str
    env: Mapping[str, str]


# A processor writes the execution somewhere and returns its placeholder text.
Processor = Callable[[dict, dict, Context], str]

PROCESSORS: dict[str, Processor] = {
    "log": logoutput.process,
    "files": files.process,
    "syslog": syslog_out.process,
    "fluent": fluent.process,
}

_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}


def parse_bool(value: Any, default: bool = False) -> bool:
    """Go's strconv.ParseBool; absent or unparsable gives `default`."""
    if isinstance(value, bool):
        return value
    if value is None:
        return default
    text = str(value).strip()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    return default


def apply_processors(
    job: Mapping[str, Any],
    execution: Mapping[str, Any],
    reporting_node: str,
    env: Mapping[str, str] = os.environ,
) -> dict:
    """Run the job's processors on a finished execution; return the execution to store."""
    result = dict(execution)
    configured = job.get("processors") or {}
    if not isinstance(configured, Mapping):
        log.warning("job %s: processors must be an object, ignoring them", job.get("name"))
        return result
    ctx = Context(job=job, reporting_node=reporting_node, env=env)
    placeholders: list[str] = []
    for name, raw_config in configured.items():
        impl = PROCESSORS.get(name)
        if impl is None:
            log.warning(
                "job %s: unknown processor %r (known: %s); skipped",
                job.get("name"),
                name,
                ", ".join(PROCESSORS),
            )
            metrics.processor_failed("unknown")
            continue
        config = {str(k): str(v) for k, v in (raw_config or {}).items()}
        config["reporting_node"] = reporting_node
        try:
            placeholder = impl(dict(execution), config, ctx)
        except Exception as exc:  # noqa: BLE001 - any sink failure must not lose the record
            log.warning(
                "job %s execution %s: processor %s failed: %s; record kept with its output",
                job.get("name"),
                execution.get("id"),
                name,
                exc,
            )
            metrics.processor_failed(name)
            continue
        if not parse_bool(config.get("forward")):
            placeholders.append(placeholder)
    if placeholders:
        result["output"] = "\n".join(placeholders)
    return result
