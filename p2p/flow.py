"""Sans-I/O flow control: send queues, rate limits, scores, caches and backoff.

Nothing here touches the network or reads a clock: time arrives as a value in
milliseconds, randomness as an injected generator. ``p2p.network`` drives these
pieces; the tests drive them directly.
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

from p2p.frames import Kind

#: Send order: consensus first, then block sync, then transaction gossip.
PRIORITY: tuple[Kind, ...] = (Kind.CONSENSUS, Kind.SYNC, Kind.TX)
#: Bytes a message adds to a batch besides its payload (kind and length).
ITEM_OVERHEAD_BYTES = 5


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One queued message: its metric label, its canonical bytes and, for a
    transaction, its hash (so the writer can skip what the peer already has)."""

    label: str
    payload: bytes
    tx_hash: bytes = b""


class _Lane:
    __slots__ = ("items", "max_bytes", "max_msgs", "size_bytes")

    def __init__(self, max_msgs: int, max_bytes: int) -> None:
        self.items: deque[Outgoing] = deque()
        self.max_msgs = max_msgs
        self.max_bytes = max_bytes
        self.size_bytes = 0


class PeerQueues:
    """Bounded per-kind send queues to one peer, drained in priority order.

    :meth:`push` never blocks: a full queue refuses the message (the caller
    counts the drop) and records since when the peer has been congested;
    :meth:`take_batch` hands the writer the next frame's worth of messages.
    """

    __slots__ = ("_lanes", "congested_since_ms")

    def __init__(self, bounds: Mapping[Kind, tuple[int, int]]) -> None:
        """``bounds`` maps each kind to (max messages, max bytes)."""
        self._lanes = {kind: _Lane(*bounds[kind]) for kind in PRIORITY}
        self.congested_since_ms: int | None = None

    def push(self, kind: Kind, item: Outgoing, now_ms: int) -> bool:
        lane = self._lanes[kind]
        size = len(item.payload)
        if len(lane.items) >= lane.max_msgs or lane.size_bytes + size > lane.max_bytes:
            # A full transaction lane just drops transactions (gossip is best effort,
            # and they travel again in blocks); only urgent kinds make a peer congested.
            if kind is not Kind.TX and self.congested_since_ms is None:
                self.congested_since_ms = now_ms
            return False
        lane.items.append(item)
        lane.size_bytes += size
        return True

    def take_batch(
        self, max_bytes: int, skip: Callable[[Outgoing], bool] | None = None
    ) -> tuple[list[tuple[Kind, Outgoing]], int]:
        """The next frame: messages in priority order up to ``max_bytes`` of
        plaintext. A message larger than the budget travels alone. Transactions
        for which ``skip`` is true are discarded (counted in the second value)."""
        batch: list[tuple[Kind, Outgoing]] = []
        used = 0
        skipped = 0
        for kind in PRIORITY:
            lane = self._lanes[kind]
            items = lane.items
            while items:
                item = items[0]
                size = len(item.payload) + ITEM_OVERHEAD_BYTES
                if batch and used + size > max_bytes:
                    self._relieve()
                    return batch, skipped
                items.popleft()
                lane.size_bytes -= len(item.payload)
                if skip is not None and item.tx_hash and skip(item):
                    skipped += 1
                    continue
                batch.append((kind, item))
                used += size
                if used >= max_bytes:
                    self._relieve()
                    return batch, skipped
        self._relieve()
        return batch, skipped

    def _relieve(self) -> None:
        """Congestion ends once every queue is back under half its bounds."""
        if self.congested_since_ms is None:
            return
        for kind, lane in self._lanes.items():
            if kind is Kind.TX:
                continue
            if 2 * len(lane.items) > lane.max_msgs or 2 * lane.size_bytes > lane.max_bytes:
                return
        self.congested_since_ms = None

    def depth(self, kind: Kind) -> tuple[int, int]:
        """(messages, bytes) waiting for ``kind``."""
        lane = self._lanes[kind]
        return len(lane.items), lane.size_bytes

    def clear(self) -> int:
        """Drop everything queued; returns how many messages were dropped."""
        dropped = 0
        for lane in self._lanes.values():
            dropped += len(lane.items)
            lane.items.clear()
            lane.size_bytes = 0
        self.congested_since_ms = None
        return dropped

    def __len__(self) -> int:
        return sum(len(lane.items) for lane in self._lanes.values())


