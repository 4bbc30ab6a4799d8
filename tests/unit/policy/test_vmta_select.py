from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from outrider.policy.vmta_select import PoolCursor, select_vmta


def pick(**overrides: object) -> str:
    args: dict[str, object] = {
        "header_value": "from-header",
        "listener_allows_header": True,
        "listener_default": "listener",
        "sender_domain_default": "sender",
        "server_default": "server",
    }
    args.update(overrides)
    return select_vmta(**args)  # type: ignore[arg-type]


def test_selection_order() -> None:
    assert pick() == "from-header"
    assert pick(listener_allows_header=False) == "listener"
    assert pick(header_value=None) == "listener"
    assert pick(header_value=None, listener_default=None) == "sender"
    assert pick(header_value=None, listener_default=None, sender_domain_default=None) == "server"


def test_header_is_stripped_and_blank_values_do_not_apply() -> None:
    assert pick(header_value="  vmta-1 \t") == "vmta-1"
    assert pick(header_value="   ") == "listener"
    assert pick(header_value="", listener_default=" ") == "sender"
    assert pick(header_value=None, listener_default="", sender_domain_default="") == "server"


def test_weighted_2_to_1_is_exact_and_interleaved() -> None:
    cursor = PoolCursor(["a", "b"], [2, 1])
    picks = [cursor.next() for _ in range(300)]
    assert Counter(picks) == {"a": 200, "b": 100}
    assert picks[:6] == ["a", "b", "a", "a", "b", "a"]
    assert "aaa" not in "".join(p or "" for p in picks)
    assert "bb" not in "".join(p or "" for p in picks)


def test_nginx_sequence_5_1_1() -> None:
    cursor = PoolCursor(["a", "b", "c"], [5, 1, 1])
    assert [cursor.next() for _ in range(7)] == ["a", "a", "b", "a", "c", "a", "a"]


def test_unweighted_is_plain_round_robin() -> None:
    cursor = PoolCursor(["x", "y", "z"])
    assert [cursor.next() for _ in range(6)] == ["x", "y", "z", "x", "y", "z"]


def test_exclusion() -> None:
    cursor = PoolCursor(["a", "b", "c"], [1, 1, 1])
    picks = [cursor.next(exclude={"b"}) for _ in range(10)]
    assert set(picks) == {"a", "c"}
    assert Counter(picks) == {"a": 5, "c": 5}
    assert cursor.next(exclude=["a", "b", "c"]) is None


def test_a_member_back_from_exclusion_has_neither_credit_nor_debt() -> None:
    """Excluded once, "b" comes back with the neutral credit of a fresh member: it is not
    rushed ahead (no burst), and it is not sent behind "a", which was picked meanwhile."""
    cursor = PoolCursor(["a", "b", "c"])
    assert cursor.next(exclude={"b"}) == "a"
    assert [cursor.next() for _ in range(4)] == ["c", "b", "a", "c"]


def test_empty_pool() -> None:
    assert PoolCursor([]).next() is None


@pytest.mark.parametrize(
    ("members", "weights"), [(["a", "b"], [1]), (["a", "a"], None), (["a"], [0])]
)
def test_invalid_pools(members: list[str], weights: list[int] | None) -> None:
    with pytest.raises(ValueError):
        PoolCursor(members, weights)


@settings(max_examples=100, deadline=None)
@given(
    weights=st.lists(st.integers(1, 10), min_size=1, max_size=6),
    rounds=st.integers(1, 5),
    excluded=st.sets(st.integers(0, 5)),
)
def test_each_cycle_matches_the_weights(
    weights: list[int], rounds: int, excluded: set[int]
) -> None:
    members = [f"m{i}" for i in range(len(weights))]
    exclude = {members[i] for i in excluded if i < len(members)}
    live = [m for m in members if m not in exclude]
    cursor = PoolCursor(members, weights)
    if not live:
        assert cursor.next(exclude=exclude) is None
        return
    cycle = sum(w for m, w in zip(members, weights, strict=True) if m not in exclude)
    picks = [cursor.next(exclude=exclude) for _ in range(cycle * rounds)]
    counts = Counter(picks)
    for m, w in zip(members, weights, strict=True):
        assert counts[m] == (0 if m in exclude else w * rounds)
