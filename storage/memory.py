"""The in-memory twin of the LevelDB store, for the simulator and for tests.

It keeps ledger objects as they are (no encoding), so a simulated cluster of several nodes
runs fast, but it applies exactly the same rules as :class:`storage.leveldb.LevelDBStore`:
the commit checks in :mod:`storage.api`, the root of :mod:`storage.state_root` and the audit
of :mod:`storage.consistency`. The shared contract tests in ``tests/storage`` hold both to
one behaviour, so a simulation result carries over to the real store.

"Durable" here means "survives as long as this object does": a simulated crash keeps the
object and hands it to the restarted node, which is what a fsynced LevelDB gives a real one.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterator, Mapping

from ledger.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    PreparedCertificate,
    SafetyRecord,
    Tx,
)
from storage import state_root
from storage.api import (
    check_commit,
    check_identity,
    check_key,
    check_prepared,
    validated_writes,
)
from storage.base import StoreLifecycle
from storage.consistency import Census, audit
from storage.errors import SafetyViolation

__all__ = ["MemorySafetyStore", "MemoryStore"]


class MemoryStore(StoreLifecycle):
    """Blocks, state and safety records in dictionaries, under the same contract as LevelDB."""

    def __init__(self, *, chain_id: str, genesis_hash: bytes, name: str = "memory") -> None:
        check_identity(chain_id, genesis_hash)
        self._path = f"<memory:{name}>"
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._lock = threading.Lock()
        self._closed = False
        self._blocks: dict[int, Block] = {}
        self._certs: dict[int, CommitCertificate] = {}
        self._heights_by_hash: dict[bytes, int] = {}
        self._tx_index: dict[bytes, tuple[int, int]] = {}
        self._write_sets: dict[int, dict[bytes, bytes | None]] = {}
        self._state: dict[bytes, bytes] = {}
        self._sorted_keys: list[bytes] = []  # the keys of _state, kept sorted for items()
        self._root = state_root.initial_root(genesis_hash)
        self._safety = MemorySafetyStore(self)

    # ----------------------------------------------------------------- identity, lifecycle

    @property
    def safety(self) -> MemorySafetyStore:
        return self._safety

    def close(self) -> None:
        self._closed = True

    # ----------------------------------------------------------------- blocks

    def latest_height(self) -> int:
        self._check_open()
        return len(self._blocks)

    def commit_block(
        self, block: Block, cert: CommitCertificate, writes: Mapping[bytes, bytes | None]
    ) -> None:
        with self._lock:
            self._check_open()
            checked = validated_writes(self._path, writes)
            latest = len(self._blocks)
            new_root = state_root.next_root(self._root, checked)
            check_commit(
                self._path,
                chain_id=self._chain_id,
                latest_height=latest,
                latest_hash=self._blocks[latest].hash if latest else self._genesis_hash,
                block=block,
                cert=cert,
                prospective_root=new_root,
                tx_location=self._tx_index.get,
            )
            # Every check has passed; nothing below can fail half-way.
            height = block.height
            self._blocks[height] = block
            self._certs[height] = cert
            self._heights_by_hash[block.hash] = height
            for index, tx in enumerate(block.txs):
                self._tx_index[tx.hash] = (height, index)
            self._write_sets[height] = checked
            for key, value in checked.items():
                self._apply(key, value)
            self._root = new_root

    def _apply(self, key: bytes, value: bytes | None) -> None:
        present = key in self._state
        if value is None:
            if present:
                del self._state[key]
                del self._sorted_keys[bisect.bisect_left(self._sorted_keys, key)]
            return
        if not present:
            bisect.insort(self._sorted_keys, key)
        self._state[key] = value

    def block(self, height: int) -> Block | None:
        self._check_open()
        return self._blocks.get(height)

    def header(self, height: int) -> BlockHeader | None:
        block = self.block(height)
        return None if block is None else block.header

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        height = self.height_of(block_hash)
        return None if height is None else self.block(height)

    def height_of(self, block_hash: bytes) -> int | None:
        self._check_open()
        return self._heights_by_hash.get(block_hash)

    def block_hash(self, height: int) -> bytes | None:
        block = self.block(height)
        return None if block is None else block.hash

    def certificate(self, height: int) -> CommitCertificate | None:
        self._check_open()
        return self._certs.get(height)

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        self._check_open()
        return self._tx_index.get(tx_hash)

    def tx(self, tx_hash: bytes) -> Tx | None:
        location = self.tx_location(tx_hash)
        if location is None:
            return None
        height, index = location
        return self._blocks[height].txs[index]

    def write_set(self, height: int) -> dict[bytes, bytes | None] | None:
        self._check_open()
        writes = self._write_sets.get(height)
        return None if writes is None else dict(writes)

    # ----------------------------------------------------------------- state

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        check_key(self._path, key)
        return self._state.get(key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        check_key(self._path, prefix)
        keys = self._sorted_keys
        snapshot: list[tuple[bytes, bytes]] = []
        index = bisect.bisect_left(keys, prefix)
        while index < len(keys) and keys[index].startswith(prefix):
            snapshot.append((keys[index], self._state[keys[index]]))
            index += 1
        return iter(snapshot)

    def state_root(self) -> bytes:
        self._check_open()
        return self._root

    def prospective_root(self, writes: Mapping[bytes, bytes | None]) -> bytes:
        self._check_open()
        return state_root.next_root(self._root, validated_writes(self._path, writes))

    # ----------------------------------------------------------------- audit

    def census(self) -> Census:
        """Record counts for :func:`storage.consistency.audit`."""
        self._check_open()
        return Census(
            highest_header=max(self._blocks, default=0),
            highest_body=max(self._blocks, default=0),
            highest_certificate=max(self._certs, default=0),
            highest_write_set=max(self._write_sets, default=0),
            block_hash_entries=len(self._heights_by_hash),
            tx_index_entries=len(self._tx_index),
        )

    def check_consistency(self) -> int:
        with self._lock:
            self._check_open()
            return audit(self)


class MemorySafetyStore:
    """Safety records of a :class:`MemoryStore`, keyed by slot."""

    def __init__(self, owner: MemoryStore) -> None:
        self._owner = owner
        self._lock = threading.Lock()
        self._records: dict[tuple[int, int, int], SafetyRecord] = {}
        self._prepared: tuple[PreparedCertificate, Block] | None = None

    def record(self, r: SafetyRecord) -> None:
        if not isinstance(r, SafetyRecord):
            raise TypeError(f"expected a SafetyRecord, got {type(r).__name__}")
        with self._lock:
            self._owner._check_open()
            existing = self._records.get(r.slot)
            if existing is not None:
                if existing.digest != r.digest:
                    raise SafetyViolation(
                        self._owner.path,
                        slot=r.slot,
                        recorded_digest=existing.digest,
                        attempted_digest=r.digest,
                    )
                return
            self._records[r.slot] = r

    def get(self, height: int, view: int, phase: int) -> SafetyRecord | None:
        self._owner._check_open()
        return self._records.get((height, view, phase))

    def records_since(self, height: int) -> list[SafetyRecord]:
        self._owner._check_open()
        return [self._records[slot] for slot in sorted(self._records) if slot[0] >= height]

    def prune_below(self, height: int) -> int:
        with self._lock:
            self._owner._check_open()
            doomed = [slot for slot in self._records if slot[0] < height]
            for slot in doomed:
                del self._records[slot]
            return len(doomed)

    def save_prepared(self, certificate: PreparedCertificate, block: Block) -> None:
        check_prepared(certificate, block)
        with self._lock:
            self._owner._check_open()
            self._prepared = (certificate, block)

    def load_prepared(self) -> tuple[PreparedCertificate, Block] | None:
        self._owner._check_open()
        return self._prepared
