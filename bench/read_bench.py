"""Linearizable reads beside etcd, in the same run on 127.0.0.1.

Starts three dkron servers (a Raft group) and three etcd members (Debian's `etcd-server`, its
default linearizable reads through the v3 HTTP/JSON gateway), then prints:
  * read latency p50/p99 with 1 client, on the leader and on a follower: dkron
    `GET /v1/jobs/{name}` (linearizable, the default) beside etcd `POST /v3/kv/range` of one key
    holding a value of the same size; blocks of both alternate so machine noise hits both;
  * reads/s with 16 clients spread over the three servers (members), beside etcd, and dkron with
    `?stale` (no read point: what the HTTP layer alone allows);
  * 300 stale-free write-then-read pairs: a job written on one server is read at once on
    another (by name and in the list), the leader killed (kill -9) half-way;
  * `GET /v1/jobs`, 25 per page of 10,000 jobs, p50/p99: on a lone server (the README's
    single-node figure, 1.8 ms at p50) and on the cluster's leader and follower, linearizable
    and with `?stale`.
Targets: follower read p50 at most 1.5x etcd's; at least 5,000 reads/s with 16 clients; the
lone server's list p50 at most 1 ms above today's single-node figure (the README's 1.8 ms on a
quiet machine; in this run the same server with `?stale`, which reads as today's build does).
The CPU the servers and the clients spend per read is printed beside the rates. Every client speaks raw HTTP/1.1 on a kept-alive
connection (the same code for both systems); the 16 clients run in 4 processes.

Usage: python3 bench/read_bench.py [--samples 2000] [--seconds 5] [--clients 16]
                                   [--jobs 10000] [--pairs 300]
"""

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agent_support import AgentProcess, free_port, shell_job

README_LIST_P50_MS = 1.8


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


