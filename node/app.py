"""The application the node runs: the research registry (registry/), wired in.

``node/`` is the composition root; the registry stays a pure state machine.
This module holds what the node's runtime and mempool need from it: one
:class:`~registry.Registry` per genesis, the block context of a block, and the
committed nonce of a signer (the mempool evicts stale pending transactions
with it; the key is the registry's, documented in docs/REGISTRY.md).
"""

from __future__ import annotations

from typing import Final

from ledger.types import Block
from registry import BlockContext, Registry, StateReader, TxRejection, Writes

__all__ = [
    "NONCE_PREFIX",
    "BlockContext",
    "Registry",
    "StateReader",
    "TxRejection",
    "Writes",
    "committed_nonce",
    "context_of",
    "nonce_key",
]

NONCE_PREFIX: Final = b"acct/"


def nonce_key(signer: bytes) -> bytes:
    return NONCE_PREFIX + signer + b"/nonce"


def committed_nonce(get: StateReader, signer: bytes) -> int:
    """The signer's last committed nonce, or -1 if it never transacted."""
    raw = get(nonce_key(signer))
    return -1 if raw is None else int.from_bytes(raw, "big")


def context_of(block: Block) -> BlockContext:
    return BlockContext(block.header.height, block.header.time_ms)
