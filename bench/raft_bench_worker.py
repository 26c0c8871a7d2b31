"""One server process for bench/raft_cluster_bench.py, driven by JSON lines on stdin.

`python3 bench/raft_bench_worker.py KIND ID ADDR DATA_DIR PEER_ID=ADDR ...` where KIND is
ours, pysyncobj or pysyncobj-nobatch.

Both kinds answer the same commands, one JSON line each:
- {"cmd": "status"}: {"leader": bool}
- {"cmd": "throughput", "outstanding": K, "seconds": S}: keeps K writes in flight for S seconds
  (async submits; each write is one small command) -> {"ops": n, "elapsed": s}
- {"cmd": "latency", "n": N}: N writes one after another -> {"lat_ms": [...]}
- {"cmd": "fill", "entries": N, "outstanding": K} (ours): write until the log grew by N
- {"cmd": "stop"} / {"cmd": "start"} (ours only): take the server down and up again, keeping
  its data directory; "status" then also tells "applied" and "snapshot_index"
- {"cmd": "quit"}

"ours": a RaftReplicator with a job store, fsync on (BENCH_FSYNC=0 turns it off, to see the
software's own share; BENCH_TLS_DIR turns on mutual TLS on the RPC port); a write is `close_intent` (one small store
command, answered once applied on this node). "pysyncobj": a SyncObj with a replicated counter,
in-memory journal (pysyncobj does not fsync); a write is `inc`. "pysyncobj" batches appends
(its default period 0.1 s: its best throughput), "pysyncobj-nobatch" sends them at once (its
best latency).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


def reply(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def _bench_tls(node_id: str):
    """Mutual TLS when BENCH_TLS_DIR holds ca.pem and <node>.pem/<node>.key (see --tls)."""
    folder = os.environ.get("BENCH_TLS_DIR")
    if not folder:
        return None
    from dkron_pkg.rpc_tls import load_tls

    path = os.path.join(folder, node_id)
    return load_tls(path + ".pem", path + ".key", os.path.join(folder, "ca.pem"))


class Ours:
    KEY = b"bench-cluster-key-32-bytes-long!"

    def __init__(self, node_id: str, addr: str, data: str, peers: dict[str, str]) -> None:
        self.args = (node_id, addr, data, peers)
        self.seq = 0
        self.start()

    def start(self) -> None:
        from dkron_pkg.raftnode import RaftReplicator
        from dkron_pkg.rpc import RpcClient, RpcServer
        from dkron_pkg.store import Store

        node_id, addr, data, peers = self.args
        tls = _bench_tls(node_id)
        self.store = Store(os.path.join(data, "store.db"))
        self.raft = RaftReplicator(
            node_id,
            addr,
            data,
            self.store,
            RpcClient(self.KEY, tls=tls),
            bootstrap=peers,
            fsync=os.environ.get("BENCH_FSYNC", "1") == "1",
        )
        host, _, port = addr.rpartition(":")
        self.server = RpcServer(
            host, int(port), self.KEY, self.raft.handle_rpc, self.raft.on_raft_frame, tls=tls
        )
        self.raft.start()
        self.server.start()
        self._time_fsyncs()

    def _time_fsyncs(self) -> None:
        """Record how long this server's log fsyncs take (the physical floor of a write)."""
        storage = self.raft._storage
        sync = storage._sync
        self.fsync_ms: list[float] = []

        def timed(fd: int) -> None:
            t0 = time.perf_counter()
            sync(fd)
            if len(self.fsync_ms) < 100_000:
                self.fsync_ms.append((time.perf_counter() - t0) * 1000)

        storage._sync = timed

    def stop(self) -> None:
        """Like a crash of the server, but leaving this control process running."""
        import socket

        self.server.stop()
        try:  # wake the accept thread so the port is really released
            host, _, port = self.args[1].rpartition(":")
            socket.create_connection((host, int(port)), timeout=1).close()
        except OSError:
            pass
        self.raft.close()
        self.raft.rpc.close()
        self.store.close()

    def status(self) -> dict:
        return {
            "leader": self.raft.is_leader(),
            "applied": self.raft.applied_index(),
            "snapshot_index": self.raft._node.snapshot_index if self.raft._node else 0,
            "fsyncs": self.raft._storage.fsyncs if self.raft._storage else 0,
            "fsync_ms": self.fsync_ms[-2000:],
        }

    def is_leader(self) -> bool:
        return self.raft.is_leader()

    def write_async(self, done) -> None:
        self.seq += 1
        fut = self.raft.submit_async([{"op": "close_intent", "group": self.seq}])
        fut.add_done_callback(lambda f: done(f.exception() is None))

    def write_sync(self) -> None:
        self.seq += 1
        self.raft.submit([{"op": "close_intent", "group": self.seq}])


