"""A data-driven interpreter for launch-protocol transcripts (tests/testdata/launch/*.txt).

In the manner of etcd-io/raft's `testdata/*.txt`: a transcript is a sequence of directives,
each a command line, optional input lines, a `----` line and the expected output, ended by a
blank line. Lines starting with `#` between directives are comments. The interpreter drives one
`launch.LeaderCore` over a real in-memory job `Store` and prints every action the core emits,
one per line. `REWRITE=1` regenerates the expected blocks (review the diff, then commit it);
`python tests/launch_transcript.py FILE` prints what a transcript produces, up to an error.
A file with a line starting `# KNOWN BUG` states behaviour the code does not have yet: REWRITE
leaves it alone and its test fails until the code is fixed (then drop the marker).

The core is `LeaderCore("s1", store, random.Random(0))` with the default timing (lookahead
1 s, dispatch lead 0.25 s, late grace 5 s, reconcile every 5 s). Output lines are the core's
actions (`Commit ...` with one `+` line per further command of the batch; `Commit intent-nodes
JOB GROUP +[NODES]` adds nodes to an open launch before they are sent it (`standin-for=N`:
they run node N's run; `drop=[NODES]`: chosen nodes that died before it was sent), and with `retry
node=N [for=SLOT] attempt=K` notes a retry before it is sent (`for=SLOT`: a stand-in's, for
SLOT's run); `SendRun NODE JOB GROUP attempt= at=SCHEDULED term=`, `StartLocal`, `AskLaunches`,
`AskRunning`, `Reply`, `Recorded`, `Note LEVEL: text`) and, for `commit`, `store:` lines: a
command the store refused and the follow-ups its results carry (retry, finished, run
dependent, delete ephemeral).
A stand-in's run shows the node it runs for as `for=NODE` (SendRun, StartLocal, and `node=X
for=NODE` in the execution of a Commit or of `store`).

Times are seconds after BASE (2026-01-01T00:00:00Z); `t=SECONDS` on any command first moves the
clock there (it never goes back). Launch groups print as g1, g2, ... in order of appearance;
executions started through the transcript are named e1, e2, ...; failed attempts the leader
records are named f1, f2, ... Commands:

  core [name=s1] [cluster=true]     a fresh LeaderCore (same store); the previous one's pending
                                    actions are forgotten (another server takes over)
  members                           the whole membership view, one member per input line:
    NAME STATUS [k=v ...]             status alive|failed|left|suspect; tags; rpc_addr = NAME
  member NAME STATUS [k=v ...]      add or change one member (tags kept if none given)
  job name=N [schedule=S] [tags=k:v[:n],...] [retries=N] [concurrency=forbid] [k=v ...]
                                    commit a set_job directly to the store, then jobs_changed
  lead term=N | step-down | barrier [servers=s2,s3] | tick | wakeup
  commit [fail] [n=K]               apply the first K (default all) pending Commits to the store
                                    and feed the results (or None with `fail`) back; a result that
                                    is refused or has follow-ups prints as a `store:` line
  answer SendRun NODE ok|unreachable|unsure|refused [job=J] [reason=...]
  answer StartLocal JOB             the local run began: record_started
  answer AskLaunches NODE [groups=g1,g2] [up=SECONDS] [running=e1,e2]
                                    (up: its process start, default -3600; running: the runs
                                    going on there, as the node reports their records)
  fail AskLaunches NODE unreachable|timeout
  answer AskRunning NODE [ids=e1,e2] | fail AskRunning NODE
  report-end NODE [job=J] [id=E] [success=true] [stopped=false] [reply=R] [keep=false]
                                    a run's end (keep=true: it can be reported again)
  run-now JOB [cause=manual] [reply=R]
  node-failed NODE
  pending                           the actions still waiting for an answer
  store                             open intents (each with the retries noted in it, `noted=`
                                    the time of the note) and recorded executions (`for=NODE`:
                                    a stand-in's run for NODE; `no-retry`: stopped by a user)
"""

from __future__ import annotations

