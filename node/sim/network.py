"""The simulated network: per-message delay, loss, duplication, partitions, bounded queues.

Every send is decided when it is made, from the network's own random generator: dropped
(lost, cut by a partition, or over the link's in-flight bound), or delivered once or twice
(duplicated) after independent delays; independent delays reorder messages. A partition is
a set of cut directed links, so symmetric splits and one-way (asymmetric) cuts are the same
mechanism. Before delivery the simulator runs the peer boundary (:class:`Boundary`).
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, assert_never

from ledger.errors import LedgerError
from ledger.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Message,
    NewView,
    Proposal,
    Status,
    ViewChange,
    decode_message,
    encode_message,
    verify_message,
)
from ledger.types import QuorumCertificate, Vote
from node.sim.checks import SignatureCache

__all__ = ["RELIABLE", "Boundary", "LinkProfile", "Network", "NetworkStats", "signatures_in"]

#: Verification results remembered per message object before the oldest are forgotten.
BOUNDARY_CACHE_ENTRIES: Final = 4096


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """How every link behaves for a while. Probabilities per message; delays in ms."""

    min_delay_ms: int = 2
    max_delay_ms: int = 30
    loss: float = 0.0
    duplicate: float = 0.0
    #: Probability that a message is held back by up to ``slow_max_ms`` more.
    slow: float = 0.0
    slow_max_ms: int = 300

    def __post_init__(self) -> None:
        if not 0 <= self.min_delay_ms <= self.max_delay_ms:
            raise ValueError("need 0 <= min_delay_ms <= max_delay_ms")
        for name in ("loss", "duplicate", "slow"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability")


#: The healed network: no loss, no duplication, delays still vary (so order still varies).
RELIABLE: Final = LinkProfile(min_delay_ms=2, max_delay_ms=30)


@dataclass(slots=True)
class NetworkStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    cut: int = 0
    overflow: int = 0
    duplicated: int = 0
    to_down_node: int = 0
    rejected: int = 0
    filtered: int = 0
    #: Signatures inside delivered messages: what a peer layer that verifies every
    #: message it receives would check (the simulator verifies each object once).
    signatures_delivered: int = 0

    @property
    def dropped(self) -> int:
        return (
            self.lost + self.cut + self.overflow + self.to_down_node + self.rejected + self.filtered
        )


#: A scripted drop rule: (source index, destination index, message) -> drop?
DropRule = Callable[[int, int, Message], bool]


@dataclass(slots=True)
class Network:
    """Decides the fate of each send. Indices are validator positions."""

    n: int
    rng: random.Random
    profile: LinkProfile = RELIABLE
    max_in_flight_per_link: int = 512
    cut_links: frozenset[tuple[int, int]] = frozenset()
    rules: list[DropRule] = field(default_factory=list)
    stats: NetworkStats = field(default_factory=NetworkStats)
    _in_flight: dict[tuple[int, int], int] = field(default_factory=dict)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Cut every link between different groups (both directions)."""
        where: dict[int, int] = {}
        for number, group in enumerate(groups):
            for node in group:
                where[node] = number
        self.cut_links = frozenset(
            (a, b)
            for a in range(self.n)
            for b in range(self.n)
            if a != b and where.get(a, -1) != where.get(b, -1)
        )

    def cut(self, links: Iterable[tuple[int, int]]) -> None:
        """Cut exactly these directed links (an asymmetric partition)."""
        self.cut_links = frozenset(links)

    def heal(self) -> None:
        self.cut_links = frozenset()

    def plan(self, src: int, dst: int, message: Message) -> list[int]:
        """The delays (0, 1 or 2 of them) after which this send arrives."""
        stats = self.stats
        stats.sent += 1
        if (src, dst) in self.cut_links:
            stats.cut += 1
            return []
        for rule in self.rules:
            if rule(src, dst, message):
                stats.filtered += 1
                return []
        profile = self.profile
        rng = self.rng
        if profile.loss and rng.random() < profile.loss:
            stats.lost += 1
            return []
        link = (src, dst)
        if self._in_flight.get(link, 0) >= self.max_in_flight_per_link:
            stats.overflow += 1
            return []
        copies = 2 if profile.duplicate and rng.random() < profile.duplicate else 1
        if copies == 2:
            stats.duplicated += 1
        delays = []
        for _ in range(copies):
            delay = rng.randint(profile.min_delay_ms, profile.max_delay_ms)
            if profile.slow and rng.random() < profile.slow:
                delay += rng.randint(0, profile.slow_max_ms)
            delays.append(delay)
        self._in_flight[link] = self._in_flight.get(link, 0) + copies
        return delays

    def arrived(self, src: int, dst: int) -> None:
        link = (src, dst)
        self._in_flight[link] -= 1

    def in_flight(self) -> int:
        return sum(self._in_flight.values())


def signatures_in(message: Message) -> int:
    """How many ed25519 signatures ``verify_message`` checks in ``message``."""
    match message:
        case Vote() | Proposal() | Checkpoint():
            return 1
        case ViewChange():
            return 1 + _certificate_signatures(message.committed, message.prepared)
        case NewView():
            return 2 + sum(signatures_in(vc) for vc in message.view_changes)
        case Status():
            return _certificate_signatures(message.committed)
        case BlockRequest():
            return 0
        case BlockResponse():
            return _certificate_signatures(*message.certificates)
        case _:
            assert_never(message)


def _certificate_signatures(*certificates: QuorumCertificate | None) -> int:
    return sum(len(c.signatures) for c in certificates if c is not None)


class Boundary:
    """The peer layer's checks before the core sees a message: decode, ``verify_message``.

    Results are cached per message object (a broadcast is one object delivered to every
    peer, so its signatures are checked once). With ``wire`` every message also makes the
    round trip through its canonical encoding, as it would between processes.
    """

    def __init__(
        self,
        chain_id: str,
        validators: tuple[bytes, ...],
        signatures: SignatureCache,
        *,
        wire: bool = False,
    ) -> None:
        self._chain_id = chain_id
        self._validators = validators
        self._signatures = signatures
        self._wire = wire
        self._verified: dict[int, tuple[Message, str | None]] = {}
        self._decoded: dict[int, tuple[Message, Message]] = {}
        self.verify_calls = 0

    def on_wire(self, message: Message) -> Message:
        """What the receiver decodes: ``message`` itself, or its decoded encoding."""
        if not self._wire:
            return message
        cached = self._decoded.get(id(message))
        if cached is not None and cached[0] is message:
            return cached[1]
        decoded = decode_message(encode_message(message))
        if len(self._decoded) >= BOUNDARY_CACHE_ENTRIES:
            del self._decoded[next(iter(self._decoded))]
        self._decoded[id(message)] = (message, decoded)
        return decoded

    def check(self, message: Message) -> str | None:
        """``None`` if the message may pass, else why it is dropped."""
        cached = self._verified.get(id(message))
        if cached is not None and cached[0] is message:
            return cached[1]
        self.verify_calls += 1
        try:
            verify_message(message, self._chain_id, self._validators)
        except LedgerError as exc:
            problem: str | None = str(exc) or type(exc).__name__
        else:
            problem = None
            if isinstance(message, Vote):
                self._signatures.add(message)
        if len(self._verified) >= BOUNDARY_CACHE_ENTRIES:
            del self._verified[next(iter(self._verified))]
        self._verified[id(message)] = (message, problem)
        return problem
