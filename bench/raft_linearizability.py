"""Speed of the linearizability checker on 10,000-operation key-value histories.

Two histories: one recorded from the Raft simulator (clients doing put/get/cas against a
cluster under faults, seeds run back to back until 10,000 operations) and one synthetic
history of 8 concurrent clients on 10 keys with overlapping calls. Target: each checks in
under 10 s.

    python3 bench/raft_linearizability.py [--ops 10000]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from linearizability import CAS, GET, PUT, Op, check_kv
from raftsim import run_seed


def simulated_history(ops: int) -> list[Op]:
    """Concatenate simulator histories, shifting time and renaming keys per seed."""
    history: list[Op] = []
    seed = 0
    while len(history) < ops:
        outcome = run_seed(seed)
        for op in outcome.history:
            history.append(
                Op(
                    op.client + 100 * seed,
                    op.kind,
                    f"s{seed}-{op.key}",
                    op.value,
                    op.expected,
                    op.output,
                    op.call,
                    op.ret,
                )
            )
        seed += 1
    return history


def synthetic_history(ops: int, clients: int = 8, keys: int = 10, seed: int = 1) -> list[Op]:
    """Each client issues operations back to back; effects happen at a random instant inside
    the call, so calls of different clients overlap and the history is linearizable."""
    rng = random.Random(seed)
    clock = [0.0] * clients
    planned = []
    for i in range(ops):
        client = i % clients
        start = clock[client] + rng.random()
        effect = start + rng.random() * 3
        end = effect + rng.random() * 3
        clock[client] = end
        planned.append((effect, i, client, start, end))
    values: dict[str, object] = {}
    history = []
    for effect, i, client, start, end in sorted(planned):
        key = f"k{rng.randrange(keys)}"
        kind = rng.choice((PUT, GET, CAS))
        if kind == PUT:
            values[key] = f"v{i}"
            history.append(Op(client, PUT, key, f"v{i}", None, None, start, end))
        elif kind == GET:
            history.append(Op(client, GET, key, None, None, values.get(key), start, end))
        else:
            expected = values.get(key) if rng.random() < 0.5 else "nope"
            ok = values.get(key) == expected
            if ok:
                values[key] = f"c{i}"
            history.append(Op(client, CAS, key, f"c{i}", expected, ok, start, end))
    return history


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=10_000)
    args = parser.parse_args()
    worst = 0.0
    cases = (
        ("simulator", lambda: simulated_history(args.ops)),
        ("synthetic, 10 keys", lambda: synthetic_history(args.ops)),
        ("synthetic, 1 key", lambda: synthetic_history(args.ops, keys=1)),
    )
    for name, make in cases:
        history = make()
        began = time.perf_counter()
        result = check_kv(history)
        elapsed = time.perf_counter() - began
        worst = max(worst, elapsed)
        keys = len({op.key for op in history})
        print(
            f"{name}: {len(history)} ops on {keys} keys -> linearizable={result.ok}, "
            f"{result.explored} configurations, {elapsed:.2f} s (target < 10 s)"
        )
        if not result.ok:
            return 1
    return 0 if worst < 10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
