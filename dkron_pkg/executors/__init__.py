"""Job executors by name (the job's `executor` field)."""

from __future__ import annotations

from dkron_pkg.executors.base import OUTPUT_LIMIT, ExecResult, Executor, OutputTail
from dkron_pkg.executors.http import HttpExecutor
from dkron_pkg.executors.shell import ShellExecutor

_EXECUTORS: dict[str, Executor] = {"shell": ShellExecutor(), "http": HttpExecutor()}

__all__ = ["OUTPUT_LIMIT", "ExecResult", "Executor", "OutputTail", "get_executor", "names"]


def get_executor(name: str) -> Executor | None:
    """The executor called `name`, or None when there is no such executor."""
    return _EXECUTORS.get(name)


def names() -> list[str]:
    """Known executor names, for error messages listing the choices."""
    return sorted(_EXECUTORS)
