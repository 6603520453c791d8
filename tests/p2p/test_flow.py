"""Send queues, rate limits, scores, caches and backoff (p2p/flow.py), sans I/O."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.flow import (
    ITEM_OVERHEAD_BYTES,
    BoundedSet,
    Outgoing,
    PeerQueues,
    RateLimit,
    Score,
    TokenBucket,
    backoff_ms,
)
from p2p.frames import Kind


def queues(msgs: int = 10, size: int = 10_000) -> PeerQueues:
    return PeerQueues({kind: (msgs, size) for kind in Kind})


def item(label: str, size: int = 10, tx_hash: bytes = b"") -> Outgoing:
    return Outgoing(label, bytes(size), tx_hash)


def labels(batch: list[tuple[Kind, Outgoing]]) -> list[str]:
    return [it.label for _, it in batch]


def test_consensus_goes_before_sync_before_tx() -> None:
    q = queues()
    q.push(Kind.TX, item("t1"), 0)
    q.push(Kind.SYNC, item("s1"), 0)
    q.push(Kind.CONSENSUS, item("c1"), 0)
    q.push(Kind.TX, item("t2"), 0)
    q.push(Kind.CONSENSUS, item("c2"), 0)
    batch, skipped = q.take_batch(10_000)
    assert labels(batch) == ["c1", "c2", "s1", "t1", "t2"]
    assert skipped == 0
    assert len(q) == 0


def test_batches_respect_the_byte_budget() -> None:
    q = queues(msgs=100)
    for i in range(10):
        q.push(Kind.TX, item(f"t{i}", 100), 0)
    per_item = 100 + ITEM_OVERHEAD_BYTES
    batch, _ = q.take_batch(3 * per_item)
    assert labels(batch) == ["t0", "t1", "t2"]
    batch, _ = q.take_batch(3 * per_item + 1)
    assert labels(batch) == ["t3", "t4", "t5"]


def test_a_message_larger_than_the_budget_travels_alone() -> None:
    q = queues(size=100_000)
    q.push(Kind.CONSENSUS, item("small", 10), 0)
    q.push(Kind.CONSENSUS, item("big", 50_000), 0)
    q.push(Kind.CONSENSUS, item("after", 10), 0)
    assert labels(q.take_batch(1000)[0]) == ["small"]
    assert labels(q.take_batch(1000)[0]) == ["big"]
    assert labels(q.take_batch(1000)[0]) == ["after"]


def test_full_queue_refuses_by_count_and_by_bytes() -> None:
    q = queues(msgs=2, size=25)
    assert q.push(Kind.TX, item("a", 10), 0)
    assert q.push(Kind.TX, item("b", 10), 0)
    assert not q.push(Kind.TX, item("c", 1), 5)  # count
    assert q.congested_since_ms is None  # transactions are droppable: no congestion
    assert q.push(Kind.SYNC, item("s", 20), 6)
    assert not q.push(Kind.SYNC, item("s2", 6), 7)  # bytes: 20 + 6 > 25
    assert q.depth(Kind.TX) == (2, 20)
    assert q.depth(Kind.SYNC) == (1, 20)
    assert q.congested_since_ms == 7  # the first refusal of an urgent kind


def test_congestion_clears_only_below_half() -> None:
    q = queues(msgs=4)
    for i in range(4):
        q.push(Kind.CONSENSUS, item(f"c{i}"), 0)
    assert not q.push(Kind.CONSENSUS, item("x"), 100)
    assert q.congested_since_ms == 100
    q.take_batch(1 + ITEM_OVERHEAD_BYTES)  # one left the queue: 3 of 4 is not below half
    assert q.congested_since_ms == 100
    q.take_batch(1 + ITEM_OVERHEAD_BYTES)  # 2 of 4: half, no longer over
    assert q.congested_since_ms is None


def test_a_full_transaction_queue_never_makes_a_peer_congested() -> None:
    """A peer that reads votes but not every transaction is slow, not stuck."""
    q = queues(msgs=2)
    for i in range(10):
        q.push(Kind.TX, item(f"t{i}"), i)
    assert q.depth(Kind.TX) == (2, 20)
    assert q.congested_since_ms is None


def test_known_transactions_are_skipped_at_send_time() -> None:
    q = queues()
    q.push(Kind.TX, item("t1", tx_hash=b"h1"), 0)
    q.push(Kind.TX, item("t2", tx_hash=b"h2"), 0)
    q.push(Kind.CONSENSUS, item("c"), 0)
    batch, skipped = q.take_batch(10_000, skip=lambda it: it.tx_hash == b"h1")
    assert labels(batch) == ["c", "t2"]
    assert skipped == 1


def test_clear_empties_everything() -> None:
    q = queues(msgs=1)
    q.push(Kind.TX, item("a"), 0)
    q.push(Kind.TX, item("b"), 3)
    q.push(Kind.CONSENSUS, item("c"), 0)
    assert q.clear() == 2
    assert len(q) == 0
    assert q.congested_since_ms is None
    assert q.depth(Kind.TX) == (0, 0)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from(list(Kind)), st.integers(0, 3000)), min_size=1, max_size=60),
    st.integers(64, 8192),
)
def test_draining_preserves_per_kind_order_and_loses_nothing(
    pushes: list[tuple[Kind, int]], budget: int
) -> None:
    q = PeerQueues({kind: (1000, 10**9) for kind in Kind})
    for n, (kind, size) in enumerate(pushes):
        assert q.push(kind, item(f"{kind.name}:{n}", size), 0)
    out: list[tuple[Kind, Outgoing]] = []
    while len(q):
        batch, _ = q.take_batch(budget)
        assert batch
        used = sum(len(it.payload) + ITEM_OVERHEAD_BYTES for _, it in batch)
        assert used <= budget or len(batch) == 1
        out.extend(batch)
    for kind in Kind:
        sent = [it.label for k, it in out if k is kind]
        assert sent == [f"{k.name}:{n}" for n, (k, _) in enumerate(pushes) if k is kind]


def test_token_bucket_allows_bursts_then_the_rate() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now_ms=0)
    assert all(bucket.take(1, 0) for _ in range(5))
    assert not bucket.take(1, 0)
    assert not bucket.take(1, 99)
    assert bucket.take(1, 100)  # 10/s: one token per 100 ms
    assert bucket.available(10_000) == 5  # never above the burst


def test_token_bucket_ignores_a_clock_going_backwards() -> None:
    bucket = TokenBucket(rate_per_s=1000, burst=10, now_ms=1000)
    assert bucket.take(10, 1000)
    assert not bucket.take(1, 0)
    assert bucket.available(1001) == pytest.approx(1)


def test_rate_limit_needs_both_messages_and_bytes() -> None:
    limit = RateLimit(msgs_per_s=1, burst_msgs=3, bytes_per_s=1, burst_bytes=100, now_ms=0)
    assert limit.allow(60, 0)
    assert not limit.allow(60, 0)  # bytes exhausted; the message token is not spent
    assert limit.allow(40, 0)
    assert limit.allow(0, 0)  # the third message of the burst
    assert not limit.allow(0, 0)  # messages exhausted, even for an empty one
    assert limit.allow(0, 1000)  # a second later, one more


def test_score_accumulates_and_decays() -> None:
    score = Score(decay_per_s=10)
    assert score.add(50, 0) == 50
    assert score.add(20, 1000) == pytest.approx(60)  # 50 - 10 + 20
    assert score.value(10_000) == 0
    score.add(5, 10_000)
    score.reset()
    assert score.value(10_001) == 0


def test_bounded_set_forgets_the_oldest() -> None:
    seen = BoundedSet(3)
    assert seen.add(b"a")
    assert seen.add(b"b")
    assert seen.add(b"c")
    assert not seen.add(b"a")
    assert seen.add(b"d")
    assert b"a" not in seen
    assert list(seen) == [b"b", b"c", b"d"]
    assert len(seen) == 3
    with pytest.raises(ValueError):
        BoundedSet(0)


def test_backoff_grows_exponentially_with_jitter_and_is_capped() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(0, 100), (1, 200), (2, 400), (3, 800), (10, 5000), (99, 5000)]:
        delays = {backoff_ms(attempt, base_ms=100, cap_ms=5000, rng=rng) for _ in range(50)}
        assert all(ceiling // 2 <= d <= ceiling for d in delays)
        assert len(delays) > 1  # jittered


def test_backoff_is_deterministic_for_a_seeded_rng() -> None:
    first = [backoff_ms(a, base_ms=50, cap_ms=1000, rng=random.Random(1)) for a in range(8)]
    second = [backoff_ms(a, base_ms=50, cap_ms=1000, rng=random.Random(1)) for a in range(8)]
    assert first == second
