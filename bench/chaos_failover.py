"""Chaos: 3 servers and 2 agents on 127.0.0.1, jobs `@every 1s`, the leader killed with -9
every few seconds. Every run appends (job, scheduled time, node, attempt) to a file outside the
cluster. Three kinds of jobs run side by side: `role: dkron:1` (one node per scheduled time),
`role: dkron:2` (two nodes) and jobs with no tags, which run on every node (5 runs per
scheduled time). Per kind the report counts:

- doubled launches: the same (job, scheduled time, node, attempt) run more than once (target 0);
- over-placed attempts: one attempt of a scheduled time run on more distinct nodes than the
  job's N (1, 2, or all 5 nodes) (target 0);
- for untagged jobs, stand-in runs: a node running attempt k > 1 of a scheduled time without
  its own attempt k - 1 of it, neither in the log nor failed on it in the cluster's records
  (target 0: an untagged job's retry belongs to the node whose run failed);
- missed scheduled times (no run at all; target 0 with `missed_runs: all`) and, for untagged
  jobs, missed (time, node) pairs, split by whether the node was up around that time
  (informational: a killed node misses its own runs) and, for a node that was up, whether the
  leader's gossip view had it alive (sampled twice a second).

The jobs have one retry: a run that was on the killed leader is recorded as failed with its
node and run again as attempt 2 (Dkron #1585), possibly after it had done its work; those
re-runs are counted apart.

Usage: python3 bench/chaos_failover.py [--jobs 50] [--untagged 10] [--pair 10] [--seconds 120]
       [--kill-every 10]
The CI test (tests/test_chaos.py) runs a short version of the same scenario.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from agent_support import AgentProcess, shell_job

KINDS = (":1", ":2", "untagged")
PREFIX = {":1": "chaos", ":2": "pair", "untagged": "all"}
TAGS = {":1": {"role": "dkron:1"}, ":2": {"role": "dkron:2"}, "untagged": None}
Run = tuple[str, int, str, int]  # job, scheduled second, node, attempt


def leader_name(nodes: list[AgentProcess]) -> str | None:
    for node in nodes:
        if node.proc is None or node.proc.poll() is not None:
            continue
        try:
            r = node.client.get("/v1/leader")
        except OSError:
            continue
        if r.status == 200:
            return r.json()["Name"]
    return None


def node_name(node: AgentProcess) -> str:
    return node.args[node.args.index("--node-name") + 1]


def start_cluster(
    base: Path, server_args: tuple[str, ...] = ()
) -> tuple[list[AgentProcess], list[AgentProcess]]:
    first = AgentProcess(base / "s1", *server_args, node="s1", expect=3).start()
    seed = f"127.0.0.1:{first.gossip_port}"
    servers = [first] + [
        AgentProcess(base / f"s{i}", *server_args, "--join", seed, node=f"s{i}", expect=3).start()
        for i in (2, 3)
    ]
    agents = [
        AgentProcess(base / f"a{i}", "--join", seed, node=f"a{i}", server=False).start()
        for i in (1, 2)
    ]
    deadline = time.monotonic() + 60
    while leader_name(servers) is None or len(members(servers[0])) < 5:
        if time.monotonic() > deadline:
            raise RuntimeError("the cluster did not form")
        time.sleep(0.2)
    return servers, agents


def stop_all(nodes: list[AgentProcess]) -> None:
    """Stop every node at once (a graceful stop takes a second or two each)."""
    threads = [threading.Thread(target=node.stop) for node in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def members(node: AgentProcess) -> list[dict]:
    return node.client.get("/v1/members").json()


def submit(servers: list[AgentProcess], job: dict) -> None:
    for _ in range(100):
        for node in servers:
            try:
                if node.client.post("/v1/jobs", job).status == 201:
                    return
            except OSError:
                continue
        time.sleep(0.2)
    raise RuntimeError(f"could not create {job['name']}")


def run_lines(log: Path) -> list[Run]:
    """(job, scheduled second, node, attempt) of every complete line the runs appended."""
    out = []
    for line in log.read_text().splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[1].isdigit() and fields[3].isdigit():
            out.append((fields[0], int(fields[1]), fields[2], int(fields[3])))
    return out


def job_names(kind: str, count: int) -> list[str]:
    return [f"{PREFIX[kind]}-{i:03d}" for i in range(count)]


def scheduled_second(stamp: str | None) -> int | None:
    if not stamp:
        return None
    return int(datetime.fromisoformat(stamp).timestamp())


class Recorder(threading.Thread):
    """Polls the cluster's execution records while the bench runs.

    A server keeps only the newest executions of a job (100, some 20 s of an untagged job), so
    the records are gathered as they come: they tell a retry on the node whose run was lost
    with it (the log has no line for the lost attempt, the cluster has it as failed on that
    node) from a stand-in. `hot` jobs (the untagged ones) are read every round, a few of the
    `cold` ones in turn.
    """

    def __init__(
        self, servers: list[AgentProcess], hot: list[str], cold: list[str], pause: float = 0.15
    ):
        super().__init__(daemon=True)
        self.servers, self.hot, self.cold, self.pause = servers, hot, cold, pause
        self.records: dict[str, dict] = {}
        self.halt = threading.Event()

    def fetch(self, job: str) -> None:
        for node in self.servers:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                r = node.client.get(f"/v1/jobs/{job}/executions?output_size_limit=200")
            except OSError:
                continue
            if r.status == 200:
                for e in r.json():
                    if not (e.get("finished_at") or "").startswith("0001"):
                        self.records[e["id"]] = e
                return

    def run(self) -> None:
        turn = 0
        while not self.halt.is_set():
            cold = self.cold[turn : turn + 4]
            turn = turn + 4 if turn + 4 < len(self.cold) else 0
            for job in self.hot + cold:
                if self.halt.wait(self.pause):
                    return
                self.fetch(job)

    def finish(self) -> None:
        self.halt.set()
        self.join()
        for job in self.hot + self.cold:
            self.fetch(job)

    def failed(self) -> set[Run]:
        """(job, scheduled second, node, attempt) of every attempt recorded as failed."""
        out = set()
        for e in self.records.values():
            t = scheduled_second(e.get("scheduled_at"))
            if t is not None and not e.get("success"):
                out.add((e["job_name"], t, e["node_name"], int(e.get("attempt") or 1)))
        return out

    def of(self, job: str, t: int) -> list[str]:
        return sorted(
            f"{e['node_name']} attempt {e.get('attempt')} "
            f"{'ok' if e.get('success') else 'failed'}: {(e.get('output') or '').strip()[:120]}"
            for e in self.records.values()
            if e["job_name"] == job and scheduled_second(e.get("scheduled_at")) == t
        )


class LeaderView(threading.Thread):
    """Samples, twice a second, which members the current leader's gossip view has alive: a
    node missing there is never chosen, so a missed (time, node) pair can be told apart as a
    placement that skipped a node the leader saw alive or one it did not see at all."""

    def __init__(self, servers: list[AgentProcess], every: float = 0.5):
        super().__init__(daemon=True)
        self.servers, self.every = servers, every
        self.samples: list[tuple[float, set[str]]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(self.every):
            name = leader_name(self.servers)
            leader = next((s for s in self.servers if node_name(s) == name), None)
            if leader is None:
                continue
            try:
                view = members(leader)
            except (OSError, ValueError):
                continue
            alive = {m["Name"] for m in view if m.get("statusText") == "alive"}
            self.samples.append((time.time(), alive))

    def saw(self, node: str, t: int) -> bool | None:
        """Whether the leader's view had `node` alive when the launch of second `t` was
        placed (about a second ahead); None without a sample in the second before."""
        before = [alive for at, alive in self.samples if t - 2 <= at <= t - 0.75]
        if not before:
            return None
        return node in before[-1]


def was_down(down: list[tuple[float, float]], t: int) -> bool:
    """Whether the node was down at some moment of [t - 1, t + 1] (it may then rightly miss
    the run of scheduled second t: runs are handed out a moment early)."""
    return any(kill <= t + 1 and up >= t - 1 for kill, up in down)


def kind_figures(
    lines: list[Run],
    names: list[str],
    n: int | None,
    window: range,
    nodes: list[str],
    down: dict[str, list[tuple[float, float]]],
    failed: set[Run],
    view: LeaderView | None = None,
) -> dict:
    """The figures of one kind of job; `n` is None for untagged jobs (every node)."""
    wanted = set(names)
    mine = [r for r in lines if r[0] in wanted]
    launches = Counter(mine)
    placed: dict[tuple[str, int, int], set[str]] = defaultdict(set)
    ran_on: dict[tuple[str, int], set[str]] = defaultdict(set)
    for job, t, node, attempt in mine:
        placed[(job, t, attempt)].add(node)
        ran_on[(job, t)].add(node)
    limit = len(nodes) if n is None else n
    out = {
        "jobs": len(names),
        "runs": len(mine),
        "retries": sum(1 for r in mine if r[3] > 1),
        "doubled": sum(c - 1 for c in launches.values() if c > 1),
        "doubled_keys": sorted(k for k, c in launches.items() if c > 1),
        "over_placed": sum(1 for v in placed.values() if len(v) > limit),
        "over_placed_keys": sorted(k for k, v in placed.items() if len(v) > limit),
        "missed": sum(1 for job in names for t in window if (job, t) not in ran_on),
    }
    if n == 2:
        # Scheduled times that fewer than 2 nodes ran (counting any attempt: a retry on the
        # failed node or on a stand-in completes the pair).
        short = sorted(
            (job, t) for job in names for t in window if 0 < len(ran_on.get((job, t), ())) < n
        )
        out.update(under_placed=len(short), under_placed_keys=short)
    if n is None:
        ran = set(launches)
        standins, own_lost = [], 0
        for job, t, node, attempt in ran:
            if attempt == 1 or (job, t, node, attempt - 1) in ran:
                continue
            if (job, t, node, attempt - 1) in failed:
                own_lost += 1  # its own earlier attempt was lost with it: a retry, not a stand-in
            else:
                standins.append((job, t, node, attempt))
        missed_up, missed_down, unseen = [], [], 0
        for job in names:
            for t in window:
                for node in nodes:
                    if node in ran_on.get((job, t), ()):
                        continue
                    if was_down(down.get(node, []), t):
                        missed_down.append((job, t, node))
                    else:
                        missed_up.append((job, t, node))
                        unseen += view is not None and view.saw(node, t) is False
        out.update(
            standins=len(standins),
            standin_keys=sorted(standins),
            retries_of_own_lost_run=own_lost,
            missed_pairs_node_up=len(missed_up),
            missed_pairs_node_up_keys=missed_up,
            missed_pairs_node_up_unseen=unseen,
            missed_pairs_node_down=len(missed_down),
        )
    return out


LOG_TIME = re.compile(r"^time=(\S+)")


def diagnose(result: dict, lines: list[Run], recorder: Recorder, logs: list[Path]) -> None:
    """Print what the run log, the cluster's records and the servers' warnings say of a few
    doubled, over-placed and stand-in runs (to find the cause), and of one example of each
    informational shortfall (a :2 time run on one node, an untagged time a live node missed)."""
    texts = {path.name: path.read_text(errors="replace").splitlines() for path in logs}
    for kind, figs in result["kinds"].items():
        cases = [
            ("doubled", figs["doubled_keys"], 3),
            ("over-placed", figs["over_placed_keys"], 3),
            ("stand-in", figs.get("standin_keys", []), 3),
            ("under-placed (informational)", figs.get("under_placed_keys", []), 1),
            ("missed by a live node (informational)", figs.get("missed_pairs_node_up_keys", []), 1),
        ]
        for what, keys, most in cases:
            for job, t in sorted({k[:2] for k in keys})[:most]:
                stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
                print(f"{what} ({kind}) {job} at {stamp} ({t}):")
                ran = sorted((r[3], r[2]) for r in lines if r[:2] == (job, t))
                print(f"  log: {', '.join(f'{node} attempt {a}' for a, node in ran)}")
                for rec in recorder.of(job, t):
                    print(f"  cluster: {rec}")
                pattern = re.compile(re.escape(job) + r"\b")
                for name, text in texts.items():
                    for line in text:
                        when = LOG_TIME.match(line)
                        if not (when and pattern.search(line) and "level=info" not in line):
                            continue
                        at = datetime.fromisoformat(when.group(1)).timestamp()
                        if t - 3 <= at <= t + 20:
                            print(f"  {name}: {line}")


def run(
    jobs: int,
    seconds: float,
    kill_every: float,
    base: Path,
    untagged: int = 0,
    pair: int = 0,
) -> dict:
    """Run the scenario and return its figures: `jobs` jobs tagged `role: dkron:1`, `pair`
    tagged `role: dkron:2` and `untagged` with no tags."""
    log = base / "runs.log"
    servers, agents = start_cluster(base)
    everyone = servers + agents
    nodes = [node_name(n) for n in everyone]
    counts = {":1": jobs, ":2": pair, "untagged": untagged}
    names = {kind: job_names(kind, counts[kind]) for kind in KINDS}
    failovers: list[float] = []
    down: dict[str, list[tuple[float, float]]] = defaultdict(list)
    recorder = Recorder(servers, names["untagged"], names[":2"] + names[":1"])
    view = LeaderView(servers)
    try:
        cmd = f'echo "$ENV_JOB_NAME $DKRON_SCHEDULED_AT $DKRON_NODE_NAME $DKRON_ATTEMPT" >> {log}'
        for kind in KINDS:
            for name in names[kind]:
                job = shell_job(name, cmd, schedule="@every 1s", missed_runs="all", retries=1)
                if TAGS[kind]:
                    job["tags"] = dict(TAGS[kind])
                submit(servers, job)
        recorder.start()
        view.start()
        started = time.time()
        next_kill = started + kill_every
        while time.time() < started + seconds:
            time.sleep(0.2)
            if time.time() < next_kill:
                continue
            name = leader_name(servers)
            victim = next((s for s in servers if node_name(s) == name), None)
            if victim is None:
                continue
            t0 = time.monotonic()
            killed_at = time.time()
            victim.kill9()
            while leader_name(servers) in (None, name):
                if time.monotonic() - t0 > 60:
                    raise RuntimeError(f"no new leader within 60 s after killing {name}")
                time.sleep(0.05)
            failovers.append(time.monotonic() - t0)
            if "--join" not in victim.args:
                # The first server was started without one; restarted, it would know only the
                # nodes that contact it, as a real one does without a `retry_join` list.
                other = next(s for s in servers if s is not victim)
                victim.extra = [*victim.extra, "--join", f"127.0.0.1:{other.gossip_port}"]
            victim.start()
            down[name].append((killed_at, time.time()))
            next_kill = time.time() + kill_every
        end = time.time()
        # A run lost with a killed leader is failed by the new leader's reconcile loop (it
        # asks the nodes every 5 s about runs recorded as running for over 10 s) and retried:
        # wait that long, so "missed" means never run, not run late.
        time.sleep(18)
        view.halt.set()
        recorder.finish()
    finally:
        recorder.halt.set()
        view.halt.set()
        stop_all(everyone)
    lines = run_lines(log)
    window = range(int(started) + 2, int(end) - 2)
    failed = recorder.failed()
    limits = {":1": 1, ":2": 2, "untagged": None}
    kinds = {
        kind: kind_figures(lines, names[kind], limits[kind], window, nodes, down, failed, view)
        for kind in KINDS
    }
    ones = [r for r in lines if r[0] in set(names[":1"])]
    attempts = Counter((job, t, attempt) for job, t, _, attempt in ones)
    result = {
        # The figures of the `dkron:1` jobs, as before the other kinds were added.
        "runs": len(ones),
        "duplicates": sum(n - 1 for n in attempts.values() if n > 1),
        "reruns_after_node_loss": sum(
            1 for job, t, attempt in attempts if attempt > 1 and (job, t, 1) in attempts
        ),
        "missed": kinds[":1"]["missed"],
        "failovers": failovers,
        "nodes": Counter(node for _, _, node, _ in lines),
        # Per kind (":1", ":2", "untagged") and summed over the kinds.
        "kinds": kinds,
        "doubled": sum(k["doubled"] for k in kinds.values()),
        "over_placed": sum(k["over_placed"] for k in kinds.values()),
        "standins": kinds["untagged"]["standins"],
        "down": dict(down),
    }
    diagnose(result, lines, recorder, sorted(base.glob("*.log")))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=50, help="jobs tagged role: dkron:1")
    ap.add_argument("--untagged", type=int, default=10, help="jobs with no tags (every node)")
    ap.add_argument("--pair", type=int, default=10, help="jobs tagged role: dkron:2")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--kill-every", type=float, default=10)
    args = ap.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dkron-chaos-"))
    result = run(
        args.jobs, args.seconds, args.kill_every, base, untagged=args.untagged, pair=args.pair
    )
    kinds = result["kinds"]
    fo = sorted(result["failovers"])
    total = sum(k["runs"] for k in kinds.values())
    print(
        f"runs: {total} over {args.seconds:.0f} s; jobs @every 1s: {args.jobs} ':1', "
        f"{args.pair} ':2', {args.untagged} untagged (5 nodes)"
    )
    print(
        f"leader kills: {len(fo)}; failover (kill -> new leader) "
        f"p50 {fo[len(fo) // 2] * 1000 if fo else 0:.0f} ms, max {max(fo, default=0) * 1000:.0f} ms"
    )

    def row(label: str, key: str, note: str = "") -> None:
        cells = "".join(f"{kinds[k].get(key, '-')!s:>10}" for k in KINDS)
        print(f"  {label:<48}{cells}  {note}".rstrip())

    print(f"  {'':<48}" + "".join(f"{k:>10}" for k in KINDS))
    row("jobs", "jobs")
    row("runs", "runs")
    row("retries run (attempt > 1)", "retries")
    row("doubled launches (same job/time/node/attempt)", "doubled", "target 0")
    row("over-placed attempts (> N nodes)", "over_placed", "target 0")
    row("stand-in runs", "standins", "target 0")
    row("  retries on the node whose run was lost", "retries_of_own_lost_run")
    row("missed scheduled times", "missed", "target 0 (missed_runs=all)")
    row("times run on fewer than 2 nodes (any attempt)", "under_placed", "informational")
    row("missed (time, node) pairs, node up", "missed_pairs_node_up", "informational")
    row("  of which not alive in the leader's gossip view", "missed_pairs_node_up_unseen")
    row("missed (time, node) pairs, node down", "missed_pairs_node_down", "informational")
    print(f"duplicate launches of ':1' jobs (same job/time/attempt): {result['duplicates']}")
    print(
        f"retries of ':1' runs lost with the killed leader that had run before it died: "
        f"{result['reruns_after_node_loss']} (retries=1)"
    )
    missed = sum(k["missed"] for k in kinds.values())
    print(f"missed scheduled times per failover: {missed / max(1, len(fo)):.1f}")
    print(f"runs per node: {dict(sorted(result['nodes'].items()))}")
    print(f"logs in {base}")


if __name__ == "__main__":
    main()