import difflib
import os
import random
import re
import shlex
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from dkron_pkg.launch import (
    AskLaunches,
    AskRunning,
    Commit,
    LeaderCore,
    Note,
    Recorded,
    Reply,
    SendRun,
    StartLocal,
)
from dkron_pkg.launch.actions import REFUSED, UNREACHABLE, UNSURE
from dkron_pkg.launch.node import STALE_LEADER
from dkron_pkg.store import Store
from dkron_pkg.timefmt import ZERO_TIME, format_rfc3339, ns_to_datetime

SECOND = 1_000_000_000
BASE_NS = 1_767_225_600 * SECOND
DEFAULT_UP_SINCE = -3600
KNOWN_BUG = "# KNOWN BUG"
TESTDATA = Path(__file__).parent / "testdata" / "launch"
FAIL_REASONS = {
    UNREACHABLE: "connection refused",
    UNSURE: "timed out",
    REFUSED: STALE_LEADER,
}


class TranscriptError(Exception):
    """A directive the interpreter cannot carry out (a mistake in the transcript)."""


def seconds(ns: int | None) -> str:
    """Nanoseconds since the epoch as seconds after BASE, shortest form ("10", "9.75")."""
    if ns is None:
        return "-"
    text = f"{Decimal(ns - BASE_NS) / SECOND:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def to_ns(text: str) -> int:
    return BASE_NS + int(Decimal(text) * SECOND)


def parse_bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise TranscriptError(f"expected true or false, got {text!r}")
    return text == "true"


def split_names(text: str) -> list[str]:
    return [n for n in text.split(",") if n]


@dataclass
class Directive:
    line: int
    command: str
    input: list[str]
    expected: list[str]


@dataclass
class Pending:
    """An action of the core that waits for the transcript's answer."""

    action: Any
    kind: str
    key: str  # the node (SendRun, AskLaunches, AskRunning) or job (StartLocal)
    job: str = ""


