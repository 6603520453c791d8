"""The storage contract: protocols, limits, and the rules every implementation enforces.

There are two implementations, :class:`storage.leveldb.LevelDBStore` (the node's) and
:class:`storage.memory.MemoryStore` (the simulator's and the tests'), and one contract test
suite that both pass. So that the two cannot drift apart on what they accept, the checks a
commit must pass live here, as plain functions both call, rather than in either class.

A store is one object with three faces:

* :class:`BlockStore`: committed blocks, their certificates, the transaction index and the
  per-block write sets, all committed together by :meth:`BlockStore.commit_block`;
* :class:`StateStore`: the registry's key-value state at the latest committed height and the
  state root (see :mod:`storage.state_root`);
* :class:`SafetyStore`, reached as ``store.safety``: the validator's last signed votes,
  durable before a vote is sent. It is a separate object because its natural method names
  (``get``, ``prune_below``) would collide with, or be ambiguous next to, the state's.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Final, Protocol, Self

from ledger.types import (
    CHAIN_ID_PATTERN,
    HASH_BYTES,
    Block,
    BlockHeader,
    CommitCertificate,
    PreparedCertificate,
    SafetyRecord,
    Tx,
)
from storage.errors import InconsistentCommitError, LimitError

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "SCHEMA_VERSION",
    "BlockStore",
    "SafetyStore",
    "StateStore",
    "Store",
    "check_commit",
    "check_identity",
    "check_key",
    "check_prepared",
    "validated_writes",
]

#: Largest state key, in bytes (1 KiB). Keys are identifiers, never payloads.
MAX_KEY_BYTES: Final = 1024
#: Largest state value, in bytes (1 MiB). Bulk data (images) never goes on chain.
MAX_VALUE_BYTES: Final = 1024 * 1024
#: Version of the on-disk layout described in ``docs/STORAGE.md``.
SCHEMA_VERSION: Final = 1

_CHAIN_ID_RE: Final = re.compile(CHAIN_ID_PATTERN)


class BlockStore(Protocol):
    """Committed blocks with their certificates, transaction index and write sets."""

    def latest_height(self) -> int:
        """Height of the latest committed block; 0 for an empty store."""
        ...

    def commit_block(
        self, block: Block, cert: CommitCertificate, writes: Mapping[bytes, bytes | None]
    ) -> None:
        """Commit ``block`` atomically and durably, or raise and write nothing.

        One atomic, fsynced write holds the block, ``cert``, the transaction index entries,
        the state ``writes`` (``None`` deletes a key), the block's write set, the new state
        root and the height pointer. Raises :class:`~storage.errors.InconsistentCommitError`
        unless the block is the next one of this chain, ``cert`` names it, and its header's
        ``state_root`` is :meth:`StateStore.prospective_root` of ``writes``; raises
        :class:`~storage.errors.LimitError` for an oversized key or value. The certificate's
        signatures are consensus's business and are not verified here.
        """
        ...

    def block(self, height: int) -> Block | None:
        """The committed block at ``height``, or ``None``."""
        ...

    def header(self, height: int) -> BlockHeader | None:
        """The header of the committed block at ``height`` (cheaper than the block)."""
        ...

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        """The committed block whose hash is ``block_hash``, or ``None``."""
        ...

    def height_of(self, block_hash: bytes) -> int | None:
        """Height of the committed block whose hash is ``block_hash``, or ``None``."""
        ...

    def block_hash(self, height: int) -> bytes | None:
        """Hash of the committed block at ``height``, or ``None`` (also for height 0)."""
        ...

    def certificate(self, height: int) -> CommitCertificate | None:
        """The commit certificate stored with the block at ``height``, or ``None``."""
        ...

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        """``(height, index in block)`` of a committed transaction, or ``None``."""
        ...

    def tx(self, tx_hash: bytes) -> Tx | None:
        """The committed transaction with hash ``tx_hash``, or ``None``."""
        ...

    def write_set(self, height: int) -> dict[bytes, bytes | None] | None:
        """The state writes committed with the block at ``height``, in key order, or ``None``.

        Kept so that the state-root chain can be recomputed and audited from genesis.
        """
        ...


class StateStore(Protocol):
    """The registry's key-value state at the latest committed height."""

    def get(self, key: bytes) -> bytes | None:
        """The value of ``key``, or ``None`` if it is not set."""
        ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        """All ``(key, value)`` pairs whose key starts with ``prefix``, in bytewise key order.

        The view is a snapshot taken when ``items`` is called: blocks committed while the
        iterator is consumed do not show up in it.
        """
        ...

    def state_root(self) -> bytes:
        """The state root after the latest committed block (see :mod:`storage.state_root`)."""
        ...

    def prospective_root(self, writes: Mapping[bytes, bytes | None]) -> bytes:
        """The root that committing ``writes`` next would produce; writes nothing.

        Execute-then-agree needs it: the primary puts it in the proposal's header and every
        replica recomputes it before preparing. Raises :class:`~storage.errors.LimitError`
        for an oversized key or value, exactly as the commit would.
        """
        ...


