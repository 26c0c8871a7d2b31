"""The agent's view of the cluster: SWIM gossip members in Dkron's JSON shape.

Every node (server or not) joins the gossip ring; what it learns is what `/v1/members` shows,
what the leader selects run targets from, and how servers find each other. Statuses follow
Serf's numbering (1 alive, 2 leaving, 3 left, 4 failed); a suspected member still counts as
alive, as in Serf.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from dkron_pkg.swim import Member, MemberEvent
from dkron_pkg.swim_transport import GossipTransport

log = logging.getLogger("dkron.membership")

STATUS_CODES = {"alive": 1, "suspect": 1, "leaving": 2, "left": 3, "failed": 4}
STATUS_TEXT = {
    "alive": "alive",
    "suspect": "alive",
    "leaving": "leaving",
    "left": "left",
    "failed": "failed",
}
GOSSIP_PROTOCOL = {"ProtocolMin": 1, "ProtocolMax": 5, "ProtocolCur": 2}
DELEGATE_PROTOCOL = {"DelegateMin": 2, "DelegateMax": 5, "DelegateCur": 4}
KEY_PROBLEM_SECONDS = 600.0  # a source refused for the key is reported this long after
JOIN_PROBLEM_SECONDS = 6.0  # a join with no answer this long is reported


def member_json(name: str, addr: str, port: int, tags: dict[str, str], status: str) -> dict:
    """One member as Dkron's /v1/members shows it."""
    return {
        "Name": name,
        "Addr": addr,
        "Port": port,
        "Tags": dict(tags),
        "Status": STATUS_CODES.get(status, 0),
        **GOSSIP_PROTOCOL,
        **DELEGATE_PROTOCOL,
        "id": name,
        "statusText": STATUS_TEXT.get(status, status),
    }


def parse_seed(text: str, default_port: int = 8946) -> tuple[str, int]:
    """`host[:port]` of a node to join; a clear ValueError otherwise."""
    host, sep, port = text.strip().rpartition(":")
    if not sep:
        return text.strip(), default_port
    if not port.isdigit():
        raise ValueError(f'join address "{text}": the port must be a number')
    return host.strip("[]") or "127.0.0.1", int(port)


class Membership:
    """Runs the gossip transport for this agent and converts what it knows."""

    def __init__(
        self,
        name: str,
        bind_host: str,
        bind_port: int,
        advertise_host: str,
        tags: dict[str, str],
        profile: str,
        key: bytes | None,
        seeds: list[str],
        on_event: Callable[[MemberEvent], None] | None = None,
    ):
        self.name = name
        self.seeds = list(seeds)
        self._started_at = time.monotonic()
        self._on_event = on_event
        self._lock = threading.Lock()
        self.transport = GossipTransport(
            name,
            bind_host,
            bind_port,
            tags=tags,
            profile=profile,
            key=key,
            seeds=[parse_seed(s) for s in seeds],
            on_event=self._event,
            advertise_addr=advertise_host,
        )

    def start(self) -> None:
        self.transport.start()

    @property
    def port(self) -> int:
        return self.transport.port

    def _event(self, event: MemberEvent) -> None:
        log.info("member %s: %s (%s)", event.kind, event.member.name, event.member.status)
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # an observer's bug must not stop the gossip thread
                log.exception("member event handler failed")

    def members(self) -> list[dict]:
        return [
            member_json(m.name, m.addr, m.port, m.tags, m.status)
            for m in sorted(self.transport.members(), key=lambda m: m.name)
        ]

    def raw_members(self) -> list[Member]:
        return self.transport.members()

    def key_problems(self, now: float | None = None) -> dict[str, str]:
        """{source: message} for each address whose gossip was refused for the cluster key
        in the last KEY_PROBLEM_SECONDS (forged packets included: they say the same)."""
        now = time.time() if now is None else now
        found = {}
        for source, (count, when, why) in self.transport.key_refusals().items():
            if now - when > KEY_PROBLEM_SECONDS:
                continue
            keyless = "no authentication tag" in why
            what = "without a cluster key" if keyless else "under another cluster key"
            found[source] = (
                f"a node at {source} sends gossip {what}: {count} packet"
                f"{'' if count == 1 else 's'} refused, the last "
                f"{max(0.0, now - when):.0f}s ago ({why}); give it this cluster's key "
                f"(--encrypt or --encrypt-file)"
            )
        return found

    def join_problems(self) -> dict[str, str]:
        """{"join": message} while the join to the seeds has had no answer for a while (the
        seeds refuse packets under another cluster key without a word)."""
        waited = time.monotonic() - self._started_at
        if not self.seeds or self.transport.joined or waited < JOIN_PROBLEM_SECONDS:
            return {}
        return {
            "join": (
                f"gossip join to {', '.join(self.seeds)} has had no answer for {waited:.0f}s: "
                f"is a node up there, and does this node have the cluster's key?"
            )
        }

    def set_tags(self, tags: dict[str, str]) -> None:
        self.transport.set_tags(tags)

    def stats(self) -> dict[str, Any]:
        counts = {"alive": 0, "failed": 0, "left": 0}
        for m in self.transport.members():
            key = "alive" if m.status in ("alive", "suspect") else m.status
            counts[key] = counts.get(key, 0) + 1
        stats = {k: str(v) for k, v in self.transport.stats.items()}
        stats.update(
            {
                "members": str(sum(counts.values())),
                "failed": str(counts["failed"]),
                "left": str(counts["left"]),
            }
        )
        return stats

    def stop(self, leave: bool = True) -> None:
        self.transport.stop(leave=leave)