@dataclass
class Cluster:
    """The interpreter's state: the store, the core, the membership and what is pending."""

    store: Store = field(default_factory=lambda: Store(":memory:"))
    core: LeaderCore | None = None
    now_ns: int = BASE_NS
    members: list[dict] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    groups: dict[int, str] = field(default_factory=dict)
    group_jobs: dict[int, str] = field(default_factory=dict)  # launch group -> job name
    ids: dict[str, str] = field(default_factory=dict)
    executions: list[dict] = field(default_factory=list)  # started through the transcript
    next_execution: int = 0
    next_failed: int = 0
    next_reply: int = 0

    def __post_init__(self) -> None:
        self.new_core("s1", True)

    def new_core(self, name: str, cluster: bool) -> None:
        self.core = LeaderCore(name, self.store, random.Random(0), cluster=cluster)
        self.pending = []
        if self.members:
            self.core.set_members(self.members, self.now_ns)

    # ----- names --------------------------------------------------------------------------

    def group(self, group: int) -> str:
        if group not in self.groups:
            self.groups[group] = f"g{len(self.groups) + 1}"
        return self.groups[group]

    def group_of(self, alias: str) -> int:
        for group, name in self.groups.items():
            if name == alias:
                return group
        raise TranscriptError(f"unknown launch group {alias!r}")

    def execution_id(self, execution_id: str) -> str:
        if execution_id not in self.ids:
            self.next_failed += 1
            self.ids[execution_id] = f"f{self.next_failed}"
        return self.ids[execution_id]

    def text(self, text: str) -> str:
        """Free text (notes, reasons) with execution ids and group numbers replaced."""
        for execution_id in sorted(self.ids, key=len, reverse=True):
            text = text.replace(execution_id, self.ids[execution_id])
        for group in sorted(self.groups, key=lambda g: len(str(g)), reverse=True):
            text = re.sub(rf"\b{group}\b", self.groups[group], text)
        return text

    # ----- rendering ----------------------------------------------------------------------

    def render_command(self, c: dict) -> str:
        op = c["op"]
        if op == "launch":
            self.group_jobs[int(c["group"])] = c["name"]
            nodes = ",".join(c.get("nodes") or [])
            return (
                f"launch {c['name']} {self.group(int(c['group']))} cause={c['cause']}"
                f" at={seconds(c['scheduled_ns'])} nodes=[{nodes}]"
            )
        if op == "close_intent":
            return f"close {self.group(int(c['group']))}"
        if op == "intent_nodes":
            group = int(c["group"])
            intent = self.store.open_intent(group)  # when rendered, the intent is still open
            job = intent["job_name"] if intent is not None else self.group_jobs.get(group, "?")
            line = f"intent-nodes {job} {self.group(group)} +[{','.join(c['nodes'])}]"
            if c.get("standin_for"):
                line += f" standin-for={c['standin_for']}"
            if c.get("drop"):
                line += f" drop=[{','.join(c['drop'])}]"
            return line + (f" {_retry_note(c['retry'])}" if c.get("retry") else "")
        if op in ("execution_started", "execution_done"):
            ex = c["execution"]
            head = (
                f"{ex['job_name']} {self.group(int(ex['group']))} node={ex['node_name']}"
                f"{_for(ex)} attempt={ex.get('attempt', 1)}"
            )
            if op == "execution_started":
                return f"started {head} id={self.execution_id(ex['id'])}"
            flags = " no-retry" if c.get("no_retry") else ""
            return (
                f"done {head} id={self.execution_id(ex['id'])} success={_b(ex['success'])}{flags}"
            )
        if op == "abandon_running":
            which = f"node={c['node']}" if c.get("node") else f"id={self.execution_id(c['id'])}"
            return f'abandon {which} "{self.text(c.get("reason", ""))}"'
        if op == "delete_job":
            return f"delete-job {c['name']}"
        return f"{op} {c}"

    def render_commit(self, commands: list[dict]) -> list[str]:
        parts: list[str] = []
        i = 0
        while i < len(commands):
            c = commands[i]
            nxt = commands[i + 1] if i + 1 < len(commands) else None
            ex = c.get("execution")
            if (
                c["op"] == "execution_started"
                and ex.get("finished_at", ZERO_TIME) != ZERO_TIME
                and nxt is not None
                and nxt["op"] == "execution_done"
                and nxt["execution"]["id"] == ex["id"]
            ):
                flags = " no-retry" if nxt.get("no_retry") else ""
                parts.append(
                    f"failed-attempt {ex['job_name']} {self.group(int(ex['group']))}"
                    f" node={ex['node_name']}{_for(ex)} attempt={ex.get('attempt', 1)}"
                    f' id={self.execution_id(ex["id"])}{flags} "{self.text(ex["output"])}"'
                )
                i += 2
                continue
            parts.append(self.render_command(c))
            i += 1
        return [f"Commit {parts[0]}", *(f"  + {p}" for p in parts[1:])]

    def render(self, action: Any) -> list[str]:
        if isinstance(action, Commit):
            return self.render_commit(action.commands)
        if isinstance(action, SendRun):
            a = action.args
            addr = "" if action.addr == action.node else f" addr={action.addr}"
            report = "" if a["report_to"] == self.core.node_name else f" report_to={a['report_to']}"
            line = (
                f"SendRun {action.node} {a['job']['name']} {self.group(a['group'])}"
                f" attempt={a['attempt']} at={seconds(a['scheduled_ns'])} term={a['term']}"
            )
            standin = f" for={a['for_node']}" if a.get("for_node") else ""
            return [line + standin + addr + report]
        if isinstance(action, StartLocal):
            line = (
                f"StartLocal {action.job['name']} {self.group(action.group)}"
                f" attempt={action.attempt} at={seconds(action.scheduled_ns)}"
            )
            return [line + (f" for={action.for_node}" if action.for_node else "")]
        if isinstance(action, AskLaunches):
            term = "none" if action.term is None else action.term
            addr = "" if action.addr == action.node else f" addr={action.addr}"
            return [f"AskLaunches {action.node} term={term}{addr}"]
        if isinstance(action, AskRunning):
            addr = "" if action.addr == action.node else f" addr={action.addr}"
            return [f"AskRunning {action.node}{addr}"]
        if isinstance(action, Reply):
            if action.ok:
                return [f"Reply {action.reply} ok {action.status}"]
            return [f"Reply {action.reply} error {action.status}: {self.text(action.error)}"]
        if isinstance(action, Recorded):
            ex = action.execution
            line = (
                f"Recorded {action.job['name']} {self.group(int(ex['group']))}"
                f" node={ex['node_name']} attempt={ex.get('attempt', 1)}"
                f" success={_b(ex['success'])}"
            )
            return [line]
        if isinstance(action, Note):
            return [f"Note {action.level}: {self.text(action.text)}"]
        raise TranscriptError(f"unknown action {action!r}")

    def render_follow_up(self, f: dict) -> str:
        kind = f["action"]
        if kind == "retry":
            return (
                f"store: retry {f['job_name']} {self.group(f['group'])} attempt={f['attempt']}"
                f" node={f['node_name']} in {f['delay']:g}s"
            )
        if kind == "finished":
            return f"store: finished {f['job_name']} {self.group(f['group'])} status={f['status']}"
        if kind == "run_dependent":
            return f"store: run dependent {f['job_name']}"
        if kind == "delete_ephemeral":
            return f"store: delete ephemeral {f['job_name']}"
        return f"store: {f}"

    # ----- driving the core ---------------------------------------------------------------

    def collect(self) -> list[str]:
        """Take the core's actions: render them and remember those that wait for an answer."""
        core = self.core
        actions = core.ready()
        core.advance()
        out: list[str] = []
        for action in actions:
            out.extend(self.render(action))
            if isinstance(action, Commit):
                self.pending.append(Pending(action, "Commit", ""))
            elif isinstance(action, SendRun):
                self.pending.append(
                    Pending(action, "SendRun", action.node, action.args["job"]["name"])
                )
            elif isinstance(action, StartLocal):
                self.pending.append(Pending(action, "StartLocal", action.job["name"]))
            elif isinstance(action, AskLaunches):
                self.pending.append(Pending(action, "AskLaunches", action.node))
            elif isinstance(action, AskRunning):
                self.pending.append(Pending(action, "AskRunning", action.node))
        return out

    def take(self, kind: str, key: str, job: str = "") -> Pending:
        for p in self.pending:
            if p.kind == kind and p.key == key and (not job or p.job == job):
                self.pending.remove(p)
                return p
        what = f"{kind} {key}" + (f" job={job}" if job else "")
        raise TranscriptError(f"no pending {what}")

    def new_execution(
        self, job_name: str, node: str, group: int, attempt: int, sched, for_node: str = ""
    ) -> dict:
        self.next_execution += 1
        execution_id = f"e{self.next_execution}"
        self.ids[execution_id] = execution_id
        ex = {
            "id": execution_id,
            "job_name": job_name,
            "started_at": format_rfc3339(ns_to_datetime(self.now_ns)),
            "finished_at": ZERO_TIME,
            "success": False,
            "output": "",
            "node_name": node,
            "group": group,
            "attempt": attempt,
            "started_ns": self.now_ns,
            "scheduled_ns": sched,
        }
        if for_node:  # as the node's runner does for a stand-in
            ex["for_node"] = for_node
        self.executions.append(ex)
        return ex

    def reply_token(self, args: dict) -> str:
        if "reply" in args:
            return args.pop("reply")
        self.next_reply += 1
        return f"r{self.next_reply}"


