"""The `fluent` processor: the execution as one Fluent forward-protocol event over TCP.

Where to send comes from the agent's environment, as in Dkron: FLUENTBIT_HOST (default
127.0.0.1), FLUENTBIT_PORT (default 24224) and FLUENTBIT_TAG (default `dkron`). The event is
the message-mode array `[tag, time, record]` in MessagePack, time in integer Unix seconds of
`finished_at`, and record `{host, job_name, message}` as Dkron sends, plus execution_id,
success, node_name, reporting_node, attempt, group, started_at and finished_at.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from typing import Any

from ..timefmt import parse_rfc3339
from .msgpack_encode import packb

PLACEHOLDER = "Output sent to Fluent"
TIMEOUT = 5.0


def target(env: Mapping[str, str]) -> tuple[str, int, str]:
    host = env.get("FLUENTBIT_HOST") or "127.0.0.1"
    port_text = env.get("FLUENTBIT_PORT") or "24224"
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f'invalid FLUENTBIT_PORT "{port_text}": expected a port number')
    return host, int(port_text), env.get("FLUENTBIT_TAG") or "dkron"


def event_time(execution: dict) -> int:
    try:
        return int(parse_rfc3339(str(execution.get("finished_at"))).timestamp())
    except ValueError:
        return int(time.time())


def encode_event(execution: dict, tag: str, reporting_node: str) -> bytes:
    record = {
        "host": execution.get("node_name", ""),
        "job_name": execution.get("job_name", ""),
        "message": str(execution.get("output") or ""),
        "execution_id": execution.get("id", ""),
        "success": bool(execution.get("success")),
        "node_name": execution.get("node_name", ""),
        "reporting_node": reporting_node,
        "attempt": int(execution.get("attempt") or 0),
        "group": int(execution.get("group") or 0),
        "started_at": execution.get("started_at", ""),
        "finished_at": execution.get("finished_at", ""),
    }
    return packb([tag, event_time(execution), record])


def process(execution: dict, config: dict, ctx: Any) -> str:
    host, port, tag = target(ctx.env)
    data = encode_event(execution, tag, ctx.reporting_node)
    with socket.create_connection((host, port), timeout=TIMEOUT) as sock:
        sock.sendall(data)
    return PLACEHOLDER