class RawHttp:
    """One kept-alive HTTP/1.1 connection sending prepared requests (little client cost)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    @staticmethod
    def prepare(method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        if body:
            head += "Content-Type: application/json\r\n"
        return head.encode() + b"\r\n" + body

    def send(self, raw: bytes) -> tuple[int, bytes]:
        self.sock.sendall(raw)
        while b"\r\n\r\n" not in self.buf:
            self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        status = int(head[9:12])
        lines = head.lower().split(b"\r\n")
        length = next((int(ln[15:]) for ln in lines if ln.startswith(b"content-length:")), None)
        if length is None:  # chunked
            body, rest = self._chunked(rest)
        else:
            while len(rest) < length:
                rest += self._recv()
            body, rest = rest[:length], rest[length:]
        self.buf = rest
        return status, body

    def _chunked(self, rest: bytes) -> tuple[bytes, bytes]:
        body = b""
        while True:
            while b"\r\n" not in rest:
                rest += self._recv()
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            while len(rest) < size + 2:
                rest += self._recv()
            body, rest = body + rest[:size], rest[size + 2 :]
            if size == 0:
                return body, rest

    def _recv(self) -> bytes:
        data = self.sock.recv(262144)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    def _more(self) -> None:
        self.buf += self._recv()

    def close(self) -> None:
        self.sock.close()


# ----- etcd ---------------------------------------------------------------------------------


class Etcd:
    """Three etcd members on 127.0.0.1 (their data in `base`)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.names = ["e1", "e2", "e3"]
        self.client_ports = {n: free_port() for n in self.names}
        self.peer_ports = {n: free_port() for n in self.names}
        self.procs: list[subprocess.Popen] = []

    def start(self) -> None:
        cluster = ",".join(f"{n}=http://127.0.0.1:{self.peer_ports[n]}" for n in self.names)
        for n in self.names:
            log = open(self.base / f"{n}.log", "ab")  # noqa: SIM115 - owned by the child
            client, peer = self.client_ports[n], self.peer_ports[n]
            self.procs.append(
                subprocess.Popen(
                    [
                        shutil.which("etcd") or "etcd",
                        "--name",
                        n,
                        "--data-dir",
                        str(self.base / n),
                        "--listen-client-urls",
                        f"http://127.0.0.1:{client}",
                        "--advertise-client-urls",
                        f"http://127.0.0.1:{client}",
                        "--listen-peer-urls",
                        f"http://127.0.0.1:{peer}",
                        "--initial-advertise-peer-urls",
                        f"http://127.0.0.1:{peer}",
                        "--initial-cluster",
                        cluster,
                        "--initial-cluster-token",
                        "read-bench",
                        "--initial-cluster-state",
                        "new",
                        "--log-level",
                        "warn",
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if self.leader() is not None:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError("etcd did not elect a leader")

    def call(self, name: str, path: str, body: dict) -> dict:
        conn = RawHttp(self.client_ports[name])
        try:
            status, data = conn.send(RawHttp.prepare("POST", path, json.dumps(body).encode()))
        finally:
            conn.close()
        if status != 200:
            raise OSError(f"etcd {path}: {status} {data[:200]!r}")
        return json.loads(data)

    def leader(self) -> str | None:
        for n in self.names:
            status = self.call(n, "/v3/maintenance/status", {})
            if status.get("leader") and status["leader"] == status["header"]["member_id"]:
                return n
        return None

    def put(self, key: str, value: bytes) -> None:
        body = {"key": b64(key.encode()), "value": b64(value)}
        self.call(self.leader() or "e1", "/v3/kv/put", body)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ----- dkron --------------------------------------------------------------------------------


def start_dkron(base: Path) -> list[AgentProcess]:
    from test_cluster_raft import start_cluster

    return start_cluster(base)


def name_of(node: AgentProcess) -> str:
    return node.args[node.args.index("--node-name") + 1]


def dkron_leader(nodes: list[AgentProcess]) -> AgentProcess:
    for node in nodes:
        r = node.client.get("/v1/leader")
        if r.status == 200:
            name = r.json()["Name"]
            return next(n for n in nodes if name_of(n) == name)
    raise RuntimeError("no dkron leader")


def restore(node: AgentProcess, jobs: list[dict]) -> None:
    for lo in range(0, len(jobs), 2000):
        boundary = "readbench"
        content = json.dumps(jobs[lo : lo + 2000]).encode()
        body = (
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
                f'filename="jobs.json"\r\nContent-Type: application/json\r\n\r\n'
            ).encode()
            + content
            + f"\r\n--{boundary}--\r\n".encode()
        )
        headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        r = node.client.request("POST", "/v1/restore", raw=body, headers=headers)
        assert r.status == 200, r.text[:300]


# ----- measurements -------------------------------------------------------------------------


def latency_block(port: int, raw: bytes, n: int) -> list[float]:
    conn = RawHttp(port)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = conn.send(raw)
            times.append((time.perf_counter() - t0) * 1000)
            assert status == 200, status
    finally:
        conn.close()
    return times


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _throughput_worker(targets: list[tuple[int, bytes]], start_at: float, seconds: float, q):
    counts = [0] * len(targets)
    errors = [0]

    def client(i: int, port: int, raw: bytes) -> None:
        conn = RawHttp(port)
        while time.time() < start_at:
            time.sleep(0.001)
        end = start_at + seconds
        while time.time() < end:
            status, _ = conn.send(raw)
            if status == 200:
                counts[i] += 1
            else:
                errors[0] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i, p, r)) for i, (p, r) in enumerate(targets)]
    for t in threads:
        t.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = time.process_time()
    for t in threads:
        t.join()
    q.put((sum(counts), errors[0], time.process_time() - cpu0))


def throughput(
    targets: list[tuple[int, bytes]], seconds: float, servers: list[int], processes: int = 4
) -> tuple[float, float, float]:
    """(reads/s, server CPU µs per read, client CPU µs per read) of len(targets) clients (one
    connection each) run in `processes` processes; `servers` are the serving processes' pids."""
    ctx = multiprocessing.get_context("fork")
    q = ctx.Queue()
    start_at = time.time() + 1.0
    groups = [targets[i::processes] for i in range(processes)]
    procs = [
        ctx.Process(target=_throughput_worker, args=(g, start_at, seconds, q)) for g in groups if g
    ]
    for p in procs:
        p.start()
    time.sleep(max(0.0, start_at - time.time()))
    cpu0 = sum(cpu_seconds(pid) for pid in servers)
    time.sleep(seconds)
    server_cpu = sum(cpu_seconds(pid) for pid in servers) - cpu0
    done = [q.get(timeout=seconds + 60) for _ in procs]
    for p in procs:
        p.join()
    total, errors = sum(d[0] for d in done), sum(d[1] for d in done)
    client_cpu = sum(d[2] for d in done)
    if errors:
        print(f"  ({errors} answers other than 200)")
    per = 1e6 / max(1, total)
    return total / seconds, server_cpu * per, client_cpu * per


