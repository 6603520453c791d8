"""Configuration of the peer layer: who we are, whom we accept and dial, and every limit.

Every limit carries its unit in its name. :meth:`PeerConfig.from_genesis` builds
the usual configuration of a validator: all genesis validators are accepted,
all but ourselves are dialed, and the payload limits follow the chain's
consensus parameters.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final, Protocol

from ledger.genesis import ADDRESS_PATTERN, ConsensusParams, Genesis
from ledger.keys import PUBLIC_KEY_BYTES, SigningKey
from ledger.types import MAX_BLOCK_BYTES, MAX_TX_BYTES
from p2p.frames import Kind

_ADDRESS_RE: Final = re.compile(ADDRESS_PATTERN)
MIB: Final = 1024 * 1024
#: Room for the envelope around a block in a proposal, NEW-VIEW or block response.
_ENVELOPE_SLACK_BYTES: Final = 256 * 1024


class Clock(Protocol):
    """Where the peer layer reads time (injected, so tests can skew or freeze it)."""

    def wall_ms(self) -> int:
        """Milliseconds since the Unix epoch: what handshake timestamps carry."""

    def monotonic_ms(self) -> int:
        """A clock that never goes back: rates, scores, bans and grace periods."""


class SystemClock:
    def wall_ms(self) -> int:
        return time.time_ns() // 1_000_000

    def monotonic_ms(self) -> int:
        return time.monotonic_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class KindLimits:
    """Limits for one kind of framed message, per peer.

    * ``max_payload_bytes``: largest message of this kind, either direction;
    * ``max_queue_msgs`` / ``max_queue_bytes``: bound of the send queue to one peer;
    * ``rate_msgs_per_s`` / ``burst_msgs`` and ``rate_bytes_per_s`` /
      ``burst_bytes``: token buckets on what one peer may send us; beyond them a
      message is dropped and the peer penalised.
    """

    max_payload_bytes: int
    max_queue_msgs: int
    max_queue_bytes: int
    rate_msgs_per_s: float
    burst_msgs: int
    rate_bytes_per_s: float
    burst_bytes: int

    def __post_init__(self) -> None:
        for name in ("max_payload_bytes", "max_queue_msgs", "burst_msgs"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.rate_msgs_per_s <= 0 or self.rate_bytes_per_s <= 0:
            raise ValueError("rates must be positive")
        if self.max_queue_bytes < self.max_payload_bytes:
            raise ValueError("max_queue_bytes must hold at least one largest message")
        if self.burst_bytes < self.max_payload_bytes:
            raise ValueError("burst_bytes must admit at least one largest message")


def consensus_limits(max_payload_bytes: int) -> KindLimits:
    """Votes are small and urgent; a proposal or NEW-VIEW carries a whole block."""
    return KindLimits(
        max_payload_bytes=max_payload_bytes,
        max_queue_msgs=4096,
        max_queue_bytes=2 * max_payload_bytes,
        rate_msgs_per_s=2000.0,
        burst_msgs=4000,
        rate_bytes_per_s=float(max(8 * MIB, max_payload_bytes)),
        burst_bytes=2 * max_payload_bytes,
    )


def tx_limits(max_payload_bytes: int) -> KindLimits:
    """Gossip is best effort: a transaction queued for seconds is stale (it travels
    in a block by then), so the queue holds about two seconds' worth, not more."""
    return KindLimits(
        max_payload_bytes=max_payload_bytes,
        max_queue_msgs=2_048,
        max_queue_bytes=max(4 * MIB, max_payload_bytes),
        rate_msgs_per_s=5000.0,
        burst_msgs=10_000,
        rate_bytes_per_s=float(16 * MIB),
        burst_bytes=max(32 * MIB, max_payload_bytes),
    )