class PySyncObj:
    batch = True

    def __init__(self, node_id: str, addr: str, data: str, peers: dict[str, str]) -> None:
        from pysyncobj import SyncObj, SyncObjConf
        from pysyncobj.batteries import ReplCounter

        self.counter = ReplCounter()
        others = [a for n, a in peers.items() if n != node_id]
        conf = SyncObjConf(appendEntriesUseBatch=self.batch, dynamicMembershipChange=False)
        self.obj = SyncObj(addr, others, conf=conf, consumers=[self.counter])

    def is_leader(self) -> bool:
        return self.obj._isLeader()

    def write_async(self, done) -> None:
        self.counter.inc(callback=lambda res, err: done(err == 0))

    def write_sync(self) -> None:
        self.counter.inc(sync=True, timeout=10)


class PySyncObjNoBatch(PySyncObj):
    """pysyncobj sends appends at once instead of every 0.1 s: its low-latency setting."""

    batch = False


def throughput(node, outstanding: int, seconds: float) -> dict:
    lock = threading.Condition()
    state = {"inflight": 0, "ok": 0, "failed": 0}

    def done(ok: bool) -> None:
        with lock:
            state["inflight"] -= 1
            state["ok" if ok else "failed"] += 1
            lock.notify()

    start = time.perf_counter()
    end = start + seconds
    while time.perf_counter() < end:
        with lock:
            while state["inflight"] >= outstanding:
                lock.wait(0.1)
            state["inflight"] += 1
        node.write_async(done)
    counted_at = time.perf_counter()
    counted = state["ok"]
    with lock:
        deadline = time.monotonic() + 30
        while state["inflight"] > 0 and time.monotonic() < deadline:
            lock.wait(0.1)
    return {"ops": counted, "elapsed": counted_at - start, "failed": state["failed"]}


def fill(node, entries: int, outstanding: int) -> dict:
    """Write until the log has grown by `entries` entries (few writes per entry), each a
    `set_job` on one of 1,000 jobs, so the state (and a snapshot) holds 1,000 jobs."""
    target = node.raft.applied_index() + entries
    sem = threading.Semaphore(outstanding)
    t0 = time.perf_counter()
    i = 0
    while node.raft.applied_index() < target:
        sem.acquire()
        i += 1
        job = {"name": f"job-{i % 1000}", "schedule": "@every 1h", "executor": "shell"}
        job["executor_config"] = {"command": f"echo {i}"}
        cmd = {"op": "set_job", "job": job, "now_ns": 1_700_000_000_000_000_000 + i}
        node.raft.submit_async([cmd]).add_done_callback(lambda f: sem.release())
    return {"elapsed": time.perf_counter() - t0, "applied": node.raft.applied_index()}


def latency(node, n: int) -> dict:
    lat = []
    for _ in range(n):
        t0 = time.perf_counter()
        node.write_sync()
        lat.append((time.perf_counter() - t0) * 1000)
    return {"lat_ms": lat}


def main() -> None:
    kind, node_id, addr, data = sys.argv[1:5]
    peers = dict(p.split("=", 1) for p in sys.argv[5:])
    kinds = {"ours": Ours, "pysyncobj": PySyncObj, "pysyncobj-nobatch": PySyncObjNoBatch}
    node = kinds[kind](node_id, addr, data, peers)
    reply({"ready": True})
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req["cmd"]
        if cmd == "status":
            reply(node.status() if hasattr(node, "status") else {"leader": node.is_leader()})
        elif cmd in ("stop", "start"):
            getattr(node, cmd)()
            reply({"ok": True})
        elif cmd == "throughput":
            reply(throughput(node, int(req["outstanding"]), float(req["seconds"])))
        elif cmd == "fill":
            reply(fill(node, int(req["entries"]), int(req["outstanding"])))
        elif cmd == "latency":
            reply(latency(node, int(req["n"])))
        elif cmd == "quit":
            reply({"bye": True})
            break
    os._exit(0)


if __name__ == "__main__":
    main()