def _b(value: bool) -> str:
    return "true" if value else "false"


def _retry_note(retry: dict) -> str:
    """A retry noted in an intent: `retry node=N [for=SLOT] attempt=K` (the slot is the node
    whose run it retries, shown only when a stand-in runs it)."""
    slot = "" if retry["slot"] == retry["node"] else f" for={retry['slot']}"
    return f"retry node={retry['node']}{slot} attempt={retry['attempt']}"


def _for(execution: dict) -> str:
    """` for=NODE` for a stand-in's execution (the node whose run it is), else nothing."""
    return f" for={execution['for_node']}" if execution.get("for_node") else ""


def _member(line: str) -> dict:
    words = shlex.split(line)
    if len(words) < 2:
        raise TranscriptError(f"a member is NAME STATUS [k=v ...], got {line!r}")
    name, status, *rest = words
    tags = {"rpc_addr": name}
    for word in rest:
        key, sep, value = word.partition("=")
        if not sep:
            raise TranscriptError(f"a member tag is k=v, got {word!r}")
        tags[key] = value
    return {"Name": name, "Addr": name, "Tags": tags, "statusText": status}


def _job_tags(text: str) -> dict[str, str] | None:
    tags: dict[str, str] = {}
    for item in split_names(text):
        key, sep, value = item.partition(":")
        if not sep:
            raise TranscriptError(f"a job tag is key:value[:count], got {item!r}")
        tags[key] = value
    return tags or None


