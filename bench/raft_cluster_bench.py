"""Three Raft server processes on 127.0.0.1: throughput, latency, restart time; beside pysyncobj.

Run: `python3 bench/raft_cluster_bench.py [--seconds 5] [--outstanding 1000] [--latency-n 500]
[--restart-entries 100000] [--skip-pysyncobj] [--tls] [--latency-only]` (pysyncobj:
`pip install pysyncobj`). `--latency-only` runs figure 2 alone; `--tls` puts our servers'
RPC on mutual TLS.

Figures printed:
1. committed small writes/s with many concurrent clients (K writes in flight, issued in the
   leader's process like the API's handler threads do), fsync on;
2. one sequential client: p50/p99 latency on the leader, and through a follower (forwarded);
3. fdatasync p50/p99 of a probe file and of the servers' own log during the latency runs:
   the physical floor of a durable write;
4. the same load against a 3-process pysyncobj cluster (which does NOT fsync), in its batched
   (default) and immediate-append settings, and the ratios against its best figure;
5. a follower 20,000 entries behind: catch-up time (by snapshot) and the leader's write
   latency while it catches up;
6. restart time of a server whose data holds 100,000 entries (snapshot + log), with the
   store intact or lost (rebuilt from the snapshot and the log).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
WORKER = os.path.join(HERE, "raft_bench_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Worker:
    def __init__(self, kind: str, node_id: str, addr: str, data: str, peers: dict[str, str]):
        args = [sys.executable, WORKER, kind, node_id, addr, data]
        args += [f"{n}={a}" for n, a in peers.items()]
        self.proc = subprocess.Popen(
            args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT
        )
        self.id = node_id
        assert self.read().get("ready")

    def read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.id} exited (code {self.proc.poll()})")
        return json.loads(line)

    def ask(self, **req) -> dict:
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        try:
            self.ask(cmd="quit")
        except (OSError, RuntimeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_cluster(kind: str, base: str) -> list[Worker]:
    ids = ["a", "b", "c"]
    peers = {n: f"127.0.0.1:{free_port()}" for n in ids}
    workers: list[Worker] = []
    try:
        for n in ids:
            data = os.path.join(base, kind, n)
            os.makedirs(data, exist_ok=True)
            workers.append(Worker(kind, n, peers[n], data, peers))
    except BaseException:
        for w in workers:
            w.stop()
        raise
    return workers


def find_leader(kind: str, workers: list[Worker]) -> Worker:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        leaders = [w for w in workers if w.ask(cmd="status")["leader"]]
        if len(leaders) == 1:
            return leaders[0]
        time.sleep(0.1)
    raise RuntimeError(f"{kind}: no leader within 30 s")


def run_cluster(kind: str, args, base: str) -> dict:
    workers = start_cluster(kind, base)
    try:
        leader = find_leader(kind, workers)
        follower = next(w for w in workers if w is not leader)
        leader.ask(cmd="latency", n=50)  # warm-up: connections, first entries
        follower.ask(cmd="latency", n=50)
        out = {"ops": 0, "elapsed": 1.0, "failed": 0}
        if not args.latency_only:
            out = leader.ask(cmd="throughput", outstanding=args.outstanding, seconds=args.seconds)
        lat_leader = leader.ask(cmd="latency", n=args.latency_n)["lat_ms"]
        lat_follower = follower.ask(cmd="latency", n=args.latency_n)["lat_ms"]
        fsyncs = []
        if kind == "ours":
            for w in workers:
                fsyncs.extend(w.ask(cmd="status")["fsync_ms"][-args.latency_n :])
        return {
            "fsync_p50": pct(fsyncs, 50) if fsyncs else None,
            "fsync_p99": pct(fsyncs, 99) if fsyncs else None,
            "ops_per_s": out["ops"] / out["elapsed"],
            "failed": out["failed"],
            "leader_p50": pct(lat_leader, 50),
            "leader_p99": pct(lat_leader, 99),
            "follower_p50": pct(lat_follower, 50),
            "follower_p99": pct(lat_follower, 99),
        }
    finally:
        for w in workers:
            w.stop()


def catchup_bench(base: str, behind: int, latency_n: int) -> None:
    """A follower down while the log grows by `behind` entries comes back: how long until it
    has applied everything, whether it needed a snapshot, and the leader's write latency
    meanwhile (commits must not stall while the snapshot is sent)."""
    workers = start_cluster("ours", os.path.join(base, "catchup"))
    try:
        leader = find_leader("ours", workers)
        lagger = next(w for w in workers if w is not leader)
        lagger.ask(cmd="stop")
        fill = leader.ask(cmd="fill", entries=behind, outstanding=4)
        quiet = leader.ask(cmd="latency", n=latency_n)["lat_ms"]
        target = leader.ask(cmd="status")["applied"]
        during: list[float] = []
        t0 = time.perf_counter()
        lagger.ask(cmd="start")
        probe = threading.Thread(
            target=lambda: during.extend(leader.ask(cmd="latency", n=latency_n)["lat_ms"])
        )
        probe.start()
        status = lagger.ask(cmd="status")
        while status["applied"] < target and time.perf_counter() - t0 < 120:
            time.sleep(0.02)
            status = lagger.ask(cmd="status")
        caught_up = time.perf_counter() - t0
        probe.join()
        how = "by snapshot" if status["snapshot_index"] > 0 else "from the log"
        print(
            f"follower {behind:,} entries behind (log grown in {fill['elapsed']:.1f} s): caught up "
            f"{how} (snapshot at {status['snapshot_index']:,}) in {caught_up:.2f} s"
        )
        print(
            f"  leader write latency meanwhile: p50 {pct(during, 50):.2f} ms  "
            f"p99 {pct(during, 99):.2f} ms  max {max(during):.2f} ms "
            f"(before: p50 {pct(quiet, 50):.2f} ms  p99 {pct(quiet, 99):.2f} ms)"
        )
    finally:
        for w in workers:
            w.stop()


def make_certificates(folder: str) -> str:
    """A CA and a certificate per server ("a", "b", "c") made with the openssl command."""
    os.makedirs(folder)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.pem", "-subj", "/CN=bench CA",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign")  # fmt: skip
    with open(os.path.join(folder, "leaf.ext"), "w") as f:
        f.write("basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n")
    for serial, node in enumerate(("a", "b", "c"), start=2):
        openssl("req", *ec, "-keyout", f"{node}.key", "-out", f"{node}.csr", "-subj", f"/CN={node}")
        openssl("x509", "-req", "-in", f"{node}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-set_serial", str(serial), "-extfile", "leaf.ext", "-out", f"{node}.pem")  # fmt: skip
    return folder


def fsync_floor(base: str, n: int = 200) -> tuple[float, float]:
    path = os.path.join(base, "fsync.probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    times = []
    try:
        for _ in range(n):
            os.write(fd, b"x" * 64)
            t0 = time.perf_counter()
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
    return pct(times, 50), pct(times, 99)


def _open_solo(data: str, addr: str, snapshot_every: int, fsync: bool):
    from dkron_pkg.raftnode import RaftReplicator
    from dkron_pkg.rpc import RpcClient
    from dkron_pkg.store import Store

    store = Store(os.path.join(data, "store.db"))
    node = RaftReplicator(
        "solo",
        addr,
        data,
        store,
        RpcClient(None),
        bootstrap={"solo": addr},
        snapshot_every=snapshot_every,
        fsync=fsync,
    )
    node.start()
    return store, node


def write_history(data: str, addr: str, entries: int, snapshot_every: int) -> tuple[int, float]:
    """`entries` log entries on a one-server cluster, each a `set_job` on one of 1,000 jobs
    (so snapshots hold 1,000 jobs). Written without fsync: only the restart is measured."""
    store, node = _open_solo(data, addr, snapshot_every, fsync=False)
    while not node.is_leader():
        time.sleep(0.01)
    t0 = time.perf_counter()
    for i in range(entries):  # one write at a time: one log entry each
        job = {"name": f"job-{i % 1000}", "schedule": "@every 1h", "executor": "shell"}
        job["executor_config"] = {"command": f"echo {i}"}
        node.submit([{"op": "set_job", "job": job, "now_ns": 1_700_000_000_000_000_000 + i}])
    write_s = time.perf_counter() - t0
    last = node.applied_index()
    node.close()
    store.close()
    return last, write_s


def time_restart(data: str, addr: str, snapshot_every: int, lose_store: bool, last: int) -> dict:
    if lose_store:
        for name in os.listdir(data):
            if name.startswith("store.db"):
                os.unlink(os.path.join(data, name))
    t0 = time.perf_counter()
    store, node = _open_solo(data, addr, snapshot_every, fsync=True)
    while node.applied_index() < last:
        time.sleep(0.001)
    caught_up = time.perf_counter() - t0
    while not node.is_leader():
        time.sleep(0.001)
    serving = time.perf_counter() - t0
    out = {
        "caught_up_s": caught_up,
        "leader_s": serving,
        "snapshot_index": node._node.snapshot_index,
        "log_entries": node._node.last_index - node._node.first_index + 1,
        "jobs": len(store.list_jobs()),
    }
    node.close()
    store.close()
    return out


def restart_benches(base: str, entries: int) -> None:
    for snapshot_every, variants in (
        (10_000, [(False, "store intact"), (True, "store lost: restore snapshot, replay log")]),
        (30_000, [(True, "store lost: restore snapshot, replay log")]),
        (10**9, [(True, "no snapshot, store lost: replay the whole log")]),
    ):
        origin = tempfile.mkdtemp(dir=base)
        addr = f"127.0.0.1:{free_port()}"
        last, write_s = write_history(origin, addr, entries, snapshot_every)
        for lose_store, label in variants:
            data = origin + "-copy"
            shutil.copytree(origin, data)
            r = time_restart(data, addr, snapshot_every, lose_store, last)
            shutil.rmtree(data, ignore_errors=True)
            every = "never" if snapshot_every >= 10**9 else f"every {snapshot_every:,}"
            print(
                f"restart, {last:,} entries, snapshot {every} ({label}): snapshot at "
                f"{r['snapshot_index']:,}, log holds {r['log_entries']:,}; all applied in "
                f"{r['caught_up_s']:.2f} s ({r['jobs']} jobs), leader again in "
                f"{r['leader_s']:.2f} s [writing took {write_s:.0f} s]"
            )
        shutil.rmtree(origin, ignore_errors=True)


def print_result(label: str, r: dict, outstanding: int) -> None:
    print(f"{label} {r['ops_per_s']:9.0f} writes/s with {outstanding} in flight", end="")
    print(f" ({r['failed']} failed)")
    print_latency(r)


def print_latency(r: dict) -> None:
    print(
        f"  sequential client on leader:   p50 {r['leader_p50']:.2f} ms  "
        f"p99 {r['leader_p99']:.2f} ms"
    )
    print(
        f"  sequential client on follower: p50 {r['follower_p50']:.2f} ms  "
        f"p99 {r['follower_p99']:.2f} ms"
    )


def compare_pysyncobj(args, base: str, ours: dict) -> None:
    """pysyncobj in its two settings; the ratios use its best figure for each measure."""
    batch = run_cluster("pysyncobj", args, base)
    print_result("pysyncobj, batched appends (no fsync):   ", batch, args.outstanding)
    nobatch = run_cluster("pysyncobj-nobatch", args, base)
    print_result("pysyncobj, immediate appends (no fsync): ", nobatch, args.outstanding)
    best_ops = max(batch["ops_per_s"], nobatch["ops_per_s"])
    best_leader = min(batch["leader_p50"], nobatch["leader_p50"])
    best_follower = min(batch["follower_p50"], nobatch["follower_p50"])
    print(
        f"ratio ours/pysyncobj-best: throughput {ours['ops_per_s'] / best_ops:.2f}x, "
        f"leader p50 latency {ours['leader_p50'] / best_leader:.2f}x, "
        f"follower p50 latency {ours['follower_p50'] / best_follower:.2f}x "
        "(throughput: higher is better for us; latency: lower is better for us)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--outstanding", type=int, default=1000)
    parser.add_argument("--latency-n", type=int, default=500)
    parser.add_argument("--restart-entries", type=int, default=100_000)
    parser.add_argument("--behind", type=int, default=20_000, help="entries a follower misses")
    parser.add_argument("--skip-pysyncobj", action="store_true")
    parser.add_argument(
        "--no-fsync", action="store_true", help="our servers skip fsync (software share only)"
    )
    parser.add_argument(
        "--tls", action="store_true", help="our servers talk mutual TLS (certificates: openssl)"
    )
    parser.add_argument(
        "--latency-only",
        action="store_true",
        help="only the sequential-client latencies of our cluster (quick; for profiling)",
    )
    args = parser.parse_args()
    if args.no_fsync:
        os.environ["BENCH_FSYNC"] = "0"
    load = os.getloadavg()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs"
    )
    base = tempfile.mkdtemp(prefix="raftbench-")
    try:
        if args.tls:
            os.environ["BENCH_TLS_DIR"] = make_certificates(os.path.join(base, "tls"))
            print("RPC over mutual TLS (TLS 1.3, P-256 certificates) with the cluster key on top")
        f50, f99 = fsync_floor(base)
        print(f"machine fdatasync: p50 {f50:.2f} ms  p99 {f99:.2f} ms")
        print("(a write waits for the leader's and a follower's fsyncs, which overlap)")
        ours = run_cluster("ours", args, base)
        label = "ours, fsync OFF:                          "
        if not args.no_fsync:
            label = "ours, fsync on:                           "
        if args.latency_only:
            print(label.strip())
            print_latency(ours)
        else:
            print_result(label, ours, args.outstanding)
        if ours["fsync_p50"] is not None:
            print(
                f"  the servers' own log fsyncs meanwhile: p50 {ours['fsync_p50']:.2f} ms  "
                f"p99 {ours['fsync_p99']:.2f} ms"
            )
        if args.latency_only:
            pass
        elif not args.skip_pysyncobj:
            try:
                import pysyncobj  # noqa: F401
            except ImportError:
                print("pysyncobj is not installed (pip install pysyncobj): skipped")
            else:
                compare_pysyncobj(args, base, ours)
        if not args.latency_only:
            catchup_bench(base, args.behind, args.latency_n)
            restart_benches(base, args.restart_entries)
        load = os.getloadavg()
        print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
