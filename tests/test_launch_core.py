"""Unit tests of the launch protocol's small pieces: the node's side (`NodeCore`: fencing, what
it tells a new leader), where a node reports a run's end (`report_order`) and the choice of a
stand-in node (`choose_standin`). The leader's scenarios are transcripts
(test_launch_transcripts.py)."""

from __future__ import annotations

import random

import pytest

from dkron_pkg.launch import node as node_module
from dkron_pkg.launch.leader import choose_standin
from dkron_pkg.launch.node import STALE_LEADER, NodeCore, report_order

# ----- NodeCore: fencing ---------------------------------------------------------------------


def test_a_fresh_node_admits_any_term() -> None:
    node = NodeCore(up_since_ns=5)
    assert node.fence_term == 0
    assert node.admit(1) is None
    assert node.fence_term == 1


def test_an_older_term_is_refused_after_a_newer_one() -> None:
    node = NodeCore(up_since_ns=5)
    assert node.admit(3) is None
    refusal = node.admit(2)
    assert refusal is not None
    assert refusal.startswith(STALE_LEADER)
    assert "term 2 is older than 3" in refusal
    assert node.fence_term == 3  # a refusal does not lower the fence


def test_the_same_term_is_admitted_again() -> None:
    node = NodeCore(up_since_ns=5)
    assert node.admit(4) is None
    assert node.admit(4) is None
    assert node.fence_term == 4


def test_a_newer_term_is_admitted_and_raises_the_fence() -> None:
    node = NodeCore(up_since_ns=5)
    node.admit(2)
    assert node.admit(7) is None
    assert node.fence_term == 7
    assert node.admit(5) is not None
    assert node.admit(6) is not None


@pytest.mark.parametrize("term", [None, "3", 2.0, True, False, [3], {"term": 3}])
def test_requests_without_an_integer_term_are_never_fenced(term: object) -> None:
    node = NodeCore(up_since_ns=5)
    node.admit(9)
    assert node.admit(term) is None
    assert node.fence_term == 9  # nor do they move the fence


def test_a_boolean_term_does_not_raise_the_fence() -> None:
    node = NodeCore(up_since_ns=5)
    assert node.admit(True) is None
    assert node.fence_term == 0
    assert node.admit(0) is None  # True is not term 1


# ----- NodeCore: what it tells a new leader --------------------------------------------------


def test_launches_lists_running_then_recent_groups_once_with_the_process_start() -> None:
    node = NodeCore(up_since_ns=123)
    node.ended(10)
    node.ended(11)
    answer = node.launches(running_groups=[12, 11])
    assert answer == {"groups": [12, 11, 10], "up_since_ns": 123, "running": []}


def test_launches_of_an_idle_fresh_node_is_empty() -> None:
    assert NodeCore(up_since_ns=7).launches([]) == {"groups": [], "up_since_ns": 7, "running": []}


def test_launches_accepts_any_iterable_of_running_groups() -> None:
    node = NodeCore(up_since_ns=1)
    assert node.launches(g for g in (3, 3, 4))["groups"] == [3, 4]


def test_a_group_ended_again_moves_to_the_newest_place() -> None:
    node = NodeCore(up_since_ns=1)
    for group in (1, 2, 3):
        node.ended(group)
    node.ended(1)
    assert node.launches([])["groups"] == [2, 3, 1]


def test_unreported_groups_are_bounded_and_forget_the_oldest_first(monkeypatch) -> None:
    monkeypatch.setattr(node_module, "UNREPORTED_GROUPS", 3)
    node = NodeCore(up_since_ns=1)
    for group in range(1, 6):
        node.ended(group)
    assert node.launches([])["groups"] == [3, 4, 5]
    node.ended(3)  # refreshed: now the newest, so 4 is the oldest
    node.ended(6)
    assert node.launches([])["groups"] == [5, 3, 6]


def test_the_default_bound_keeps_ten_thousand_groups() -> None:
    node = NodeCore(up_since_ns=1)
    for group in range(node_module.UNREPORTED_GROUPS + 5):
        node.ended(group)
    groups = node.launches([])["groups"]
    assert len(groups) == node_module.UNREPORTED_GROUPS
    assert groups[0] == 5
    assert groups[-1] == node_module.UNREPORTED_GROUPS + 4


def test_a_reported_end_is_left_to_the_store() -> None:
    """Once a server acknowledged a run's end it is committed: a new leader must judge the
    launch from the store (a pending retry, say), not leave it to this node."""
    node = NodeCore(up_since_ns=1)
    node.ended(7)
    node.ended(8)
    node.reported(7)
    assert node.launches([9])["groups"] == [9, 8]
    node.reported(8)
    node.reported(8)  # a second acknowledgement of the same end changes nothing
    assert node.launches([])["groups"] == []


def test_two_runs_of_one_group_stay_known_until_both_are_reported() -> None:
    """A retry on the same node ends a second run of the group before the first report is
    acknowledged: the group stays known until both are."""
    node = NodeCore(up_since_ns=1)
    node.ended(5)
    node.ended(5)
    node.reported(5)
    assert node.launches([])["groups"] == [5]
    node.reported(5)
    assert node.launches([])["groups"] == []