def _parse_args(words: list[str]) -> tuple[list[str], dict[str, str]]:
    positional: list[str] = []
    named: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep and re.fullmatch(r"[a-z_]+", key):
            named[key] = value
        else:
            positional.append(word)
    return positional, named


def run_directive(c: Cluster, d: Directive) -> list[str]:
    words = shlex.split(d.command)
    cmd, (pos, args) = words[0], _parse_args(words[1:])
    if "t" in args:
        now = to_ns(args.pop("t"))
        if now < c.now_ns:
            raise TranscriptError(f"time goes back: t={seconds(now)} < {seconds(c.now_ns)}")
        c.now_ns = now
    now = c.now_ns
    core = c.core
    out: list[str] = []

    if cmd == "core":
        c.new_core(args.pop("name", "s1"), parse_bool(args.pop("cluster", "true")))
    elif cmd == "members":
        c.members = [_member(line) for line in d.input]
        core.set_members(c.members, now)
    elif cmd == "member":
        pos += [f"{k}={v}" for k, v in args.items()]
        args.clear()
        new = _member(shlex.join(pos))
        old = next((m for m in c.members if m["Name"] == new["Name"]), None)
        if old is not None:
            if len(pos) == 2:
                new["Tags"] = old["Tags"]
            c.members[c.members.index(old)] = new
        else:
            c.members.append(new)
        core.set_members(c.members, now)
    elif cmd == "job":
        job: dict[str, Any] = {}
        for key, value in list(args.items()):
            if key == "tags":
                job["tags"] = _job_tags(value)
            elif key in ("retries", "missed_runs_limit"):
                job[key] = int(value)
            elif key in ("disabled", "ephemeral"):
                job[key] = parse_bool(value)
            else:
                job[key] = value
        args.clear()
        job.setdefault("executor", "shell")
        result = c.store.apply({"op": "set_job", "job": job, "now_ns": now})
        if not result.ok:
            out.append(f"error: {result.error}")
        else:
            out.append("ok")
            core.jobs_changed(c.store.get_job(job["name"]), job["name"])
    elif cmd == "lead":
        core.lead(int(args.pop("term")))
    elif cmd == "step-down":
        core.step_down()
    elif cmd == "barrier":
        core.barrier_passed(now, split_names(args.pop("servers", "")))
    elif cmd == "tick":
        core.tick(now)
    elif cmd == "wakeup":
        wake = core.next_wakeup_ns()
        out.append(f"next wakeup t={seconds(wake)}" if wake is not None else "no wakeup")
    elif cmd == "commit":
        fail = "fail" in pos
        commits = [p for p in c.pending if p.kind == "Commit"]
        if not commits:
            raise TranscriptError("no pending Commit")
        commits = commits[: int(args.pop("n", len(commits)))]
        for p in commits:
            c.pending.remove(p)
        for p in commits:
            if fail:
                core.committed(p.action.token, None, now)
                out.extend(c.collect())
                continue
            results = c.store.apply_batch(p.action.commands)
            for command, result in zip(p.action.commands, results, strict=True):
                if not result.ok:
                    out.append(
                        f"store: {command['op']} refused {result.status}: {c.text(result.error)}"
                    )
                out.extend(c.render_follow_up(f) for f in result.follow_ups)
            core.committed(p.action.token, results, now)
            out.extend(c.collect())
    elif cmd in ("answer", "fail"):
        out.extend(_answer(c, cmd, pos, args))
    elif cmd == "report-end":
        (node,) = pos
        job_name = args.pop("job", "")
        execution_id = args.pop("id", "")
        candidates = [
            e
            for e in c.executions
            if e["node_name"] == node
            and (not job_name or e["job_name"] == job_name)
            and (not execution_id or e["id"] == execution_id)
        ]
        if not candidates:
            raise TranscriptError(f"no run on {node} to report")
        ex = candidates[-1]
        if not parse_bool(args.pop("keep", "false")):
            c.executions.remove(ex)
        ex = dict(ex)
        ex["finished_at"] = format_rfc3339(ns_to_datetime(now))
        ex["success"] = parse_bool(args.pop("success", "true"))
        ex["output"] = "ok" if ex["success"] else "exit status 1"
        job = c.store.get_job(ex["job_name"]) or {"name": ex["job_name"]}
        stopped = parse_bool(args.pop("stopped", "false"))
        core.run_ended(job, ex, stopped, c.reply_token(args), now)
    elif cmd == "run-now":
        (name,) = pos
        core.run_now(name, args.pop("cause", "manual"), c.reply_token(args), now)
    elif cmd == "node-failed":
        (node,) = pos
        core.node_failed(node, now)
    elif cmd == "pending":
        for p in c.pending:
            out.extend(f"  {line}" for line in c.render(p.action))
    elif cmd == "store":
        for intent in sorted(c.store.open_intents(), key=lambda i: i["group"]):
            out.append(
                f"intent {intent['job_name']} {c.group(intent['group'])} cause={intent['cause']}"
                f" at={seconds(intent['scheduled_ns'])} nodes=[{','.join(intent['nodes'])}]"
            )
            for _, retry in sorted((intent.get("retries") or {}).items()):
                out.append(f"  {_retry_note(retry)} noted={seconds(retry['at'])}")
        for job in sorted(c.store.list_jobs(), key=lambda j: j["name"]):
            for ex in c.store.executions(job["name"]):
                state = (
                    "running" if ex["finished_at"] == ZERO_TIME else f"success={_b(ex['success'])}"
                )
                flags = " no-retry" if ex.get("no_retry") else ""
                out.append(
                    f"execution {c.execution_id(ex['id'])} {ex['job_name']}"
                    f" {c.group(int(ex['group']))} node={ex['node_name']}{_for(ex)}"
                    f" attempt={ex.get('attempt', 1)}"
                    f" {state}{flags}"
                )
    else:
        raise TranscriptError(f"unknown command {cmd!r}")
    if args:
        raise TranscriptError(f"{cmd}: unknown arguments {sorted(args)}")
    return out + c.collect()