def list_latencies(rows: list[tuple[str, int, str]], total: int, samples: int = 300) -> dict:
    """p50/p99 per row, the rows' requests interleaved in blocks (machine noise hits all)."""
    conns = {label: RawHttp(port) for label, port, _ in rows}
    times: dict[str, list[float]] = {label: [] for label, _, _ in rows}
    rng = random.Random(1)
    block = 50
    for _ in range(samples // block):
        for label, _, extra in rows:
            for _ in range(block):
                start = rng.randrange(0, max(1, total - 25))
                path = f"/v1/jobs?_sort=name&_order=ASC&_start={start}&_end={start + 25}{extra}"
                raw = RawHttp.prepare("GET", path)
                t0 = time.perf_counter()
                status, _ = conns[label].send(raw)
                times[label].append((time.perf_counter() - t0) * 1000)
                assert status == 200, status
    for conn in conns.values():
        conn.close()
    return {label: (pct(v, 50), pct(v, 99)) for label, v in times.items()}


def stale_pairs(nodes: list[AgentProcess], pairs: int) -> tuple[int, int, int]:
    """(pairs done, stale reads, reads that failed) with the leader killed half-way."""
    rng = random.Random(3)
    alive = list(nodes)
    stale = failed = 0
    for i in range(pairs):
        if i == pairs // 2:
            victim = dkron_leader(alive)
            victim.kill9()
            alive.remove(victim)
            print(f"  killed the leader {name_of(victim)} (kill -9) before pair {i}")
        writer, reader = rng.sample(alive, 2)
        name = f"pair-{i}"
        deadline = time.monotonic() + 30
        while writer.client.post("/v1/jobs", shell_job(name, "true")).status != 201:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} was never acknowledged")
            time.sleep(0.05)
        one = reader.client.get(f"/v1/jobs/{name}")
        listed = reader.client.get(f"/v1/jobs?q={name}")
        if one.status == 503 or listed.status == 503:
            failed += 1
        elif one.status != 200 or name not in {j["name"] for j in listed.json()}:
            stale += 1
    return pairs, stale, failed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000, help="1-client reads per target")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each load run")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--pairs", type=int, default=300)
    args = parser.parse_args()
    if shutil.which("etcd") is None:
        print("etcd not found: apt-get install -y etcd-server", file=sys.stderr)
        return 2
    base = Path(tempfile.mkdtemp(prefix="read-bench-"))
    etcd = Etcd(base)
    nodes: list[AgentProcess] = []
    lone: AgentProcess | None = None
    failures: list[str] = []
    try:
        etcd.start()
        nodes = start_dkron(base / "dkron")
        leader = dkron_leader(nodes)
        follower = next(n for n in nodes if n is not leader)
        e_leader = etcd.leader()
        assert e_leader is not None
        e_follower = next(n for n in etcd.names if n != e_leader)
        r = leader.client.post("/v1/jobs", shell_job("probe", "true", schedule="@every 1h"))
        assert r.status == 201, r.text
        job_size = len(follower.client.get("/v1/jobs/probe").body)
        etcd.put("probe", b"x" * job_size)
        print(
            f"dkron leader {name_of(leader)}, follower {name_of(follower)}; etcd leader "
            f"{e_leader}, follower {e_follower}; value size {job_size} bytes; "
            f"{os.cpu_count()} CPUs (shared machine)"
        )
        d_read = RawHttp.prepare("GET", "/v1/jobs/probe")
        e_read = RawHttp.prepare(
            "POST", "/v3/kv/range", json.dumps({"key": b64(b"probe")}).encode()
        )
        targets = {
            "dkron leader": (leader.port, d_read),
            "etcd leader": (etcd.client_ports[e_leader], e_read),
            "dkron follower": (follower.port, d_read),
            "etcd follower": (etcd.client_ports[e_follower], e_read),
        }
        times: dict[str, list[float]] = {k: [] for k in targets}
        for port, raw in targets.values():
            latency_block(port, raw, 200)  # warm-up
        blocks = 4
        for _ in range(blocks):
            for label, (port, raw) in targets.items():
                times[label] += latency_block(port, raw, args.samples // blocks)
        print(f"\n1 client, {args.samples} linearizable reads each (ms):")
        for label, values in times.items():
            print(f"  {label:15s} p50 {pct(values, 50):.3f}  p99 {pct(values, 99):.3f}")
        for role in ("leader", "follower"):
            d, e = times[f"dkron {role}"], times[f"etcd {role}"]
            print(
                f"  ratio dkron/etcd on the {role}: p50 {pct(d, 50) / pct(e, 50):.2f}, "
                f"p99 {pct(d, 99) / pct(e, 99):.2f}"
            )
        ratio = pct(times["dkron follower"], 50) / pct(times["etcd follower"], 50)
        if ratio > 1.5:
            failures.append(f"follower read p50 is {ratio:.2f}x etcd's (target <= 1.5x)")

        print(f"\n{args.clients} clients over the three servers, {args.seconds:g} s each:")
        d_ports = [n.port for n in nodes]
        e_ports = [etcd.client_ports[n] for n in etcd.names]
        d_stale = RawHttp.prepare("GET", "/v1/jobs/probe?stale")
        d_pids = [n.proc.pid for n in nodes]
        e_pids = [proc.pid for proc in etcd.procs]
        runs = {
            "dkron": ([(d_ports[i % 3], d_read) for i in range(args.clients)], d_pids),
            "etcd": ([(e_ports[i % 3], e_read) for i in range(args.clients)], e_pids),
            "dkron ?stale": ([(d_ports[i % 3], d_stale) for i in range(args.clients)], d_pids),
        }
        rates = {}
        for label, (clients, pids) in runs.items():
            rate, server_us, client_us = throughput(clients, args.seconds, pids)
            rates[label] = rate
            print(
                f"  {label:13s} {rate:8.0f} reads/s; CPU per read: servers {server_us:5.0f} µs,"
                f" clients {client_us:4.0f} µs"
            )
        print(f"  ratio dkron/etcd: {rates['dkron'] / rates['etcd']:.2f}")
        if rates["dkron"] < 5000:
            failures.append(f"{rates['dkron']:.0f} reads/s with {args.clients} clients (< 5,000)")
        etcd.stop()

        stats = [n.client.get("/debug/vars").json().get("linearizable_reads") for n in nodes]
        print(f"  read rounds per server (reads, rounds): {stats}")

        print(f"\nGET /v1/jobs, 25 per page of {args.jobs} jobs, 300 requests each (ms):")
        jobs = [shell_job(f"job-{i:05d}", "true", schedule="@every 1h") for i in range(args.jobs)]
        lone = AgentProcess(base / "lone", node="lone").start()
        restore(lone, jobs)
        restore(leader, jobs)
        for n in nodes:
            n.client.wait_for(lambda n=n: len(n.client.get("/v1/jobs?stale").json()) > args.jobs)
        rows = [
            ("lone server", lone.port, ""),
            ("lone server ?stale", lone.port, "&stale"),
            ("cluster leader", leader.port, ""),
            ("cluster leader ?stale", leader.port, "&stale"),
            ("cluster follower", follower.port, ""),
            ("cluster follower ?stale", follower.port, "&stale"),
        ]
        figures = list_latencies(rows, args.jobs)
        for label, (p50, p99) in figures.items():
            base = figures.get(f"{label} ?stale")
            extra = f"  (+{p50 - base[0]:.2f} ms over ?stale)" if base else ""
            print(f"  {label:24s} p50 {p50:.2f}  p99 {p99:.2f}{extra}")
        lone_p50, lone_stale = figures["lone server"][0], figures["lone server ?stale"][0]
        print(
            f"  target: a lone server's p50 at most 1 ms above today's single-node figure "
            f"(the same server with ?stale in this run: {lone_stale:.2f} ms; README "
            f"{README_LIST_P50_MS} ms on a quiet machine)"
        )
        if lone_p50 > lone_stale + 1.0:
            failures.append(
                f"GET /v1/jobs p50 {lone_p50:.2f} ms on a lone server (> {lone_stale:.2f} + 1)"
            )

        print(f"\n{args.pairs} write-then-read pairs on different servers, a leader kill included:")
        done, stale, failed = stale_pairs(nodes, args.pairs)
        print(f"  {done} pairs: {stale} stale reads, {failed} reads answered 503")
        if stale:
            failures.append(f"{stale} stale reads in {done} pairs")
    finally:
        etcd.stop() if etcd.procs and etcd.procs[0].poll() is None else None
        for node in [*nodes, *([lone] if lone else [])]:
            if node.proc is not None and node.proc.poll() is None:
                node.kill9()
        shutil.rmtree(base, ignore_errors=True)
    print("\nmissed targets: " + ("; ".join(failures) if failures else "none"))
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
