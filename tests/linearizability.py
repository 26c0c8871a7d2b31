"""Linearizability checker for a key-value history (put / get / cas), Wing & Gong / Lowe style.

The history is split per key (P-compositionality: a KV history is linearizable iff each
key's sub-history is), and each part is searched depth-first over a doubly linked list of
call/return events, with memoisation of (set of linearized operations, model state) so no
configuration is explored twice.

An operation whose response never arrived has `ret = None`: it may have taken effect at any
time after its call, or not at all. Its `output` may be None (unknown); a pending `get` says
nothing and is ignored.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

PUT, GET, CAS = "put", "get", "cas"


@dataclass(frozen=True, slots=True)
class Op:
    """One client operation. `call` and `ret` are comparable instants (ret None = pending).

    put: value=new value, output ignored. get: output=value read (None = absent).
    cas: expected, value=new value, output=True/False (None = unknown).
    """

    client: int
    kind: str
    key: str
    value: Any = None
    expected: Any = None
    output: Any = None
    call: float = 0.0
    ret: float | None = None


@dataclass(frozen=True, slots=True)
class Result:
    ok: bool
    bad_key: str | None = None
    explored: int = 0


def _step(state: Any, op: Op) -> tuple[bool, Any]:
    """Apply op to the register value `state`; return (legal, new_state)."""
    if op.kind == PUT:
        return True, op.value
    if op.kind == GET:
        return op.output == state, state
    if op.kind == CAS:
        matched = state == op.expected
        if op.output is None:
            return True, (op.value if matched else state)
        if op.output != matched:
            return False, state
        return True, (op.value if matched else state)
    raise ValueError(f"unknown operation kind {op.kind!r}")


class _Node:
    __slots__ = ("is_call", "match", "next", "op", "op_id", "prev")

    def __init__(self, op: Op | None, op_id: int, is_call: bool) -> None:
        self.op = op
        self.op_id = op_id
        self.is_call = is_call
        self.match: _Node | None = None
        self.prev: _Node | None = None
        self.next: _Node | None = None


def _check_key(ops: list[Op], initial: Any) -> tuple[bool, int]:
    """Search one key's history; returns (linearizable, configurations explored)."""
    events: list[tuple[float, int, int, _Node]] = []
    for op_id, op in enumerate(ops):
        call = _Node(op, op_id, True)
        ret = _Node(op, op_id, False)
        call.match = ret
        ret_time = math.inf if op.ret is None else op.ret
        # At equal times calls sort before returns: such operations count as concurrent.
        events.append((op.call, 0, op_id, call))
        events.append((ret_time, 1, op_id, ret))
    events.sort(key=lambda e: (e[0], e[1], e[2]))
    head = _Node(None, -1, False)
    tail = head
    for *_, node in events:
        tail.next = node
        node.prev = tail
        tail = node

    def lift(call: _Node) -> None:
        for node in (call, call.match):
            node.prev.next = node.next
            if node.next is not None:
                node.next.prev = node.prev

    def unlift(call: _Node) -> None:
        for node in (call.match, call):
            node.prev.next = node
            if node.next is not None:
                node.next.prev = node

    state = initial
    linearized = 0
    seen: set[tuple[int, Any]] = set()
    stack: list[tuple[_Node, Any]] = []
    explored = 0
    entry = head.next
    while head.next is not None:
        if entry is not None and entry.is_call:
            legal, new_state = _step(state, entry.op)
            if legal:
                bits = linearized | (1 << entry.op_id)
                if (bits, new_state) not in seen:
                    seen.add((bits, new_state))
                    explored += 1
                    stack.append((entry, state))
                    state = new_state
                    linearized = bits
                    lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False, explored
            entry, state = stack.pop()
            linearized &= ~(1 << entry.op_id)
            unlift(entry)
            entry = entry.next
    return True, explored


def check_kv(history: list[Op], initial: Any = None) -> Result:
    """Is the whole history linearizable for a map of independent registers?"""
    by_key: dict[str, list[Op]] = defaultdict(list)
    for op in history:
        if op.kind == GET and op.ret is None:
            continue  # a read that never answered constrains nothing
        by_key[op.key].append(op)
    explored = 0
    for key in sorted(by_key):
        ok, count = _check_key(by_key[key], initial)
        explored += count
        if not ok:
            return Result(False, key, explored)
    return Result(True, None, explored)
