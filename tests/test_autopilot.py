"""The leader's membership decisions (dkron_pkg.autopilot): who is added, promoted, removed."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from dkron_pkg.autopilot import (
    Action,
    Server,
    caught_up,
    expect_disagreements,
    plan,
    quorum,
)


def servers(**status: str) -> dict[str, Server]:
    return {
        name: Server(name, s, f"127.0.0.1:{6000 + i}") for i, (name, s) in enumerate(status.items())
    }


def ops(actions: list[Action]) -> list[tuple[str, str]]:
    return [(a.op, a.name) for a in actions]


def test_a_new_alive_server_is_added_as_a_learner_first() -> None:
    seen = servers(a="alive", b="alive", c="failed")
    actions = plan("a", ["a"], [], seen, {}, [], now=0, cleanup_after=300)
    assert ops(actions) == [("add_learner", "b")]
    assert actions[0].rpc_addr == seen["b"].rpc_addr
    no_addr = {**seen, "b": Server("b", "alive", "")}
    assert plan("a", ["a"], [], no_addr, {}, [], now=0, cleanup_after=300) == []


def test_a_caught_up_learner_is_promoted_one_per_round_up_to_the_cap() -> None:
    seen = servers(a="alive", b="alive", c="alive")
    actions = plan("a", ["a"], ["b", "c"], seen, {}, ["b", "c"], now=0, cleanup_after=300)
    assert ops(actions) == [("promote", "b")]
    assert plan("a", ["a"], ["b", "c"], seen, {}, [], now=0, cleanup_after=300) == []
    capped = plan("a", ["a", "c"], ["b"], seen, {}, ["b"], 0, 300, max_voters=2)
    assert capped == []  # beyond the cap: stays a learner, which still replicates


def test_a_member_that_left_is_removed_at_once_but_never_the_leader() -> None:
    seen = servers(a="left", b="left", c="alive")
    actions = plan("a", ["a", "b", "c"], [], seen, {"b": 0.0}, [], now=1, cleanup_after=300)
    assert ops(actions) == [("remove", "b")]


def test_a_dead_voter_is_removed_after_the_delay_while_a_quorum_remains() -> None:
    seen = servers(a="alive", b="alive", c="failed")
    down = {"c": 100.0}
    assert plan("a", ["a", "b", "c"], [], seen, down, [], now=399, cleanup_after=300) == []
    actions = plan("a", ["a", "b", "c"], [], seen, down, [], now=400, cleanup_after=300)
    assert ops(actions) == [("remove", "c")]
    assert plan("a", ["a", "b", "c"], [], seen, down, [], now=10**6, cleanup_after=0) == []


def test_no_dead_voter_is_removed_when_the_rest_would_not_make_a_quorum() -> None:
    seen = servers(a="alive", b="failed", c="failed")
    down = {"b": 0.0, "c": 0.0}
    assert plan("a", ["a", "b", "c"], [], seen, down, [], now=1000, cleanup_after=10) == []
    five = servers(a="alive", b="alive", c="alive", d="failed", e="failed")
    actions = plan("a", list(five), [], five, {"d": 0.0, "e": 0.0}, [], 1000, 10)
    assert ops(actions) == [("remove", "d")]  # one per round; e next round (3 of 4 alive)


def test_a_voter_unknown_to_gossip_counts_as_down_and_a_dead_learner_goes_too() -> None:
    seen = servers(a="alive", b="alive")  # c is not in gossip at all (reaped, or forged once)
    actions = plan("a", ["a", "b", "c"], [], seen, {"c": 0.0}, [], now=20, cleanup_after=10)
    assert ops(actions) == [("remove", "c")]
    seen = servers(a="alive", l1="failed")
    actions = plan("a", ["a"], ["l1"], seen, {"l1": 0.0}, [], now=20, cleanup_after=10)
    assert ops(actions) == [("remove", "l1")]


def test_caught_up_and_expect_disagreements() -> None:
    assert caught_up(90, 100) and not caught_up(0, 5) and not caught_up(1, 1000)
    assert expect_disagreements(3, {"s1": 1, "s2": 3, "s3": 0}) == {"s1": 1}
    assert expect_disagreements(0, {"s1": 1}) == {}


names = st.sampled_from(["a", "b", "c", "d", "e", "f", "g"])
statuses = st.sampled_from(["alive", "alive", "failed", "left", "leaving"])


@given(
    st.sets(names, min_size=1, max_size=7),
    st.sets(names, max_size=4),
    st.dictionaries(names, statuses),
    st.dictionaries(names, st.floats(0, 100)),
    st.sets(names),
    st.integers(1, 7),
)
def test_plans_keep_a_quorum_and_the_leader(voters, learners, status, down, ready, cap) -> None:
    leader = min(voters)
    learners -= voters
    status[leader] = "alive"
    seen = {n: Server(n, s, f"h:{i}") for i, (n, s) in enumerate(sorted(status.items()))}
    actions = plan(leader, voters, learners, seen, down, ready, 200.0, 50.0, cap)
    assert all(a.name != leader for a in actions if a.op == "remove")
    assert sum(a.op == "promote" for a in actions) <= 1
    dead = [a for a in actions if a.op == "remove" and a.reason.startswith("down")]
    assert len(dead) <= 1
    left = {a.name for a in actions if a.op == "remove"}
    remaining = voters - left
    alive = {v for v in remaining if v == leader or (v in seen and seen[v].status == "alive")}
    if any(a.name in voters for a in dead):
        assert len(alive) >= quorum(len(remaining))
    for a in actions:
        if a.op == "promote":
            assert a.name in learners and len(remaining) < cap
        if a.op == "add_learner":
            assert a.name not in voters | learners and seen[a.name].status == "alive"


def test_clean_up_delay_and_voter_cap_settings() -> None:
    import pytest

    from dkron_pkg.config import ConfigError, load_config

    cfg = load_config({}, {}, None, search_dirs=[])
    assert (cfg.dead_server_cleanup, cfg.raft_max_voters) == ("5m", 5)
    assert cfg.seconds("dead_server_cleanup") == 300
    env = {"DKRON_DEAD_SERVER_CLEANUP": "90s", "DKRON_RAFT_MAX_VOTERS": "3"}
    cfg = load_config({}, env, None, search_dirs=[])
    assert (cfg.seconds("dead_server_cleanup"), cfg.raft_max_voters) == (90, 3)
    cfg = load_config({"dead-server-cleanup": "0"}, {}, None, search_dirs=[])
    assert cfg.seconds("dead_server_cleanup") == 0  # never
    with pytest.raises(ConfigError, match="raft-max-voters.*from 1 to 9, got 10"):
        load_config({"raft-max-voters": "10"}, {}, None, search_dirs=[])
    with pytest.raises(ConfigError, match="dead-server-cleanup"):
        load_config({"dead-server-cleanup": "soon"}, {}, None, search_dirs=[])
