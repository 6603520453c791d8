"""Typed errors of ``storage/``.

Every failure a caller can meet is a subclass of :class:`StorageError`, so the node
can catch one family at its edge and print the message as it is. Each message names
the store (the LevelDB directory, or ``<memory:NAME>`` for the in-memory twin), says
what is wrong, and says what the operator or the calling code should do next, because
the person reading it is usually an operator looking at a node that refuses to start.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "ChainMismatchError",
    "InconsistentCommitError",
    "LimitError",
    "SafetyViolation",
    "SchemaVersionError",
    "StorageError",
    "StoreClosedError",
    "StoreCorruptedError",
    "StoreLockedError",
    "StoreNotFoundError",
]


class StorageError(Exception):
    """Base class of every error raised by ``storage/``.

    ``path`` names the store, ``problem`` says what is wrong and ``action`` what to do;
    ``str(error)`` is ``"{path}: {problem}. {action}"``.
    """

    def __init__(self, path: str, problem: str, action: str) -> None:
        self.path: Final = path
        self.problem: Final = problem
        self.action: Final = action
        super().__init__(f"{path}: {problem}. {action}")


class StoreNotFoundError(StorageError):
    """The store directory does not exist and the caller did not ask to create it."""


class StoreLockedError(StorageError):
    """Another process, or another handle in this process, has the store open."""


class StoreCorruptedError(StorageError):
    """The data on disk is damaged, is not a radledger store, or breaks an invariant.

    Raised by opening, by a read that finds an undecodable record, and by
    ``check_consistency``; nothing is ever repaired or overwritten behind the caller's back.
    """


class SchemaVersionError(StorageError):
    """The store was written with an on-disk schema this code does not understand."""


class ChainMismatchError(StorageError):
    """The store belongs to another chain (chain id or genesis hash differ)."""

    def __init__(
        self,
        path: str,
        *,
        stored_chain_id: str,
        stored_genesis_hash: bytes,
        expected_chain_id: str,
        expected_genesis_hash: bytes,
    ) -> None:
        self.stored_chain_id: Final = stored_chain_id
        self.stored_genesis_hash: Final = stored_genesis_hash
        self.expected_chain_id: Final = expected_chain_id
        self.expected_genesis_hash: Final = expected_genesis_hash
        super().__init__(
            path,
            f"store belongs to chain {stored_chain_id!r} (genesis {stored_genesis_hash.hex()}), "
            f"but chain {expected_chain_id!r} (genesis {expected_genesis_hash.hex()}) was "
            "expected",
            "The store was not modified. Point the node at the data directory of the expected "
            "chain, or use the genesis file this store was created with; to start the expected "
            "chain from scratch, move this directory aside and create a new store",
        )


class InconsistentCommitError(StorageError):
    """A block, certificate or write set does not extend the stored chain; nothing was written."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            path,
            problem,
            "Nothing was written. This is a bug in the caller (consensus or execution), "
            "not damage to the store: commit only the next block, with its own certificate "
            "and the write set its state root was computed from",
        )


class SafetyViolation(StorageError):
    """Recording a vote would sign a second, different digest in an already signed slot."""

    def __init__(
        self,
        path: str,
        *,
        slot: tuple[int, int, int],
        recorded_digest: bytes,
        attempted_digest: bytes,
    ) -> None:
        self.slot: Final = slot
        self.recorded_digest: Final = recorded_digest
        self.attempted_digest: Final = attempted_digest
        height, view, phase = slot
        super().__init__(
            path,
            f"refusing to record digest {attempted_digest.hex()} for slot (height {height}, "
            f"view {view}, phase {phase}): digest {recorded_digest.hex()} was already signed "
            "there",
            "Nothing was written and the vote must not be sent: signing both would be "
            "equivocation. Investigate the consensus state (a bug, or two nodes running with "
            "the same validator key)",
        )


class LimitError(StorageError):
    """A state key or value exceeds its size limit; nothing was written."""

    def __init__(self, path: str, *, what: str, size: int, limit: int) -> None:
        self.what: Final = what
        self.size: Final = size
        self.limit: Final = limit
        super().__init__(
            path,
            f"{what} of {size} bytes exceeds the limit of {limit} bytes",
            "Nothing was written. The registry must reject the transaction that produced it "
            "before it is proposed",
        )


class StoreClosedError(StorageError):
    """The store handle was closed; it cannot be used again."""

    def __init__(self, path: str) -> None:
        super().__init__(
            path, "the store is closed", "Open it again (a closed handle cannot be reused)"
        )


#: What to tell an operator about a store that failed a check. Shared by the openers.
CORRUPTION_ACTION: Final = (
    "The store was not modified. Stop the node, move this directory aside and let the node "
    "resync from its peers; do not restore an older copy, which would hold an older safety "
    "record (docs/OPERATIONS.md, 'Recover')"
)