class SafetyStore(Protocol):
    """The validator's signed votes, one digest per (height, view, phase) slot."""

    def record(self, r: SafetyRecord) -> None:
        """Durably record ``r`` (fsynced before returning); send the vote only afterwards.

        Recording the same digest for a slot again is a no-op; a different digest raises
        :class:`~storage.errors.SafetyViolation` and writes nothing.
        """
        ...

    def get(self, height: int, view: int, phase: int) -> SafetyRecord | None:
        """The record of one slot, or ``None``."""
        ...

    def records_since(self, height: int) -> list[SafetyRecord]:
        """All records with ``record.height >= height``, sorted by slot."""
        ...

    def prune_below(self, height: int) -> int:
        """Delete all records with ``record.height < height``; return how many were deleted."""
        ...

    def save_prepared(self, certificate: PreparedCertificate, block: Block) -> None:
        """Durably keep the replica's latest prepared certificate and its block (fsynced).

        A replica that sent COMMIT must be able to prove, after a crash, what it had
        prepared: its view changes carry this certificate. One slot: each call replaces
        the previous pair.
        """
        ...

    def load_prepared(self) -> tuple[PreparedCertificate, Block] | None:
        """The pair last given to :meth:`save_prepared`, or ``None``."""
        ...


class Store(BlockStore, StateStore, Protocol):
    """A whole store: blocks and state on the object, safety records on ``.safety``."""

    @property
    def path(self) -> str:
        """Where the store lives, as used in error messages."""
        ...

    @property
    def chain_id(self) -> str:
        """The chain id the store was created for."""
        ...

    @property
    def genesis_hash(self) -> bytes:
        """The genesis hash the store was created for (block 1's ``prev_hash``)."""
        ...

    @property
    def safety(self) -> SafetyStore:
        """The safety records, kept in the same store (same directory, same lock)."""
        ...

    def check_consistency(self) -> int:
        """Audit the whole store; return the latest height or raise ``StoreCorruptedError``.

        See :func:`storage.consistency.audit` for what is checked.
        """
        ...

    def close(self) -> None:
        """Release the store (for LevelDB: the directory lock). Idempotent."""
        ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...


# --------------------------------------------------------------------------- shared rules


def check_identity(chain_id: str, genesis_hash: bytes) -> None:
    """Reject a malformed chain id or genesis hash (a caller bug, hence ``ValueError``)."""
    if not isinstance(chain_id, str) or _CHAIN_ID_RE.fullmatch(chain_id) is None:
        raise ValueError(f"chain id {chain_id!r} does not match {CHAIN_ID_PATTERN}")
    if not isinstance(genesis_hash, bytes) or len(genesis_hash) != HASH_BYTES:
        raise ValueError(f"genesis hash must be {HASH_BYTES} bytes")