def _answer(c: Cluster, cmd: str, pos: list[str], args: dict[str, str]) -> list[str]:
    core, now = c.core, c.now_ns
    if len(pos) < 2:
        raise TranscriptError(f"{cmd} needs an action kind and a node or job")
    kind, key, *rest = pos
    takes_outcome = (cmd, kind) in (("answer", "SendRun"), ("fail", "AskLaunches"))
    if len(rest) > (1 if takes_outcome else 0):
        raise TranscriptError(f"{cmd} {kind}: unexpected {' '.join(rest)!r}")
    if cmd == "answer" and kind == "SendRun":
        p = c.take("SendRun", key, args.pop("job", ""))
        a = p.action.args
        outcome = rest[0] if rest else "ok"
        if outcome == "ok":
            ex = c.new_execution(
                a["job"]["name"],
                key,
                a["group"],
                a["attempt"],
                a["scheduled_ns"],
                a.get("for_node", ""),
            )
            core.run_answered(p.action.req, dict(ex), now)
        elif outcome in FAIL_REASONS:
            core.run_failed(p.action.req, outcome, args.pop("reason", FAIL_REASONS[outcome]), now)
        else:
            raise TranscriptError(f"unknown SendRun outcome {outcome!r}")
    elif cmd == "answer" and kind == "StartLocal":
        p = c.take("StartLocal", key)
        a = p.action
        ex = c.new_execution(
            a.job["name"], core.node_name, a.group, a.attempt, a.scheduled_ns, a.for_node
        )
        core.record_started(dict(ex), now)
    elif cmd == "answer" and kind == "AskLaunches":
        p = c.take("AskLaunches", key)
        groups = [c.group_of(g) for g in split_names(args.pop("groups", ""))]
        up_since = to_ns(args.pop("up", str(DEFAULT_UP_SINCE)))
        wanted = split_names(args.pop("running", ""))
        running = [dict(ex) for ex in c.executions if ex["id"] in wanted]
        if len(running) != len(wanted):
            raise TranscriptError(f"running: no execution among {wanted}")
        core.launches_answered(p.action.ask, groups, up_since, now, running)
    elif cmd == "fail" and kind == "AskLaunches":
        p = c.take("AskLaunches", key)
        how = rest[0] if rest else "timeout"
        if how not in ("unreachable", "timeout"):
            raise TranscriptError(f"fail AskLaunches NODE unreachable|timeout, got {how!r}")
        core.launches_failed(p.action.ask, how == "unreachable", now)
    elif cmd == "answer" and kind == "AskRunning":
        p = c.take("AskRunning", key)
        core.running_answered(p.action.ask, split_names(args.pop("ids", "")), now)
    elif cmd == "fail" and kind == "AskRunning":
        p = c.take("AskRunning", key)
        core.running_failed(p.action.ask, now)
    else:
        raise TranscriptError(f"cannot {cmd} {kind}")
    return []


