"""The node tags the agent sets itself, and why a job's tags may select no node at all.

Dkron gives every node `role=dkron`, `dc`, `region`, `version`, `server`, `rpc_addr`, `port`
and, when bootstrapping, `bootstrap`/`expect`; this agent also sets `node` (its name, used to pin
imported crontab jobs to their host). A user tag with one of these keys would be replaced
silently, so jobs selecting it would never run: the configuration refuses such tags instead.
"""

from __future__ import annotations

from collections.abc import Iterable

# key -> where its value comes from, for the message that refuses a user tag with that key.
RESERVED_TAGS: dict[str, str] = {
    "role": "it is role=dkron on every node, as in Dkron",
    "node": "it is the node's name: set it with --node-name",
    "server": "it says whether the node is a server: start servers with --server",
    "dc": "it is the node's datacenter: set it with --datacenter",
    "region": "it is the node's region: set it with --region",
    "version": "it is the agent's version",
    "rpc_addr": "it is the node's RPC address: set it with --advertise-addr and --rpc-port",
    "port": "it is the node's RPC port: set it with --advertise-rpc-port",
    "expect": "it is --bootstrap-expect",
    "bootstrap": "it marks a bootstrapping server (--bootstrap-expect)",
}


def reserved_tag_problem(tags: dict[str, str]) -> str | None:
    """Why these user tags cannot be used (None when they can)."""
    for key in sorted(tags):
        if key in RESERVED_TAGS:
            value = tags[key] or "VALUE"
            return (
                f'tag "{key}" is reserved: the agent sets it itself ({RESERVED_TAGS[key]}). '
                f"Use another key for your own tag, e.g. --tag kind={value}, and select it in "
                f'jobs with "tags": {{"kind": "{value}:1"}}'
            )
    return None


def job_tag_warnings(tags: object, members: Iterable[dict], region: str | None = None) -> list[str]:
    """What makes a job's tags select no known node (empty when some node matches).

    Judged against every member of the region this node knows of, alive or not, so a node
    that is only restarting does not raise a warning (the leader runs jobs in its region only).
    """
    if not isinstance(tags, dict) or not tags:
        return []
    members = [
        m
        for m in members
        if region is None or (m.get("Tags") or {}).get("region", region) == region
    ]
    required: dict[str, str] = {}
    warnings: list[str] = []
    for key, raw in tags.items():
        if not isinstance(raw, str):
            return [f'tag "{key}" must be text "value[:count]"; the job runs on no node']
        value, sep, count = raw.partition(":")
        required[key] = value
        if sep and _count(count) <= 0:
            warnings.append(
                f'tag "{key}": "{raw}" asks for {count or "no"} nodes; the count must be a '
                "whole number of at least 1, so the job runs on no node"
            )
    node_tags = [m.get("Tags") or {} for m in members]
    if any(all(t.get(k) == v for k, v in required.items()) for t in node_tags):
        return warnings
    missing = [f"{k}={v}" for k, v in required.items() if not any(t.get(k) == v for t in node_tags)]
    if missing:
        detail = "; ".join(f"no known node has {tag}" for tag in missing)
    else:
        detail = "no single known node has all of " + ", ".join(
            f"{k}={v}" for k, v in required.items()
        )
    hint = ""
    for key in required:
        if key in RESERVED_TAGS:
            hint = f' ("{key}" is set by the agent: {RESERVED_TAGS[key]})'
            break
    warnings.append(f"the job's tags select no node: {detail}{hint}; it will not run")
    return warnings


def _count(text: str) -> int:
    """A tag's node count as the leader reads it (not a number: 0)."""
    try:
        return int(text)
    except ValueError:
        return 0
