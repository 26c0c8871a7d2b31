"""The running node's side of the launch protocol: whom to obey, what to tell a new leader,
and where to report a run's end.

A new leader asks every node which launches it runs or ran (`agent.launches`, with its Raft
term) before it settles open launches; from then on a request of an older term could start a
launch the new leader has just settled, so it is refused (fencing). A node also says when its
process started: a run recorded on it from before that died with the old process.
"""

from __future__ import annotations

from collections.abc import Iterable

STALE_LEADER = "refused: a newer leader has taken over"
UNREPORTED_GROUPS = 10_000


class NodeCore:
    """Fencing term, launch groups whose end is not yet recorded, and the process start of one
    node."""

    def __init__(self, up_since_ns: int, fence_term: int = 0):
        self.up_since_ns = up_since_ns
        # Kept on disk by the node's driver: a node that restarts while a deposed leader is
        # paused must still refuse it, or that leader could start a launch twice there.
        self.fence_term = fence_term
        self._unreported: dict[int, int] = {}  # group -> runs ended here, not yet recorded

    def admit(self, term: object) -> str | None:
        """None to accept a request of leader `term`, else why it is refused.

        Requests without an integer term (a leader without Raft) are not fenced.
        """
        if not isinstance(term, int) or isinstance(term, bool):
            return None
        if term < self.fence_term:
            return f"{STALE_LEADER}: term {term} is older than {self.fence_term}"
        self.fence_term = term
        return None

    def ended(self, group: int) -> None:
        """A run of `group` ended here; until a server acknowledges its end (`reported`), a new
        leader must leave that launch to this node's report."""
        self._unreported[group] = self._unreported.pop(group, 0) + 1
        while len(self._unreported) > UNREPORTED_GROUPS:
            self._unreported.pop(next(iter(self._unreported)))

    def reported(self, group: int) -> None:
        """A server acknowledged the end of a run of `group` (it is committed): a new leader
        finds it in the store and decides from there (a retry, say)."""
        left = self._unreported.pop(group, 0) - 1
        if left > 0:
            self._unreported[group] = left

    def forget(self) -> None:
        """The process restarted: only the fence term (kept on disk) is remembered."""
        self._unreported.clear()

    def launches(self, running_groups: Iterable[int], running: Iterable[dict] = ()) -> dict:
        """The answer to `agent.launches`: groups running here or whose end is not yet
        recorded, since when this process runs, and the records of the runs going on here (a
        new leader records those whose start was lost with the old one, so that a `forbid` job
        stays busy while they run)."""
        groups = list(dict.fromkeys([*running_groups, *self._unreported]))
        records = [{k: v for k, v in ex.items() if k != "output"} for ex in running]
        return {"groups": groups, "up_since_ns": self.up_since_ns, "running": records}


def report_order(report_to: str, servers: Iterable[str]) -> list[str]:
    """Where to report a run's end: the server that asked first (it most likely still leads),
    then every other server; one of them leads or forwards to the leader."""
    order = [report_to]
    order.extend(s for s in servers if s and s not in order)
    return order
