"""Throughput of the Raft core alone: three in-memory nodes in one process, no disk, messages
passed through the real codec. Shows the CPU cost of the protocol per committed entry, the
ceiling under any transport.

    python3 bench/raft_core_throughput.py [--entries 200000] [--batch 100] [--size 10]
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dkron_pkg.raftlog import RaftNode, Role, decode, encode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch", type=int, default=100, help="proposals per loop turn")
    parser.add_argument("--size", type=int, default=10, help="bytes per entry")
    args = parser.parse_args()
    ids = ["a", "b", "c"]
    nodes = {i: RaftNode(i, ids, None, random.Random(n)) for n, i in enumerate(ids)}
    inbox: list[bytes] = []
    applied = {i: 0 for i in ids}
    now = 0

    def pump() -> None:
        while True:
            busy = False
            for node in nodes.values():
                while node.has_ready():
                    busy = True
                    rd = node.ready()
                    inbox.extend(encode(m) for m in rd.messages)
                    applied[node.id] += len(rd.committed_entries)
                    node.advance(rd)
            if inbox:
                busy = True
                frames = inbox[:]
                inbox.clear()
                for frame in frames:
                    msg = decode(frame)
                    nodes[msg.dst].step(msg)
            if not busy:
                return

    while not any(n.role == Role.LEADER for n in nodes.values()):
        now += 10
        for node in nodes.values():
            node.tick(now)
        pump()
    leader = next(n for n in nodes.values() if n.role == Role.LEADER)
    payload = b"x" * args.size
    start_commit = leader.commit_index
    began = time.perf_counter()
    proposed = 0
    while proposed < args.entries:
        for _ in range(args.batch):
            leader.propose(payload)
        proposed += args.batch
        pump()
        now += 1
        for node in nodes.values():
            node.tick(now)
    pump()
    elapsed = time.perf_counter() - began
    committed = leader.commit_index - start_commit
    print(
        f"{committed} entries of {args.size} B committed on 3 in-memory nodes in {elapsed:.2f} s: "
        f"{committed / elapsed:,.0f} entries/s (batch {args.batch}; codec included, no disk)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