def check_key(path: str, key: bytes) -> None:
    """Raise ``TypeError`` for a non-bytes key and :class:`LimitError` for an oversized one."""
    if not isinstance(key, bytes):
        raise TypeError(f"state keys are bytes, got {type(key).__name__}")
    if len(key) > MAX_KEY_BYTES:
        raise LimitError(path, what="state key", size=len(key), limit=MAX_KEY_BYTES)


def validated_writes(path: str, writes: Mapping[bytes, bytes | None]) -> dict[bytes, bytes | None]:
    """A key-ordered copy of ``writes`` after checking types and size limits.

    Copying first means a caller mutating its mapping afterwards cannot change what was
    checked, hashed and written.
    """
    checked: dict[bytes, bytes | None] = {}
    for key, value in writes.items():
        check_key(path, key)
        if value is not None:
            if not isinstance(value, bytes):
                raise TypeError(f"state values are bytes or None, got {type(value).__name__}")
            if len(value) > MAX_VALUE_BYTES:
                raise LimitError(
                    path,
                    what=f"value of state key {key[:64].hex()}",
                    size=len(value),
                    limit=MAX_VALUE_BYTES,
                )
        checked[key] = value
    return {key: checked[key] for key in sorted(checked)}


def check_prepared(certificate: PreparedCertificate, block: Block) -> None:
    """Reject a prepared certificate that does not name ``block`` (a caller bug)."""
    if not isinstance(certificate, PreparedCertificate) or not isinstance(block, Block):
        raise TypeError("save_prepared takes a PreparedCertificate and a Block")
    if (certificate.height, certificate.block_hash) != (block.height, block.hash):
        raise ValueError("the prepared certificate names another block")


def check_commit(
    path: str,
    *,
    chain_id: str,
    latest_height: int,
    latest_hash: bytes,
    block: Block,
    cert: CommitCertificate,
    prospective_root: bytes,
    tx_location: Callable[[bytes], tuple[int, int] | None],
) -> None:
    """Raise :class:`InconsistentCommitError` unless ``block`` may be committed next.

    ``latest_hash`` is the hash of the block at ``latest_height``, or the genesis hash when
    the store is empty. Cheap checks come first so that a stale or duplicate delivery is
    rejected before any hashing.
    """
    if not isinstance(block, Block) or not isinstance(cert, CommitCertificate):
        raise TypeError("commit_block takes a Block and a CommitCertificate")
    header = block.header

    def reject(problem: str) -> InconsistentCommitError:
        return InconsistentCommitError(path, f"cannot commit block {header.height}: {problem}")

    if header.chain_id != chain_id:
        raise reject(f"it is for chain {header.chain_id!r}, this store holds chain {chain_id!r}")
    if header.height != latest_height + 1:
        raise reject(
            f"the latest committed height is {latest_height}, so the next must be "
            f"{latest_height + 1}"
        )
    if header.prev_hash != latest_hash:
        what = "the genesis hash" if latest_height == 0 else f"block {latest_height}'s hash"
        raise reject(f"prev_hash {header.prev_hash.hex()} is not {what} {latest_hash.hex()}")
    if cert.chain_id != chain_id:
        raise reject(f"the certificate is for chain {cert.chain_id!r}")
    if cert.height != header.height:
        raise reject(f"the certificate is for height {cert.height}")
    if cert.block_hash != block.hash:
        raise reject(
            f"the certificate is for block {cert.block_hash.hex()}, not {block.hash.hex()}"
        )
    if header.state_root != prospective_root:
        raise reject(
            f"header state_root {header.state_root.hex()} differs from {prospective_root.hex()}, "
            "the root its write set produces"
        )
    for index, tx in enumerate(block.txs):
        location = tx_location(tx.hash)
        if location is not None:
            raise reject(
                f"transaction {index} ({tx.hash.hex()}) was already committed at height "
                f"{location[0]}, index {location[1]}"
            )
