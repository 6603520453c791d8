"""The devnet story waits (bounded) for the node it reads through to catch up.

node0 answers a submission once it has committed the block; node1 commits the
same block a moment later. The story reads the study back through node1 (and a
receipt through node2) only once that node's height has reached the block.
The whole story on a real network is in test_registry_network.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from node.client import RpcError
from node.story import StoryError, wait_for_height


class FakeTime:
    """A clock that advances only when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def heights(*values: int | Exception) -> Callable[[], int]:
    """A height reader that answers ``values`` in turn (raising the exceptions), then the last."""
    answers = list(values)

    def read() -> int:
        value = answers.pop(0) if len(answers) > 1 else answers[0]
        if isinstance(value, Exception):
            raise value
        return value

    return read


def test_it_returns_at_once_when_the_node_is_there() -> None:
    fake = FakeTime()
    reached = wait_for_height(heights(9), 7, "node1", clock=fake.clock, sleep=fake.sleep)
    assert reached == 9
    assert fake.sleeps == []


def test_it_waits_for_a_node_that_lags_and_retries_a_busy_one() -> None:
    fake = FakeTime()
    busy = RpcError(503, "unavailable", "catching up")
    read = heights(5, busy, 6, 7)
    reached = wait_for_height(
        read,
        7,
        "node1",
        clock=fake.clock,
        sleep=fake.sleep,
    )
    assert reached == 7
    assert len(fake.sleeps) == 3


def test_it_gives_up_after_the_timeout_naming_the_node_and_heights() -> None:
    fake = FakeTime()
    with pytest.raises(StoryError) as caught:
        wait_for_height(
            heights(4),
            7,
            "node1",
            timeout_s=2.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
    assert str(caught.value) == "node1 did not reach height 7 within 2 s (is at height 4)"
    assert 1.9 <= fake.now <= 2.3  # bounded: it stopped at the deadline


def test_a_node_that_never_answers_is_reported_as_such() -> None:
    fake = FakeTime()
    with pytest.raises(StoryError, match=r"node2 did not reach height 3 within 1 s \(did not"):
        wait_for_height(
            heights(RpcError(0, "unreachable", "no node")),
            3,
            "node2",
            timeout_s=1.0,
            clock=fake.clock,
            sleep=fake.sleep,
        )
