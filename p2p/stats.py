"""Counters of the peer layer and the frozen snapshots handed to metrics.

The network updates plain counters as it goes; :meth:`PeerNetwork.stats`
copies them into :class:`NetworkStats`, an immutable value the node's
``/metrics`` endpoint can read at leisure. Label values are short strings:
message types (``vote``, ``proposal``, ``tx`` ...), kinds (``consensus``,
``tx``, ``sync``) and reasons (``queue_full``, ``unknown_key`` ...).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TypeVar

K = TypeVar("K")


def frozen(counter: Mapping[K, int]) -> Mapping[K, int]:
    """A read-only copy of a counter (zero entries left out)."""
    return MappingProxyType({k: v for k, v in counter.items() if v})


class Traffic:
    """Messages and payload bytes by message type, one direction each."""

    __slots__ = ("bytes_received", "bytes_sent", "received", "sent")

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self.bytes_received: Counter[str] = Counter()

    def on_sent(self, label: str, size: int) -> None:
        self.sent[label] += 1
        self.bytes_sent[label] += size

    def on_received(self, label: str, size: int) -> None:
        self.received[label] += 1
        self.bytes_received[label] += size


class Counters:
    """Network-wide counters (per-peer traffic lives with each peer)."""

    def __init__(self) -> None:
        self.traffic = Traffic()
        self.frames_sent = 0
        self.frames_received = 0
        self.wire_bytes_sent = 0
        self.wire_bytes_received = 0
        self.drops: Counter[tuple[str, str]] = Counter()
        self.penalties: Counter[str] = Counter()
        self.disconnects: Counter[str] = Counter()
        self.handshake_failures: Counter[str] = Counter()
        self.handshakes_ok = 0
        self.dial_failures = 0
        self.bans = 0
        self.handler_errors = 0
        self.sync_timeouts = 0


@dataclass(frozen=True, slots=True)
class PeerStats:
    """One known peer (a validator's node or an allowed peer)."""

    node_key: bytes
    validator_key: bytes | None
    connected: bool
    #: Our role on the live connection: ``"dialer"`` or ``"listener"``.
    role: str | None
    remote_address: str | None
    score_points: float
    banned_for_ms: int
    #: Waiting in the send queue, by kind: (messages, bytes).
    queue_msgs: Mapping[str, int]
    queue_bytes: Mapping[str, int]
    messages_sent: Mapping[str, int]
    messages_received: Mapping[str, int]
    bytes_sent: Mapping[str, int]
    bytes_received: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class NetworkStats:
    """Everything the node exposes about its peer layer."""

    peers_connected: int
    peers: tuple[PeerStats, ...]
    #: Payload messages and bytes by message type (``vote``, ``tx`` ...).
    messages_sent: Mapping[str, int]
    messages_received: Mapping[str, int]
    bytes_sent: Mapping[str, int]
    bytes_received: Mapping[str, int]
    #: Encrypted websocket frames and their bytes on the wire.
    frames_sent: int
    frames_received: int
    wire_bytes_sent: int
    wire_bytes_received: int
    #: Messages not sent or not delivered, by (kind, reason).
    drops: Mapping[tuple[str, str], int]
    #: Misbehaviour penalties applied, by reason.
    penalties: Mapping[str, int]
    #: Connections closed, by reason.
    disconnects: Mapping[str, int]
    #: Refused handshakes, by reason (the ``Refusal`` values and transport reasons).
    handshake_failures: Mapping[str, int]
    handshakes_ok: int
    dial_failures: int
    bans: int
    peers_banned: int
    handler_errors: int
    sync_timeouts: int

    def queue_msgs(self, kind: str) -> int:
        """Messages waiting for ``kind`` over all peers."""
        return sum(p.queue_msgs.get(kind, 0) for p in self.peers)

    def peer(self, node_key: bytes) -> PeerStats:
        for stats in self.peers:
            if stats.node_key == node_key:
                return stats
        raise KeyError(node_key.hex())
