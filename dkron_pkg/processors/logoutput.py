"""The `log` processor: the output in the agent's own stdout/stderr, framed by markers."""

from __future__ import annotations

import sys
from typing import Any

PLACEHOLDER = "Output in dkron log"


def process(execution: dict, config: dict, ctx: Any) -> str:
    stream = sys.stdout if execution.get("success") else sys.stderr
    output = str(execution.get("output") or "")
    header = (
        f"----- BEGIN OUTPUT job={execution.get('job_name')} execution={execution.get('id')} -----"
    )
    body = output if output.endswith("\n") or not output else output + "\n"
    stream.write(f"{header}\n{body}----- END OUTPUT -----\n")
    stream.flush()
    return PLACEHOLDER
