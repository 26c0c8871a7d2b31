"""Applying an import plan all-or-nothing over separate HTTP calls.

Each write is remembered with how to undo it. If one fails, the writes already made are undone
in reverse order (created jobs deleted, updated and deleted jobs re-posted as they were), and the
outcome says whether that rollback itself succeeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from crontab_compat.plan import Plan, user_fields


class JobWriter(Protocol):
    def put_job(self, job: dict) -> None: ...

    def delete_job(self, name: str) -> None: ...


@dataclass
class ApplyResult:
    ok: bool
    applied: int = 0
    failure: str = ""
    rolled_back: bool = False
    rollback_errors: list[str] = field(default_factory=list)

    def message(self) -> str:
        if self.ok:
            return f"applied {self.applied} change(s)"
        text = f"import failed after {self.applied} change(s): {self.failure}"
        if self.rolled_back:
            return text + "; every change made was rolled back"
        return text + "; rollback incomplete: " + "; ".join(self.rollback_errors)


def apply_plan(plan: Plan, client: JobWriter) -> ApplyResult:
    """Write the plan's changes; on the first failure undo what was written."""
    if plan.blocked:
        return ApplyResult(False, failure="the plan has errors and strict mode is on")
    undo: list[tuple[str, Callable[[], None]]] = []
    steps: list[tuple[str, Callable[[], None], tuple[str, Callable[[], None]]]] = []
    for job in plan.create:
        name = job["name"]
        steps.append(
            (f"create {name}", _put(client, job), (f"delete {name}", _delete(client, name)))
        )
    for job in plan.update:
        old = user_fields(plan.previous[job["name"]])
        steps.append(
            (
                f"update {job['name']}",
                _put(client, job),
                (f"restore {old['name']}", _put(client, old)),
            )
        )
    for job in plan.delete:
        old = user_fields(job)
        steps.append(
            (
                f"delete {old['name']}",
                _delete(client, old["name"]),
                (f"re-create {old['name']}", _put(client, old)),
            )
        )
    for label, action, reverse in steps:
        try:
            action()
        except Exception as exc:  # noqa: BLE001 - any failure must trigger the rollback
            result = ApplyResult(False, applied=len(undo), failure=f"{label}: {exc}")
            for undo_label, undo_action in reversed(undo):
                try:
                    undo_action()
                except Exception as undo_exc:  # noqa: BLE001
                    result.rollback_errors.append(f"{undo_label}: {undo_exc}")
            result.rolled_back = not result.rollback_errors
            return result
        undo.append(reverse)
    return ApplyResult(True, applied=len(undo))


def _put(client: JobWriter, job: dict) -> Callable[[], None]:
    return lambda: client.put_job(job)


def _delete(client: JobWriter, name: str) -> Callable[[], None]:
    return lambda: client.delete_job(name)
