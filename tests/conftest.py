"""Tests that start clusters of real agent processes run in two lanes: at most two such
clusters share the machine at once, each lane on its own worker, while the other workers run
the simulations and unit tests beside them. Several clusters starting together on two cores
starve each other's timers (elections, gossip probes) and wait for much longer than they work.
"""

from __future__ import annotations

import pytest

# Module -> lane; the lanes hold about the same minutes of real-process tests.
CLUSTER_LANES = {
    "test_chaos": "cluster-a",
    "test_cluster_runs": "cluster-a",
    "test_cluster_problems": "cluster-a",
    "test_linearizable_reads_cluster": "cluster-a",
    "test_rpc_tls": "cluster-a",
    "test_cluster_grow": "cluster-a",
    "test_cluster_raft": "cluster-b",
    "test_agent_process": "cluster-b",
    "test_cluster_membership": "cluster-b",
    "test_cluster_cleanup": "cluster-b",
    "test_cluster_key": "cluster-b",
    "test_cluster_under_forgery": "cluster-b",
    "test_rpc_auth": "cluster-b",
}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        lane = CLUSTER_LANES.get(module.__name__.rsplit(".", 1)[-1]) if module else None
        if lane is not None:
            item.add_marker(pytest.mark.xdist_group(lane))
