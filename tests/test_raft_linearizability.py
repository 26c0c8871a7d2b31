"""The linearizability checker accepts linearizable KV histories and rejects known bad ones."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st
from linearizability import CAS, GET, PUT, Op, check_kv


def op(kind, key="k", value=None, expected=None, output=None, call=0.0, ret=None, client=0):
    return Op(client, kind, key, value, expected, output, call, ret)


def test_sequential_history_is_linearizable() -> None:
    history = [
        op(PUT, value="a", call=0, ret=1),
        op(GET, output="a", call=2, ret=3),
        op(CAS, value="b", expected="a", output=True, call=4, ret=5),
        op(GET, output="b", call=6, ret=7),
        op(CAS, value="c", expected="a", output=False, call=8, ret=9),
    ]
    assert check_kv(history).ok


def test_stale_read_after_a_completed_write_is_rejected() -> None:
    history = [
        op(PUT, value="a", call=0, ret=1, client=1),
        op(PUT, value="b", call=2, ret=3, client=1),
        op(GET, output="a", call=4, ret=5, client=2),
    ]
    result = check_kv(history)
    assert not result.ok and result.bad_key == "k"


def test_concurrent_write_may_be_seen_or_not() -> None:
    for seen in ("a", "b"):
        history = [
            op(PUT, value="a", call=0, ret=1, client=1),
            op(PUT, value="b", call=2, ret=10, client=1),
            op(GET, output=seen, call=3, ret=4, client=2),
        ]
        assert check_kv(history).ok


def test_reads_cannot_flip_back_and_forth() -> None:
    """Two readers disagree on order of two concurrent writes: not linearizable."""
    history = [
        op(PUT, value="a", call=0, ret=10, client=1),
        op(PUT, value="b", call=0, ret=10, client=2),
        op(GET, output="a", call=1, ret=2, client=3),
        op(GET, output="b", call=3, ret=4, client=3),
        op(GET, output="a", call=5, ret=6, client=3),
    ]
    assert not check_kv(history).ok


def test_cas_success_twice_on_the_same_expected_value_is_rejected() -> None:
    history = [
        op(PUT, value="x", call=0, ret=1),
        op(CAS, value="y", expected="x", output=True, call=2, ret=5, client=1),
        op(CAS, value="z", expected="x", output=True, call=2, ret=5, client=2),
    ]
    assert not check_kv(history).ok


def test_pending_write_may_take_effect_later_or_never() -> None:
    pending = op(PUT, value="late", call=1, ret=None, client=9)
    seen_later = [pending, op(GET, output="late", call=50, ret=51)]
    never_seen = [pending, op(GET, output=None, call=50, ret=51)]
    assert check_kv(seen_later).ok
    assert check_kv(never_seen).ok
    before_call = [op(GET, output="late", call=0, ret=0.5), pending]
    assert not check_kv(before_call).ok


def test_keys_are_independent() -> None:
    history = [
        op(PUT, key="a", value=1, call=0, ret=1),
        op(GET, key="b", output=None, call=2, ret=3),
        op(GET, key="a", output=1, call=2, ret=3),
    ]
    assert check_kv(history).ok
    bad = history + [op(GET, key="b", output=1, call=4, ret=5)]
    assert check_kv(bad).bad_key == "b"


def random_register_history(rng: random.Random, clients: int, ops: int) -> list[Op]:
    """A real register driven by concurrent clients: linearizable by construction."""
    value = None
    history = []
    busy = []  # (ret time, op without output, effect time)
    t = 0.0
    for i in range(ops):
        t += rng.random()
        kind = rng.choice((PUT, GET, CAS))
        start = t
        effect = start + rng.random() * 2
        end = effect + rng.random() * 2
        busy.append((effect, i, kind, start, end, rng.choice((None, "v1", "v2", f"v{i}"))))
    for effect, i, kind, start, end, arg in sorted(busy):
        client = i % clients
        if kind == PUT:
            value = f"w{i}"
            history.append(op(PUT, value=value, call=start, ret=end, client=client))
        elif kind == GET:
            history.append(op(GET, output=value, call=start, ret=end, client=client))
        else:
            matched = value == arg
            new = f"c{i}"
            if matched:
                value = new
            history.append(
                op(CAS, value=new, expected=arg, output=matched, call=start, ret=end, client=client)
            )
    return history


@given(st.integers(min_value=0, max_value=10**6))
@settings(max_examples=60, deadline=None)
def test_histories_of_a_real_register_are_accepted(seed: int) -> None:
    history = random_register_history(random.Random(seed), clients=4, ops=60)
    assert check_kv(history).ok


@given(st.integers(min_value=0, max_value=10**6))
@settings(max_examples=60, deadline=None)
def test_a_read_moved_after_a_later_write_is_rejected(seed: int) -> None:
    """Corrupt a correct history: a read returns the value from before a write that
    completed entirely before the read began."""
    rng = random.Random(seed)
    history = random_register_history(rng, clients=3, ops=30)
    history.append(op(PUT, value="old", call=1000, ret=1001))
    history.append(op(PUT, value="new", call=1002, ret=1003))
    history.append(op(GET, output="old", call=1004, ret=1005))
    assert not check_kv(history).ok
