"""Peer transport: authenticated, encrypted websocket links between consortium nodes.

Imports only ``ledger`` (plus the standard library, aiohttp and PyNaCl).
``docs/P2P.md`` specifies the wire protocol; :class:`PeerNetwork` is the entry point.
"""

from p2p.config import KindLimits, Limits, PeerAddress, PeerConfig, SystemClock
from p2p.frames import Kind
from p2p.network import (
    ConsensusMessage,
    PeerHandler,
    PeerInfo,
    PeerNetwork,
    PeerUnavailable,
    SyncError,
    SyncMessage,
    SyncTimeout,
)
from p2p.secure import Refusal
from p2p.stats import NetworkStats, PeerStats

__all__ = [
    "ConsensusMessage",
    "Kind",
    "KindLimits",
    "Limits",
    "NetworkStats",
    "PeerAddress",
    "PeerConfig",
    "PeerHandler",
    "PeerInfo",
    "PeerNetwork",
    "PeerStats",
    "PeerUnavailable",
    "Refusal",
    "SyncError",
    "SyncMessage",
    "SyncTimeout",
    "SystemClock",
]