class TokenBucket:
    """Allows ``rate`` units per second on average and bursts up to ``burst``."""

    __slots__ = ("_burst", "_last_ms", "_rate_per_ms", "_tokens")

    def __init__(self, rate_per_s: float, burst: float, now_ms: int) -> None:
        self._rate_per_ms = rate_per_s / 1000.0
        self._burst = float(burst)
        self._tokens = float(burst)
        self._last_ms = now_ms

    def _refill(self, now_ms: int) -> None:
        elapsed = now_ms - self._last_ms
        if elapsed > 0:  # a clock that steps back refills nothing
            self._last_ms = now_ms
            tokens = self._tokens + elapsed * self._rate_per_ms
            self._tokens = tokens if tokens < self._burst else self._burst

    def available(self, now_ms: int) -> float:
        self._refill(now_ms)
        return self._tokens

    def take(self, amount: float, now_ms: int) -> bool:
        self._refill(now_ms)
        if amount > self._tokens:
            return False
        self._tokens -= amount
        return True


class RateLimit:
    """Two buckets on one inbound kind: messages and bytes. Both must allow."""

    __slots__ = ("_bytes", "_msgs")

    def __init__(
        self,
        *,
        msgs_per_s: float,
        burst_msgs: int,
        bytes_per_s: float,
        burst_bytes: int,
        now_ms: int,
    ) -> None:
        self._msgs = TokenBucket(msgs_per_s, burst_msgs, now_ms)
        self._bytes = TokenBucket(bytes_per_s, burst_bytes, now_ms)

    def allow(self, size_bytes: int, now_ms: int) -> bool:
        msgs, data = self._msgs, self._bytes
        msgs._refill(now_ms)  # once per bucket and message: this runs for every message
        data._refill(now_ms)
        if msgs._tokens < 1 or data._tokens < size_bytes:
            return False
        msgs._tokens -= 1
        data._tokens -= size_bytes
        return True


class Score:
    """Misbehaviour points of one peer, decaying linearly over time."""

    __slots__ = ("_decay_per_ms", "_last_ms", "_points")

    def __init__(self, decay_per_s: float) -> None:
        self._decay_per_ms = decay_per_s / 1000.0
        self._points = 0.0
        self._last_ms: int | None = None

    def value(self, now_ms: int) -> float:
        if self._last_ms is not None:
            elapsed = max(0, now_ms - self._last_ms)
            self._points = max(0.0, self._points - elapsed * self._decay_per_ms)
        self._last_ms = now_ms
        return self._points

    def add(self, points: float, now_ms: int) -> float:
        """Add ``points``; returns the new total."""
        self._points = self.value(now_ms) + points
        return self._points

    def reset(self) -> None:
        self._points = 0.0
        self._last_ms = None


class BoundedSet:
    """A set of hashes that forgets its oldest entries beyond ``capacity``."""

    __slots__ = ("_capacity", "_items")

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self._capacity = capacity
        # OrderedDict: forgetting the oldest is O(1) (a plain dict's first key is
        # found by skipping the holes that earlier deletions left at its front).
        self._items: OrderedDict[bytes, None] = OrderedDict()

    def add(self, key: bytes) -> bool:
        """Remember ``key``; True if it was not there yet."""
        if key in self._items:
            return False
        self._items[key] = None
        if len(self._items) > self._capacity:
            self._items.popitem(last=False)
        return True

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._items)


def backoff_ms(attempt: int, *, base_ms: int, cap_ms: int, rng: random.Random) -> int:
    """Delay before redial number ``attempt`` (0-based): exponential, capped, and
    "equal jitter" (between half and all of the exponential value), so peers
    that lost each other at the same moment do not redial in lockstep."""
    ceiling = min(cap_ms, base_ms << min(max(attempt, 0), 32))
    half = ceiling // 2
    return half + rng.randint(0, ceiling - half)
