"""The `files` processor: one file per execution, `<log_dir>/<execution id>.log`."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

DEFAULT_LOG_DIR = "/var/log/dkron"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_name(execution_id: str) -> str:
    """The execution id as a file name that cannot leave log_dir (ids come from other nodes)."""
    name = _UNSAFE.sub("_", execution_id).lstrip(".")
    if not name:
        raise ValueError(f"execution id {execution_id!r} gives no usable file name")
    return name + ".log"


def process(execution: dict, config: dict, ctx: Any) -> str:
    log_dir = Path(config.get("log_dir") or DEFAULT_LOG_DIR)
    log_dir.mkdir(parents=True, exist_ok=True)
    path = log_dir / file_name(str(execution.get("id") or ""))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8", errors="replace") as fh:
        fh.write(str(execution.get("output") or ""))
    os.replace(tmp, path)
    return str(path)