def test_a_restart_forgets_the_runs_but_keeps_the_fence() -> None:
    """A deposed leader paused across the node's restart must still be refused."""
    node = NodeCore(up_since_ns=1)
    node.admit(8)
    node.ended(42)
    node.forget()
    assert node.launches([]) == {"groups": [], "up_since_ns": 1, "running": []}
    assert node.fence_term == 8
    assert node.admit(2) is not None
    assert NodeCore(up_since_ns=2, fence_term=8).admit(7) is not None  # read back from disk


def test_a_new_process_reports_its_own_start() -> None:
    old = NodeCore(up_since_ns=100)
    old.ended(1)
    new = NodeCore(up_since_ns=200)
    assert new.launches([]) == {"groups": [], "up_since_ns": 200, "running": []}


# ----- report_order -----------------------------------------------------------------------------


def test_report_goes_first_to_the_server_that_asked_then_to_every_other_once() -> None:
    assert report_order("s2", ["s1", "s2", "s3"]) == ["s2", "s1", "s3"]


def test_report_order_skips_empty_and_repeated_servers() -> None:
    assert report_order("s1", ["", "s2", "s1", "s2", "s3", ""]) == ["s1", "s2", "s3"]


def test_report_order_keeps_an_asker_that_is_not_a_known_server() -> None:
    assert report_order("10.0.0.9:6868", ["s1"]) == ["10.0.0.9:6868", "s1"]


def test_report_order_with_no_other_servers() -> None:
    assert report_order("s1", []) == ["s1"]


# ----- choose_standin ---------------------------------------------------------------------------


def member(name: str, status: str = "alive", **tags: str) -> dict:
    return {"Name": name, "Tags": {"rpc_addr": name, **tags}, "statusText": status}


AGENTS = [member(f"a{i}", role="agent") for i in range(1, 5)] + [member("b1", role="other")]


def job(tags: dict | None) -> dict:
    return {"name": "backup", "tags": tags}


def test_a_job_without_a_count_has_no_standin() -> None:
    assert choose_standin(job(None), AGENTS, {"a1"}, "global", random.Random(0)) is None
    assert choose_standin(job({}), AGENTS, {"a1"}, "global", random.Random(0)) is None
    tags = {"role": "agent"}
    assert choose_standin(job(tags), AGENTS, {"a1"}, "global", random.Random(0)) is None


def test_a_standin_is_eligible_and_not_in_the_launch() -> None:
    tags = {"role": "agent:1"}
    for seed in range(50):
        chosen = choose_standin(job(tags), AGENTS, {"a1", "a3"}, "global", random.Random(seed))
        assert chosen is not None
        assert chosen["Name"] in {"a2", "a4"}


def test_every_eligible_node_outside_the_launch_can_stand_in() -> None:
    tags = {"role": "agent:1"}
    seen = {
        choose_standin(job(tags), AGENTS, {"a1"}, "global", random.Random(seed))["Name"]
        for seed in range(100)
    }
    assert seen == {"a2", "a3", "a4"}


def test_no_standin_when_every_eligible_node_has_the_launch() -> None:
    tags = {"role": "agent:2"}
    two = [member("a1", role="agent"), member("a2", role="agent"), member("s1")]
    assert choose_standin(job(tags), two, {"a1", "a2"}, "global", random.Random(0)) is None


def test_a_standin_must_be_alive_and_in_the_region() -> None:
    tags = {"role": "agent:1"}
    others = [
        member("a2", "failed", role="agent"),
        member("a3", role="agent", region="eu"),
        member("a4", "left", role="agent"),
    ]
    assert choose_standin(job(tags), others, {"a1"}, "global", random.Random(0)) is None
    chosen = choose_standin(job(tags), others, {"a1"}, "eu", random.Random(0))
    assert chosen is not None and chosen["Name"] == "a3"


def test_a_count_of_zero_or_garbage_has_no_standin() -> None:
    for tags in ({"role": "agent:0"}, {"role": "agent:x"}):
        assert choose_standin(job(tags), AGENTS, {"a1"}, "global", random.Random(0)) is None


def test_standin_choice_is_deterministic_for_a_seed() -> None:
    tags = {"role": "agent:1"}
    first = choose_standin(job(tags), AGENTS, {"a1"}, "global", random.Random(7))
    again = choose_standin(job(tags), AGENTS, {"a1"}, "global", random.Random(7))
    assert first == again


def test_the_answer_carries_the_running_records_without_their_output() -> None:
    """A new leader records runs whose start was lost; their output stays on the node."""
    node = NodeCore(up_since_ns=1)
    running = [{"id": "e1", "group": 4, "job_name": "j", "output": "x" * 1000}]
    answer = node.launches([4], running)
    assert answer["running"] == [{"id": "e1", "group": 4, "job_name": "j"}]
    assert running[0]["output"]  # the node's own record is untouched
