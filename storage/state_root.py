"""The registry's state root: a hash chain of per-block write-set Merkle roots.

Execute-then-agree needs the root a block's write set *would* produce before the block is
committed (the primary puts it in the header, replicas recompute and compare), so the root
must be cheap to compute from (previous root, write set) alone, without touching the rest of
the state. A hash chain over write sets is exactly that: O(size of the write set) per block,
no tree to maintain on disk, deterministic, and trivially the same in every implementation.
What it does not give is a proof of a single current value (a sparse Merkle tree would);
that can be added later under a new domain tag without changing the blocks already signed.

Definition (also in ``docs/STORAGE.md``), with ``H`` = SHA-256 and ``||`` concatenation::

    DOMAIN          = b"radledger/state/v1\\x00"
    initial_root(g) = H(DOMAIN || g)                      g = the genesis hash (32 bytes)

    For a block with a non-empty write set W (key -> value, or None for a delete):
      entries  = [ledger.codec.encode([k, W[k]]) for k in sorted(W)]   # bytewise key order
      ws_root  = ledger.merkle.root(entries)                          # RFC 6962 MTH
      new_root = H(DOMAIN || prev_root || ws_root)

    For an empty write set: new_root = prev_root.

Each entry is the canonical CBOR array ``[key, value]`` with ``key`` a byte string and
``value`` a byte string or ``null``, so a delete (``null``) never collides with writing an
empty value (``h''``), and the entry boundaries inside a leaf are unambiguous. Sorting the
keys makes the root independent of the order the executor produced the writes in. The
previous root is chained in, so the root at height ``h`` commits to the genesis and to every
write set up to ``h``. An empty write set leaves the root unchanged so that blocks which
change nothing (empty blocks, rejected transactions only) do not churn it.

These functions only hash; limits on key and value sizes are enforced by the stores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Final

from ledger import codec, merkle

__all__ = [
    "DOMAIN",
    "ROOT_BYTES",
    "initial_root",
    "next_root",
    "write_set_entries",
    "write_set_root",
]

#: Domain tag of every state-root hash; bump the version to change the construction.
DOMAIN: Final = b"radledger/state/v1\x00"
#: Length of a state root in bytes (SHA-256).
ROOT_BYTES: Final = 32


def initial_root(genesis_hash: bytes) -> bytes:
    """The state root before block 1: ``H(DOMAIN || genesis_hash)``.

    Binding the genesis hash in means two chains with identical write histories still have
    different roots, so a header can never be replayed onto another chain's state.
    """
    _check_hash("genesis hash", genesis_hash)
    return hashlib.sha256(DOMAIN + genesis_hash).digest()


def write_set_entries(writes: Mapping[bytes, bytes | None]) -> list[bytes]:
    """The Merkle leaves of a write set: ``encode([key, value_or_None])`` in bytewise key order."""
    entries: list[bytes] = []
    for key in sorted(writes):
        value = writes[key]
        if not isinstance(key, bytes):
            raise TypeError(f"state keys are bytes, got {type(key).__name__}")
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"state values are bytes or None, got {type(value).__name__}")
        entries.append(codec.encode([key, value]))
    return entries


def write_set_root(writes: Mapping[bytes, bytes | None]) -> bytes:
    """The RFC 6962 Merkle root of :func:`write_set_entries` (``EMPTY_ROOT`` for no writes)."""
    return merkle.root(write_set_entries(writes))


def next_root(prev_root: bytes, writes: Mapping[bytes, bytes | None]) -> bytes:
    """The root after applying ``writes`` on top of the state whose root is ``prev_root``."""
    _check_hash("previous state root", prev_root)
    if not writes:
        return prev_root
    return hashlib.sha256(DOMAIN + prev_root + write_set_root(writes)).digest()


def _check_hash(what: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != ROOT_BYTES:
        raise ValueError(f"{what} must be {ROOT_BYTES} bytes")
