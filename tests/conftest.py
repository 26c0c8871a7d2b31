"""The modules with the longest tests (real-process clusters, simulation sweeps) start first:
the workers then end together, the short tests filling the gaps, instead of one long test
starting last and the others waiting for it."""

from __future__ import annotations

import pytest

LONGEST_FIRST = (
    "test_chaos",
    "test_cluster_membership",
    "test_cluster_runs",
    "test_cluster_cleanup",
    "test_launch_sim",
    "test_read_index_sim",
    "test_swim_sim",
    "test_agent_process",
    "test_cluster_raft",
    "test_cluster_problems",
    "test_linearizable_reads_cluster",
    "test_rpc_tls",
    "test_cluster_grow",
    "test_raft_sim",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}

    def module_rank(item: pytest.Item) -> int:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        return rank.get(name, len(LONGEST_FIRST))

    items.sort(key=module_rank)  # stable: each module keeps its own order
