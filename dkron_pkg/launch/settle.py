"""What a new leader (or a restarted single server) does with launches left without an outcome.

A launch intent is committed before its run is dispatched, so after a crash or a leader change
some intents have no recorded end. Each one is settled by this pure decision: close it, put it
back in the dispatch queue (its time is still near), retry its last failed attempt, or run it
now by the job's missed-run policy. The caller gathers the inputs (open intents, jobs,
executions, launch groups some node already knows) and carries the actions out; nothing here
reads a clock or talks to a node, so the seeded launch simulation drives the same decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dkron_pkg.dispatch import parse_job_tags
from dkron_pkg.timefmt import format_rfc3339, ns_to_datetime

CLOSE = "close"  # nothing left to do: record the intent as settled
REQUEUE = "requeue"  # its scheduled time is recent: dispatch it at that time as usual
RETRY = "retry"  # its last attempt failed and attempts remain: run the next one
DISPATCH_NOW = "dispatch_now"  # it was missed and the policy wants it run now
LOST = "lost"  # its node died or restarted since: record the attempt failed (retries apply)

TIMED_CAUSES = ("schedule", "catchup")
SKIPPED = "missed launch skipped"  # the reason of a CLOSE by the `skip` policy


@dataclass(frozen=True)
class Action:
    """One settlement step for the launch `group` of `job_name`."""

    kind: str
    group: int
    job_name: str
    scheduled_ns: int | None = None
    attempt: int = 1
    node: str = ""
    reason: str = ""
    slot: str = ""  # for a RETRY: whose run it retries (the node a stand-in ran it for)
    nodes: tuple[str, ...] = ()  # for REQUEUE / DISPATCH_NOW: the nodes still to run it
    job: dict | None = field(default=None, compare=False, repr=False)


def settle(
    intents: Iterable[dict],
    job_lookup: Callable[[str], dict | None],
    executions_of: Callable[[str, int], list[dict]],
    known_groups: set[int],
    now_ns: int,
    late_grace_ns: int,
    nodes_up_since: Mapping[str, int] | None = None,
) -> list[Action]:
    """Decide the fate of every open intent; groups in `known_groups` are left alone.

    A group some node runs or ran lately was dispatched by the previous leader: its node
    reports the end to us, so it must not be launched again. A group with a running execution
    is left for the same reason. `executions_of(job_name, group)` gives the group's recorded
    executions.

    `nodes_up_since` maps every node that answered to the time it (re)started. An intent
    names the nodes chosen for it when it was committed; if one of them is missing from the
    map (dead) or restarted after the intent's time, the run may have started there and died
    with the node, so launching it again could run it twice: the attempt is recorded as lost
    instead and the job's retries decide. Without the map (one server) this rule is off.
    """
    actions: list[Action] = []
    for intent in intents:
        group = intent["group"]
        if group in known_groups:
            continue
        name = intent["job_name"]
        job = job_lookup(name)
        if job is None:
            actions.append(Action(CLOSE, group, name, reason="job deleted"))
            continue
        executions = executions_of(name, group)
        if any(e["finished_at"].startswith("0001") for e in executions):
            continue
        actions.extend(
            _settle_intent(intent, job, executions, now_ns, late_grace_ns, nodes_up_since)
        )
    return actions


def _settle_intent(
    intent: dict,
    job: dict,
    executions: list[dict],
    now_ns: int,
    late_grace_ns: int,
    nodes_up_since: Mapping[str, int] | None,
) -> list[Action]:
    """One launch, judged node by node: each node's recorded run is retried or done; a node
    that may have run it and died is a lost attempt; the others still run it (or, missed,
    by the job's policy)."""
    group, name = intent["group"], intent["job_name"]
    actions = (
        [a for a in _after_executions(intent, job, executions, nodes_up_since) if a.kind != CLOSE]
        if executions
        else []
    )
    ran = {run_slot(e) for e in executions}
    # A stand-in that ran another node's run is not owed a run of its own.
    busy = ran | {e.get("node_name", "") for e in executions}
    # A stand-in placed for a node runs that node's run, not one of its own; a dropped node
    # died before the launch was sent to it.
    standins: dict[str, str] = intent.get("standins") or {}
    left_out = {*standins, *(intent.get("dropped") or [])}
    unrun = [n for n in intent.get("nodes") or [] if n not in busy and n not in left_out]
    _, count = parse_job_tags(job.get("tags"))
    gone = {n: _lost_on(n, standins, intent, nodes_up_since) for n in unrun}
    lost_all = [n for n in unrun if gone[n]]
    lost = lost_all
    if count is not None:
        # A `:N` launch also names the stand-ins it was given (a stand-in runs a named node's
        # run): N runs in all, no more. A node that may have run it (lost) counts first: the
        # launch is not sent to another node in its place.
        room = max(0, count - len(ran))
        lost = lost_all[:room]
        unrun = lost + [n for n in unrun if n not in lost_all][: room - len(lost)]
    for node in lost:
        actions.append(
            Action(
                LOST,
                group,
                name,
                scheduled_ns=intent["scheduled_ns"],
                attempt=intent.get("attempt", 1),
                node=gone[node],
                reason=f"node {gone[node]} failed or restarted before reporting this run",
                slot=node if gone[node] != node else "",
                job=job,
            )
        )
    pending = tuple(n for n in unrun if n not in lost)
    if pending or not (executions or intent.get("nodes")):
        timed = intent["cause"] in TIMED_CAUSES
        if timed and intent["scheduled_ns"] >= now_ns - late_grace_ns:
            actions.append(
                Action(
                    REQUEUE,
                    group,
                    name,
                    scheduled_ns=intent["scheduled_ns"],
                    nodes=pending,
                    job=job,
                )
            )
        elif job.get("missed_runs", "skip") == "skip" and timed:
            if not actions:
                actions.append(Action(CLOSE, group, name, reason=SKIPPED, job=job))
        else:
            actions.append(
                Action(
                    DISPATCH_NOW,
                    group,
                    name,
                    # a scheduled launch runs late but still as the run of its time
                    scheduled_ns=intent["scheduled_ns"] if timed else None,
                    attempt=intent.get("attempt", 1),
                    reason="launch interrupted by a restart",
                    nodes=pending,
                    job=job,
                )
            )
    return actions or [Action(CLOSE, group, name, reason="ended", job=job)]


def _lost_on(
    node: str,
    standins: Mapping[str, str],
    intent: dict,
    nodes_up_since: Mapping[str, int] | None,
) -> str:
    """The node that may have started `node`'s run and cannot vouch it did not (it is dead, or
    restarted since the intent was recorded): `node` itself or one of its stand-ins; "" when
    none. Without the map (one server) none."""
    for candidate in (node, *sorted(s for s, slot in standins.items() if slot == node)):
        if _gone_since(candidate, intent["created_ns"], nodes_up_since):
            return candidate
    return ""


def _after_executions(
    intent: dict,
    job: dict,
    executions: list[dict],
    nodes_up_since: Mapping[str, int] | None = None,
) -> list[Action]:
    """Every recorded attempt has ended: retry each node's run whose latest attempt failed
    while attempts remain (a run stopped by a user is not retried); else the launch ended.

    A retry is noted in the intent before it is sent (`retries`: slot -> attempt, node, time).
    If the next attempt was sent to a node that is dead or restarted since (`nodes_up_since`,
    as in `settle`), it may have run there and died with it: it is recorded as lost (that
    attempt failed) instead of being run a second time. One never sent is simply retried."""
    latest: dict[str, dict] = {}
    for e in executions:
        slot = run_slot(e)
        if slot not in latest or e.get("attempt", 1) >= latest[slot].get("attempt", 1):
            latest[slot] = e
    actions = []
    for slot, e in sorted(latest.items()):
        attempt = e.get("attempt", 1) + 1
        if e["success"] or e.get("no_retry") or attempt > job.get("retries", 0) + 1:
            continue
        sent = (intent.get("retries") or {}).get(slot)
        node = e.get("node_name", "")
        lost = False
        if sent is not None and int(sent.get("attempt", 0)) == attempt:
            node = sent.get("node", node)
            lost = _gone_since(node, int(sent.get("at", 0)), nodes_up_since)
        actions.append(
            Action(
                LOST if lost else RETRY,
                intent["group"],
                intent["job_name"],
                scheduled_ns=intent["scheduled_ns"],
                attempt=attempt,
                node=node,
                reason=f"node {node} failed or restarted before reporting this retry",
                slot=slot,
                job=job,
            )
        )
    return actions or [Action(CLOSE, intent["group"], intent["job_name"], reason="ended", job=job)]


def _gone_since(node: str, since_ns: int, nodes_up_since: Mapping[str, int] | None) -> bool:
    """Whether `node` is dead or restarted after `since_ns` (never without the map)."""
    if nodes_up_since is None:
        return False
    up = nodes_up_since.get(node)
    return up is None or up > since_ns


def run_slot(execution: dict) -> str:
    """Whose run of a launch this execution is: its node's, or, for a stand-in, the node it
    stands in for (`for_node`). The store keeps the same rule."""
    return execution.get("for_node") or execution.get("node_name", "")


def failed_attempt(
    job_name: str,
    node: str,
    group: int,
    attempt: int,
    now_ns: int,
    scheduled_ns: int | None,
    reason: str,
    execution_id: str = "",
) -> dict:
    """The execution record of an attempt that never ran, or died with its node unreported.

    Recorded as started and ended at once, it closes the attempt so the job's retries decide.
    """
    stamp = format_rfc3339(ns_to_datetime(now_ns))
    return {
        "id": execution_id or f"{now_ns}-{node}",
        "job_name": job_name,
        "started_at": stamp,
        "finished_at": stamp,
        "success": False,
        "output": reason,
        "node_name": node,
        "group": group,
        "attempt": attempt,
        "started_ns": now_ns,
        "scheduled_ns": scheduled_ns,
    }
