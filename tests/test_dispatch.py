"""Target selection by a job's tags, as Dkron does it, and what malformed stored tags do."""

from __future__ import annotations

import random

import pytest

from dkron_pkg.dispatch import TargetError, parse_job_tags, select_targets

MEMBERS = [
    {"Name": f"a{i}", "statusText": "alive", "Tags": {"role": "agent", "region": "global"}}
    for i in range(1, 4)
] + [{"Name": "s1", "statusText": "alive", "Tags": {"role": "server", "region": "global"}}]


def names(targets: list[dict]) -> list[str]:
    return sorted(t["Name"] for t in targets)


def test_no_tags_select_every_live_node():
    assert names(select_targets("j", None, MEMBERS, "global", random.Random(1))) == [
        "a1",
        "a2",
        "a3",
        "s1",
    ]


def test_a_count_limits_the_nodes_chosen_among_those_matching():
    chosen = select_targets("j", {"role": "agent:2"}, MEMBERS, "global", random.Random(1))
    assert len(chosen) == 2 and set(names(chosen)) <= {"a1", "a2", "a3"}
    assert parse_job_tags({"role": "agent:2", "zone": "x:1"}) == ({"role": "agent", "zone": "x"}, 1)


@pytest.mark.parametrize("tags", [["role", "agent"], "role=agent", {"role": 5}, {"role": None}])
def test_malformed_stored_tags_select_no_node_rather_than_every_node(tags):
    # A job stored by an older version with tags of the wrong type must not widen to every
    # node, nor break the launch round with an exception other than TargetError.
    assert parse_job_tags(tags)[1] == 0
    with pytest.raises(TargetError):
        select_targets("j", tags, MEMBERS, "global", random.Random(1))