def sync_limits(max_payload_bytes: int) -> KindLimits:
    """Block requests and responses: few, possibly large, never urgent."""
    return KindLimits(
        max_payload_bytes=max_payload_bytes,
        max_queue_msgs=256,
        max_queue_bytes=2 * max_payload_bytes,
        rate_msgs_per_s=100.0,
        burst_msgs=200,
        rate_bytes_per_s=float(max(8 * MIB, max_payload_bytes)),
        burst_bytes=2 * max_payload_bytes,
    )


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound of the peer layer. Defaults suit a consortium over the internet."""

    consensus: KindLimits = field(default_factory=lambda: consensus_limits(2 * MAX_BLOCK_BYTES))
    tx: KindLimits = field(default_factory=lambda: tx_limits(MAX_TX_BYTES))
    sync: KindLimits = field(default_factory=lambda: sync_limits(2 * MAX_BLOCK_BYTES))
    #: Small messages are batched into one encrypted frame up to this plaintext size.
    batch_max_bytes: int = 64 * 1024
    #: The whole handshake (websocket upgrade, Hellos, Auths) must finish within this.
    handshake_timeout_ms: int = 5_000
    #: Largest websocket message accepted during the handshake.
    max_handshake_msg_bytes: int = 1024
    #: Inbound handshakes in progress at once, in total and from one IP address.
    max_pending_handshakes: int = 32
    max_pending_handshakes_per_ip: int = 4
    #: Largest difference between a peer's Hello timestamp and our clock.
    max_clock_skew_ms: int = 30_000
    #: One frame may take ``send_timeout_ms`` plus its size at ``min_send_bytes_per_s``.
    send_timeout_ms: int = 5_000
    min_send_bytes_per_s: int = 256 * 1024
    #: A peer whose consensus or sync send queue stays full this long is disconnected
    #: (a full transaction queue only drops transactions: they are not urgent).
    slow_peer_grace_ms: int = 5_000
    #: Kernel send and receive buffer of each peer connection (0: the kernel's own
    #: autotuning, up to megabytes). Small buffers keep a backlog in our priority
    #: queues, where a vote overtakes queued transactions, instead of in the socket,
    #: where it would wait behind them. At least the window the link's round trip
    #: needs: 256 KiB carries about 5 MB/s at 50 ms.
    socket_buffer_bytes: int = 256 * 1024
    #: Messages for a peer whose link just dropped wait this long for it to come
    #: back (links are replaced during simultaneous dials and restarts).
    reconnect_grace_ms: int = 2_000
    #: Websocket ping interval (a peer silent for about this long is dropped); 0 disables.
    heartbeat_ms: int = 15_000
    close_timeout_ms: int = 1_000
    #: Redial delays: base * 2**attempt, capped, with jitter; reset by a long-lived link.
    backoff_base_ms: int = 250
    backoff_cap_ms: int = 30_000
    backoff_reset_after_ms: int = 10_000
    #: Misbehaviour points: past ``ban_score_points`` a peer is disconnected and banned.
    ban_score_points: float = 100.0
    ban_seconds: int = 600
    score_decay_points_per_s: float = 1.0
    penalty_frame_points: float = 50.0  # undecryptable, malformed or oversized frame
    penalty_invalid_points: float = 20.0  # a message that fails decoding or validation
    penalty_flood_points: float = 2.0  # each message over the rate limit
    penalty_unsolicited_points: float = 5.0  # a block response nobody asked for
    #: Transaction hashes remembered: globally (deduplication) and per peer (what it has).
    seen_cache_txs: int = 100_000
    known_txs_per_peer: int = 20_000
    #: Received transactions waiting for decoding, signature check and admission.
    #: Links only split frames and deduplicate, so a vote is read at once even while
    #: thousands of transactions arrive; a separate task validates these in slices
    #: of ``intake_slice_ms``, yielding to consensus in between. Past the bound, new
    #: arrivals are dropped (``dropped{reason="intake_full"}``): under overload the
    #: node sheds gossip, not consensus. Their origin still holds them.
    max_intake_txs: int = 8_192
    intake_slice_ms: int = 5
    #: Block-sync requests: how long an answer may take, and how many may be open per peer.
    sync_timeout_ms: int = 10_000
    max_sync_requests_per_peer: int = 8
    #: Period of the housekeeping pass (slow peers, expired requests).
    housekeeping_interval_ms: int = 250

    def __post_init__(self) -> None:
        if self.batch_max_bytes < 1024:
            raise ValueError("batch_max_bytes must be at least 1024")
        for name in (
            "handshake_timeout_ms",
            "max_handshake_msg_bytes",
            "max_pending_handshakes",
            "max_pending_handshakes_per_ip",
            "send_timeout_ms",
            "min_send_bytes_per_s",
            "slow_peer_grace_ms",
            "reconnect_grace_ms",
            "close_timeout_ms",
            "backoff_base_ms",
            "seen_cache_txs",
            "known_txs_per_peer",
            "max_intake_txs",
            "intake_slice_ms",
            "sync_timeout_ms",
            "max_sync_requests_per_peer",
            "housekeeping_interval_ms",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if self.backoff_cap_ms < self.backoff_base_ms:
            raise ValueError("backoff_cap_ms must be at least backoff_base_ms")
        if self.socket_buffer_bytes != 0 and self.socket_buffer_bytes < 16 * 1024:
            raise ValueError("socket_buffer_bytes must be 0 (the kernel's) or at least 16 KiB")
        if self.ban_score_points <= 0 or self.ban_seconds < 0 or self.heartbeat_ms < 0:
            raise ValueError("ban_score_points must be positive; ban_seconds, heartbeat_ms >= 0")

    @classmethod
    def for_params(cls, params: ConsensusParams) -> Limits:
        """Payload limits that follow a chain's consensus parameters."""
        block = 2 * params.max_block_bytes + _ENVELOPE_SLACK_BYTES
        return cls(
            consensus=consensus_limits(block),
            tx=tx_limits(params.max_tx_bytes),
            sync=sync_limits(block),
        )

    def of(self, kind: Kind) -> KindLimits:
        if kind is Kind.CONSENSUS:
            return self.consensus
        if kind is Kind.TX:
            return self.tx
        return self.sync

    @property
    def max_payload_bytes(self) -> Mapping[Kind, int]:
        return {kind: self.of(kind).max_payload_bytes for kind in Kind}

    @property
    def max_frame_bytes(self) -> int:
        """Largest websocket message after the handshake: one largest message,
        its 5-byte item header and the 16-byte authentication tag (or a batch)."""
        largest = max(self.of(kind).max_payload_bytes for kind in Kind)
        return max(largest, self.batch_max_bytes) + 5 + 16


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (``"[v6]:port"`` for IPv6) into host and port."""
    if _ADDRESS_RE.fullmatch(address) is None:
        raise ValueError(f"address {address!r} is not host:port")
    host, _, port_text = address.rpartition(":")
    port = int(port_text)
    if not 0 < port < 65536:
        raise ValueError(f"address {address!r}: port out of range")
    return host, port


@dataclass(frozen=True, slots=True)
class PeerAddress:
    """A peer we dial: its node key and where it listens (``host:port``)."""

    node_key: bytes
    address: str

    def __post_init__(self) -> None:
        if len(self.node_key) != PUBLIC_KEY_BYTES:
            raise ValueError("a node key is 32 bytes")
        split_address(self.address)


@dataclass(frozen=True, slots=True)
class PeerConfig:
    """Who this node is and which peers it accepts and dials.

    ``validators`` maps each validator's node key to its validator (consensus)
    key; ``validator_keys`` is the validator set in genesis order, against which
    consensus messages are verified. Non-validator peers (observers, archives)
    are accepted when listed in ``allowed_node_keys``. ``server_ssl`` /
    ``client_ssl`` add TLS underneath; the handshake runs either way.
    """

    chain_id: str
    node_key: SigningKey
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    persistent_peers: tuple[PeerAddress, ...] = ()
    validators: Mapping[bytes, bytes] = field(default_factory=lambda: MappingProxyType({}))
    validator_keys: tuple[bytes, ...] = ()
    allowed_node_keys: frozenset[bytes] = frozenset()
    limits: Limits = field(default_factory=Limits)
    server_ssl: ssl.SSLContext | None = None
    client_ssl: ssl.SSLContext | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "validators", MappingProxyType(dict(self.validators)))
        if not 0 <= self.listen_port < 65536:
            raise ValueError("listen_port out of range")
        if set(self.validators.values()) - set(self.validator_keys):
            raise ValueError("every validator's key must be in validator_keys")
        own = self.node_key.public_key
        for peer in self.persistent_peers:
            if peer.node_key == own:
                raise ValueError(f"persistent peer {peer.address} is this node itself")
            if peer.node_key not in self.accepted_keys:
                raise ValueError(f"persistent peer {peer.address} has a key we would not accept")
        keys = [p.node_key for p in self.persistent_peers]
        if len(set(keys)) != len(keys):
            raise ValueError("a node key appears twice among the persistent peers")

    @property
    def accepted_keys(self) -> frozenset[bytes]:
        """Node keys allowed to connect: validators' nodes and the allow-list."""
        return frozenset(self.validators) | self.allowed_node_keys

    @classmethod
    def from_genesis(
        cls,
        genesis: Genesis,
        node_key: SigningKey,
        *,
        listen_host: str = "0.0.0.0",  # noqa: S104 - a node serves its peers
        listen_port: int | None = None,
        extra_peers: Iterable[PeerAddress] = (),
        allowed_node_keys: Iterable[bytes] = (),
        limits: Limits | None = None,
        server_ssl: ssl.SSLContext | None = None,
        client_ssl: ssl.SSLContext | None = None,
    ) -> PeerConfig:
        """Accept every validator, dial every other validator at its genesis address.

        ``listen_port`` defaults to the port of our own genesis address (0 when
        this node is not a validator).
        """
        own = node_key.public_key
        port = listen_port
        if port is None:
            mine = [v for v in genesis.validators if v.node_key == own]
            port = split_address(mine[0].address)[1] if mine else 0
        peers = tuple(
            PeerAddress(v.node_key, v.address) for v in genesis.validators if v.node_key != own
        )
        extra = tuple(extra_peers)
        allowed = frozenset(allowed_node_keys) | {p.node_key for p in extra}
        return cls(
            chain_id=genesis.chain_id,
            node_key=node_key,
            listen_host=listen_host,
            listen_port=port,
            persistent_peers=peers + extra,
            validators={v.node_key: v.validator_key for v in genesis.validators},
            validator_keys=genesis.validator_keys,
            allowed_node_keys=allowed,
            limits=limits if limits is not None else Limits.for_params(genesis.params),
            server_ssl=server_ssl,
            client_ssl=client_ssl,
        )
