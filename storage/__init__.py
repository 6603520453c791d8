"""radledger's persistence: blocks, registry state and safety records.

One LevelDB directory per node (:func:`open_store` / :class:`LevelDBStore`), with an in-memory
twin (:class:`MemoryStore`) that obeys the same contract for the simulator and tests. The
protocols in :mod:`storage.api` are what the other packages depend on; the state-root
construction is in :mod:`storage.state_root`; the on-disk layout is in ``docs/STORAGE.md``.

Layering: this package imports only ``ledger`` (plus the standard library and plyvel).
"""

from storage.api import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    SCHEMA_VERSION,
    BlockStore,
    SafetyStore,
    StateStore,
    Store,
)
from storage.consistency import Census
from storage.errors import (
    ChainMismatchError,
    InconsistentCommitError,
    LimitError,
    SafetyViolation,
    SchemaVersionError,
    StorageError,
    StoreClosedError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
)
from storage.leveldb import LevelDBSafetyStore, LevelDBStore, open_store
from storage.memory import MemorySafetyStore, MemoryStore
from storage.state_root import initial_root, next_root, write_set_root

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "SCHEMA_VERSION",
    "BlockStore",
    "Census",
    "ChainMismatchError",
    "InconsistentCommitError",
    "LevelDBSafetyStore",
    "LevelDBStore",
    "LimitError",
    "MemorySafetyStore",
    "MemoryStore",
    "SafetyStore",
    "SafetyViolation",
    "SchemaVersionError",
    "StateStore",
    "StorageError",
    "Store",
    "StoreClosedError",
    "StoreCorruptedError",
    "StoreLockedError",
    "StoreNotFoundError",
    "initial_root",
    "next_root",
    "open_store",
    "write_set_root",
]
