"""Misconfigurations a node has noticed, for `/health`, the UI's Nodes page and the log.

Each checker owns a kind ("bootstrap-expect", "rpc", "gossip-key", "raft") and reports the
whole set it sees now with `update(kind, {key: message})`; a problem is logged once as a
warning when it appears and once when it is gone, however often it is checked.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("dkron.problems")


class Problems:
    """The problems seen now, by kind; safe to use from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_kind: dict[str, dict[str, str]] = {}

    def update(self, kind: str, found: dict[str, str]) -> None:
        """Replace the problems of `kind` with `found` (key -> message)."""
        with self._lock:
            before = self._by_kind.get(kind, {})
            self._by_kind[kind] = dict(found)
        for key, message in found.items():
            if before.get(key) is None:
                log.warning("problem: %s", message)
        for key, message in before.items():
            if key not in found:
                log.info("problem solved: %s", message)

    def list(self) -> list[dict[str, str]]:
        """Every problem as {"kind", "message"}, in a stable order."""
        with self._lock:
            out = []
            for kind in sorted(self._by_kind):
                found = self._by_kind[kind]
                out += [{"kind": kind, "message": found[key]} for key in sorted(found)]
            return out