# ----- the file format ----------------------------------------------------------------------


def parse(text: str) -> list[str | Directive]:
    """Comments and blank lines (kept verbatim, as str) and directives, in file order."""
    items: list[str | Directive] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.startswith("#"):
            items.append(line)
            i += 1
            continue
        start = i
        command = line
        i += 1
        inputs: list[str] = []
        while i < len(lines) and lines[i] != "----":
            if not lines[i].strip():
                raise TranscriptError(f"line {start + 1}: {command!r} has no ---- line")
            inputs.append(lines[i])
            i += 1
        if i == len(lines):
            raise TranscriptError(f"line {start + 1}: {command!r} has no ---- line")
        i += 1
        expected: list[str] = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        items.append(Directive(start + 1, command, inputs, expected))
    return items


def run(text: str) -> str:
    """Run a transcript: its text with every expected block as produced."""
    items = parse(text)
    cluster = Cluster()
    try:
        return _run_items(cluster, items)
    finally:
        cluster.store.close()


def _run_items(cluster: Cluster, items: list[str | Directive]) -> str:
    out: list[str] = []
    for index, item in enumerate(items):
        if isinstance(item, str):
            out.append(item)
            continue
        try:
            produced = run_directive(cluster, item)
        except TranscriptError as e:
            error = TranscriptError(f"line {item.line}: {item.command}: {e}")
            partial = [*out, item.command, *item.input, "----"]
            error.partial = "\n".join(partial)  # type: ignore[attr-defined]
            raise error from None
        except Exception as e:  # the core (or the store) failed: say where
            e.add_note(f"at transcript line {item.line}: {item.command}")
            raise
        out.extend([item.command, *item.input, "----", *produced])
        if index + 1 < len(items) and items[index + 1] != "":
            out.append("")  # a block ends at a blank line
    return "\n".join(out).rstrip("\n") + "\n"


def check_file(path: Path) -> str | None:
    """None when the transcript matches, else a unified diff (expected -> actual).

    With REWRITE=1 the file is rewritten with the produced output instead, unless it has a line
    starting with `# KNOWN BUG`: such a file states the correct behaviour of a core that does
    not have it yet, and fails until the core is fixed (then drop the marker).
    """
    original = path.read_text()
    error = ""
    try:
        produced = run(original)
    except TranscriptError as e:
        error, produced = f"{e}\n", getattr(e, "partial", "") + "\n"
    if produced == original:
        return None
    known_bug = any(line.startswith(KNOWN_BUG) for line in original.splitlines())
    if os.environ.get("REWRITE") == "1" and not error and not known_bug:
        path.write_text(produced)
        return None
    diff = "".join(
        difflib.unified_diff(
            original.splitlines(keepends=True),
            produced.splitlines(keepends=True),
            fromfile=f"{path.name} (expected)",
            tofile=f"{path.name} (actual)",
        )
    )
    note = f"{path.name} records a known bug (see its header)\n" if known_bug else ""
    return note + error + diff


if __name__ == "__main__":  # print a transcript's output as produced (up to an error)
    import sys

    for name in sys.argv[1:]:
        try:
            print(run(Path(name).read_text()), end="")
        except TranscriptError as e:
            print(getattr(e, "partial", ""))
            print(f"ERROR {e}")
