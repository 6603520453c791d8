"""The node's store: one LevelDB directory (through plyvel) holding blocks, state and votes.

Layout (``docs/STORAGE.md`` has the full table): every record lives under a short ASCII
prefix, heights are 8-byte big-endian so that bytewise key order is height order, and a
block is split into its header, its body (the transaction hashes and the evidence) and one
record per transaction, which doubles as the transaction index. That split lets a
transaction be read by hash, and a block's hash be read by height, with one small read
instead of decoding a whole block of up to 100 000 transactions.

Durability and atomicity come from LevelDB: :meth:`LevelDBStore.commit_block` writes one
``write_batch(transaction=True, sync=True)``, which LevelDB appends to its log as a single
checksummed record and fsyncs before returning, so after a crash a block is either wholly
present or wholly absent. A batch torn by a power cut fails its checksum and is dropped on
the next open (``paranoid_checks`` stays off for exactly that reason); it can only ever be a
batch whose commit had not returned. Safety records are written with ``put(..., sync=True)``.

LevelDB's own ``LOCK`` file gives the one-process (one-handle) guarantee, which is also why
the cached height pointer in this class can be trusted: nobody else writes the directory.

Every plyvel call goes through :class:`_Db`, which types the results and turns plyvel's
exceptions into :mod:`storage.errors`.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import plyvel

from ledger import codec
from ledger.errors import DecodeError, LedgerError
from ledger.types import (
    HASH_BYTES,
    Block,
    BlockHeader,
    CommitCertificate,
    DuplicateVoteEvidence,
    PreparedCertificate,
    SafetyRecord,
    Tx,
)
from storage import state_root
from storage.api import (
    SCHEMA_VERSION,
    check_commit,
    check_identity,
    check_key,
    check_prepared,
    validated_writes,
)
from storage.base import StoreLifecycle
from storage.consistency import Census, audit
from storage.errors import (
    CORRUPTION_ACTION,
    ChainMismatchError,
    SafetyViolation,
    SchemaVersionError,
    StorageError,
    StoreClosedError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
)

__all__ = ["LevelDBSafetyStore", "LevelDBStore", "open_store"]

# Key prefixes; see docs/STORAGE.md. Never reuse or change one without a schema bump.
IDENTITY_KEY: Final = b"meta/identity"
HEAD_KEY: Final = b"meta/head"
HEADER_PREFIX: Final = b"hdr/"
BODY_PREFIX: Final = b"body/"
CERT_PREFIX: Final = b"cert/"
HASH_PREFIX: Final = b"hash/"
TX_PREFIX: Final = b"tx/"
WRITE_SET_PREFIX: Final = b"wset/"
STATE_PREFIX: Final = b"state/"
SAFETY_PREFIX: Final = b"safety/"
PREPARED_KEY: Final = b"meta/prepared"

_HEIGHT_BYTES: Final = 8
_INDEX_BYTES: Final = 4
_TX_LOCATION_BYTES: Final = _HEIGHT_BYTES + _INDEX_BYTES
_SLOT_BYTES: Final = 2 * _HEIGHT_BYTES + 1

_IO_ACTION: Final = (
    "Check that the directory is readable and writable by the node's user and that the disk "
    "is not full"
)
_LOCKED_ACTION: Final = (
    "Stop the other radledger process using this directory (or close the other handle in this "
    "process) and retry; two nodes must never share a data directory"
)


def _height_key(prefix: bytes, height: int) -> bytes:
    return prefix + height.to_bytes(_HEIGHT_BYTES, "big")


def _slot_key(height: int, view: int, phase: int) -> bytes:
    return (
        SAFETY_PREFIX
        + height.to_bytes(_HEIGHT_BYTES, "big")
        + view.to_bytes(_HEIGHT_BYTES, "big")
        + bytes((phase,))
    )


# --------------------------------------------------------------------------- typed plyvel


class _Db:
    """The only code that touches plyvel: typed results, translated exceptions."""

    def __init__(self, path: str, db: Any) -> None:
        self._path = path
        self._db = db

    def _error(self, exc: Exception) -> StorageError:
        """Our typed error for one of plyvel's."""
        if isinstance(exc, plyvel.CorruptionError):
            return StoreCorruptedError(
                self._path, f"LevelDB reports corruption: {_message(exc)}", CORRUPTION_ACTION
            )
        if isinstance(exc, plyvel.IOError):
            return StorageError(self._path, f"I/O error: {_message(exc)}", _IO_ACTION)
        if isinstance(exc, plyvel.Error):
            return StorageError(self._path, f"LevelDB error: {_message(exc)}", _IO_ACTION)
        return StoreClosedError(self._path)  # plyvel: "Database is closed" / "Iterator is closed"

    @contextlib.contextmanager
    def _translated(self) -> Iterator[None]:
        try:
            yield
        except (plyvel.Error, RuntimeError) as exc:
            raise self._error(exc) from exc

    def get(self, key: bytes) -> bytes | None:
        # No context manager here: this is the hot path (every state read).
        try:
            value: object = self._db.get(key)
        except (plyvel.Error, RuntimeError) as exc:
            raise self._error(exc) from exc
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"plyvel returned {type(value).__name__} for a value")
        return value

    def put(self, key: bytes, value: bytes, *, sync: bool) -> None:
        with self._translated():
            self._db.put(key, value, sync=sync)

    def write(
        self, puts: Iterable[tuple[bytes, bytes]], deletes: Iterable[bytes], *, sync: bool
    ) -> None:
        """Apply all ``puts`` and ``deletes`` atomically (one LevelDB batch)."""
        with self._translated(), self._db.write_batch(transaction=True, sync=sync) as batch:
            for key in deletes:
                batch.delete(key)
            for key, value in puts:
                batch.put(key, value)

    def items(
        self,
        *,
        prefix: bytes | None = None,
        start: bytes | None = None,
        stop: bytes | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[bytes, bytes]]:
        """An iterator over a key range. The LevelDB snapshot is taken now, not lazily."""
        with self._translated():
            raw = self._db.iterator(prefix=prefix, start=start, stop=stop, reverse=reverse)
        return self._typed_pairs(raw)

    def keys(self, *, prefix: bytes, reverse: bool = False) -> Iterator[bytes]:
        with self._translated():
            raw = self._db.iterator(prefix=prefix, reverse=reverse, include_value=False)
        return self._typed_keys(raw)

    def _typed_pairs(self, raw: Any) -> Iterator[tuple[bytes, bytes]]:
        with self._translated():
            for key, value in raw:
                yield bytes(key), bytes(value)

    def _typed_keys(self, raw: Any) -> Iterator[bytes]:
        with self._translated():
            for key in raw:
                yield bytes(key)

    def is_empty(self) -> bool:
        return next(self.keys(prefix=b""), None) is None

    def close(self) -> None:
        with self._translated():
            self._db.close()


def _message(exc: BaseException) -> str:
    """plyvel puts LevelDB's status string in ``args[0]`` as bytes; make it readable."""
    arg = exc.args[0] if exc.args else ""
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


# --------------------------------------------------------------------------- metadata


@dataclass(frozen=True, slots=True)
class _Head:
    """The height pointer with the latest block's hash and the state root after it."""

    height: int
    block_hash: bytes
    state_root: bytes

    def encode(self) -> bytes:
        return codec.encode(
            {"height": self.height, "block_hash": self.block_hash, "state_root": self.state_root}
        )


def _decode_record(data: bytes, names: frozenset[str]) -> dict[str, codec.Value] | None:
    """Decode a metadata map with exactly the fields ``names``, or ``None`` if it is not one."""
    try:
        value = codec.decode(data, max_bytes=4096)
    except DecodeError:
        return None
    if not isinstance(value, dict) or set(value) != names:
        return None
    return value


def _decode_head(data: bytes) -> _Head | None:
    fields = _decode_record(data, frozenset({"height", "block_hash", "state_root"}))
    if fields is None:
        return None
    height, block_hash, root = fields["height"], fields["block_hash"], fields["state_root"]
    if (
        not isinstance(height, int)
        or isinstance(height, bool)
        or height < 0
        or not isinstance(block_hash, bytes)
        or len(block_hash) != HASH_BYTES
        or not isinstance(root, bytes)
        or len(root) != state_root.ROOT_BYTES
    ):
        return None
    return _Head(height, block_hash, root)


def _decode_identity(data: bytes) -> tuple[int, str, bytes] | None:
    """``(schema, chain id, genesis hash)`` from the identity record, or ``None``."""
    fields = _decode_record(data, frozenset({"schema", "chain_id", "genesis_hash"}))
    if fields is None:
        return None
    schema, chain_id, genesis_hash = fields["schema"], fields["chain_id"], fields["genesis_hash"]
    if (
        not isinstance(schema, int)
        or isinstance(schema, bool)
        or not isinstance(chain_id, str)
        or not isinstance(genesis_hash, bytes)
    ):
        return None
    return schema, chain_id, genesis_hash


# --------------------------------------------------------------------------- the store


class LevelDBStore(StoreLifecycle):
    """Blocks, registry state and safety records in one LevelDB directory.

    Open with :func:`open_store` (or :meth:`open`); use as a context manager or call
    :meth:`close`, which releases the directory lock. Thread-safe: writers are serialised
    by a lock, and reads see either the state before or after any commit.
    """

    def __init__(
        self, path: str, db: _Db, *, chain_id: str, genesis_hash: bytes, head: _Head
    ) -> None:
        """Internal: use :func:`open_store`, which checks the directory and the metadata."""
        self._path = path
        self._db = db
        self._chain_id = chain_id
        self._genesis_hash = genesis_hash
        self._head = head
        self._lock = threading.Lock()
        self._closed = False
        self._safety = LevelDBSafetyStore(self)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        *,
        chain_id: str,
        genesis_hash: bytes,
        create: bool = False,
    ) -> LevelDBStore:
        """Open the store at ``path`` for the given chain; see :func:`open_store`."""
        check_identity(chain_id, genesis_hash)
        directory = Path(path).absolute()
        label = str(directory)
        fresh = _check_directory(directory, label, create=create)
        db = _open_leveldb(directory, label, create_if_missing=fresh)
        try:
            head = _load_or_init_metadata(
                db, label, chain_id=chain_id, genesis_hash=genesis_hash, create=create
            )
            store = cls(label, db, chain_id=chain_id, genesis_hash=genesis_hash, head=head)
            store._check_head()
        except BaseException:
            db.close()
            raise
        return store

    # ----------------------------------------------------------------- identity, lifecycle

    @property
    def safety(self) -> LevelDBSafetyStore:
        return self._safety

    def close(self) -> None:
        with self._lock:
            if not self._closed:
                self._closed = True
                self._db.close()

    def _corrupted(self, problem: str) -> StoreCorruptedError:
        return StoreCorruptedError(self._path, problem, CORRUPTION_ACTION)

    def _check_head(self) -> None:
        """Cheap sanity check at open: the height pointer names a stored block."""
        head = self._head
        if head.height == 0:
            if (head.block_hash, head.state_root) != (
                self._genesis_hash,
                state_root.initial_root(self._genesis_hash),
            ):
                raise self._corrupted("the height pointer of the empty store is garbled")
            return
        header = self.header(head.height)
        if header is None:
            raise self._corrupted(
                f"the height pointer says {head.height} but there is no block at that height"
            )
        if (header.hash, header.state_root) != (head.block_hash, head.state_root):
            raise self._corrupted(
                f"the height pointer does not match the block stored at height {head.height}"
            )

    # ----------------------------------------------------------------- blocks

    def latest_height(self) -> int:
        self._check_open()
        return self._head.height

    def commit_block(
        self, block: Block, cert: CommitCertificate, writes: Mapping[bytes, bytes | None]
    ) -> None:
        with self._lock:
            self._check_open()
            head = self._head
            checked = validated_writes(self._path, writes)
            new_root = state_root.next_root(head.state_root, checked)
            check_commit(
                self._path,
                chain_id=self._chain_id,
                latest_height=head.height,
                latest_hash=head.block_hash,
                block=block,
                cert=cert,
                prospective_root=new_root,
                tx_location=self.tx_location,
            )
            height = block.height
            new_head = _Head(height, block.hash, new_root)
            body = codec.encode(
                [[tx.hash for tx in block.txs], [e.encode() for e in block.evidence]]
            )
            puts: list[tuple[bytes, bytes]] = [
                (_height_key(HEADER_PREFIX, height), block.header.encode()),
                (_height_key(BODY_PREFIX, height), body),
                (_height_key(CERT_PREFIX, height), cert.encode()),
                (HASH_PREFIX + block.hash, height.to_bytes(_HEIGHT_BYTES, "big")),
                (
                    _height_key(WRITE_SET_PREFIX, height),
                    codec.encode([[key, value] for key, value in checked.items()]),
                ),
            ]
            location = height.to_bytes(_HEIGHT_BYTES, "big")
            for index, tx in enumerate(block.txs):
                puts.append(
                    (
                        TX_PREFIX + tx.hash,
                        location + index.to_bytes(_INDEX_BYTES, "big") + tx.encode(),
                    )
                )
            deletes: list[bytes] = []
            for key, value in checked.items():
                if value is None:
                    deletes.append(STATE_PREFIX + key)
                else:
                    puts.append((STATE_PREFIX + key, value))
            puts.append((HEAD_KEY, new_head.encode()))
            self._db.write(puts, deletes, sync=True)
            self._head = new_head

    def header(self, height: int) -> BlockHeader | None:
        self._check_open()
        if not 0 < height < 1 << 64:
            return None
        data = self._db.get(_height_key(HEADER_PREFIX, height))
        if data is None:
            return None
        try:
            header = BlockHeader.decode(data)
        except DecodeError as exc:
            raise self._corrupted(f"the header of block {height} does not decode: {exc}") from exc
        if header.height != height:
            raise self._corrupted(f"the header stored at height {height} is for {header.height}")
        return header

    def block(self, height: int) -> Block | None:
        header = self.header(height)
        if header is None:
            return None
        data = self._db.get(_height_key(BODY_PREFIX, height))
        if data is None:
            raise self._corrupted(f"block {height} has a header but no body")
        tx_hashes, evidence = self._decode_body(height, data)
        txs: list[Tx] = []
        for index, tx_hash in enumerate(tx_hashes):
            what = f"transaction {index} of block {height} ({tx_hash.hex()})"
            record = self._db.get(TX_PREFIX + tx_hash)
            if record is None:
                raise self._corrupted(f"{what} is missing")
            at_height, at_index, tx = self._decode_tx_record(tx_hash, record, what)
            if (at_height, at_index) != (height, index):
                raise self._corrupted(f"{what} is recorded at ({at_height}, {at_index})")
            txs.append(tx)
        try:
            return Block(header, tuple(txs), tuple(evidence))
        except LedgerError as exc:
            raise self._corrupted(f"block {height} does not reassemble: {exc}") from exc

    def _decode_body(
        self, height: int, data: bytes
    ) -> tuple[list[bytes], list[DuplicateVoteEvidence]]:
        problem = f"the body of block {height} is garbled"
        try:
            value = codec.decode(data)
        except DecodeError as exc:
            raise self._corrupted(f"{problem}: {exc}") from exc
        if not (isinstance(value, list) and len(value) == 2):
            raise self._corrupted(problem)
        hashes, evidence = value
        if not (isinstance(hashes, list) and isinstance(evidence, list)):
            raise self._corrupted(problem)
        if not all(isinstance(h, bytes) and len(h) == HASH_BYTES for h in hashes):
            raise self._corrupted(problem)
        decoded: list[DuplicateVoteEvidence] = []
        for item in evidence:
            if not isinstance(item, bytes):
                raise self._corrupted(problem)
            try:
                decoded.append(DuplicateVoteEvidence.decode(item))
            except DecodeError as exc:
                raise self._corrupted(f"{problem}: {exc}") from exc
        return [h for h in hashes if isinstance(h, bytes)], decoded

    def _decode_tx_record(self, tx_hash: bytes, record: bytes, what: str) -> tuple[int, int, Tx]:
        """``(height, index, tx)`` from a transaction record; ``what`` names it in errors."""
        height, index = self._decode_location(record, what)
        try:
            tx = Tx.decode(record[_TX_LOCATION_BYTES:])
        except DecodeError as exc:
            raise self._corrupted(f"{what} does not decode: {exc}") from exc
        if tx.hash != tx_hash:
            raise self._corrupted(f"the record of {what} holds another transaction")
        return height, index, tx

    def _decode_location(self, record: bytes, what: str) -> tuple[int, int]:
        if len(record) <= _TX_LOCATION_BYTES:
            raise self._corrupted(f"the record of {what} is truncated")
        height = int.from_bytes(record[:_HEIGHT_BYTES], "big")
        index = int.from_bytes(record[_HEIGHT_BYTES:_TX_LOCATION_BYTES], "big")
        return height, index

    def block_by_hash(self, block_hash: bytes) -> Block | None:
        height = self.height_of(block_hash)
        return None if height is None else self.block(height)

    def height_of(self, block_hash: bytes) -> int | None:
        self._check_open()
        data = self._db.get(HASH_PREFIX + block_hash)
        if data is None:
            return None
        if len(data) != _HEIGHT_BYTES:
            raise self._corrupted(f"the hash index entry of block {block_hash.hex()} is garbled")
        return int.from_bytes(data, "big")

    def block_hash(self, height: int) -> bytes | None:
        head = self._head
        if height == head.height and height > 0:
            self._check_open()
            return head.block_hash
        header = self.header(height)
        return None if header is None else header.hash

    def certificate(self, height: int) -> CommitCertificate | None:
        self._check_open()
        if not 0 < height < 1 << 64:
            return None
        data = self._db.get(_height_key(CERT_PREFIX, height))
        if data is None:
            return None
        try:
            return CommitCertificate.decode(data)
        except DecodeError as exc:
            raise self._corrupted(
                f"the certificate of block {height} does not decode: {exc}"
            ) from exc

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None:
        self._check_open()
        record = self._db.get(TX_PREFIX + tx_hash)
        if record is None:
            return None
        return self._decode_location(record, f"transaction {tx_hash.hex()}")

    def tx(self, tx_hash: bytes) -> Tx | None:
        self._check_open()
        record = self._db.get(TX_PREFIX + tx_hash)
        if record is None:
            return None
        return self._decode_tx_record(tx_hash, record, f"transaction {tx_hash.hex()}")[2]

    def write_set(self, height: int) -> dict[bytes, bytes | None] | None:
        self._check_open()
        if not 0 < height < 1 << 64:
            return None
        data = self._db.get(_height_key(WRITE_SET_PREFIX, height))
        if data is None:
            return None
        problem = f"the write set of block {height} is garbled"
        try:
            value = codec.decode(data)
        except DecodeError as exc:
            raise self._corrupted(f"{problem}: {exc}") from exc
        if not isinstance(value, list):
            raise self._corrupted(problem)
        writes: dict[bytes, bytes | None] = {}
        previous: bytes | None = None
        for pair in value:
            if not (isinstance(pair, list) and len(pair) == 2):
                raise self._corrupted(problem)
            key, item = pair
            if not isinstance(key, bytes) or not (item is None or isinstance(item, bytes)):
                raise self._corrupted(problem)
            if previous is not None and key <= previous:
                raise self._corrupted(f"{problem}: keys out of order")
            writes[key] = item
            previous = key
        return writes

    # ----------------------------------------------------------------- state

    def get(self, key: bytes) -> bytes | None:
        self._check_open()
        check_key(self._path, key)
        return self._db.get(STATE_PREFIX + key)

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]:
        self._check_open()
        check_key(self._path, prefix)
        return _strip(self._db.items(prefix=STATE_PREFIX + prefix), len(STATE_PREFIX))

    def state_root(self) -> bytes:
        self._check_open()
        return self._head.state_root

    def prospective_root(self, writes: Mapping[bytes, bytes | None]) -> bytes:
        self._check_open()
        return state_root.next_root(self._head.state_root, validated_writes(self._path, writes))

    # ----------------------------------------------------------------- audit

    def census(self) -> Census:
        """Record counts for :func:`storage.consistency.audit`; O(index entries)."""
        self._check_open()
        return Census(
            highest_header=self._highest(HEADER_PREFIX),
            highest_body=self._highest(BODY_PREFIX),
            highest_certificate=self._highest(CERT_PREFIX),
            highest_write_set=self._highest(WRITE_SET_PREFIX),
            block_hash_entries=sum(1 for _ in self._db.keys(prefix=HASH_PREFIX)),
            tx_index_entries=sum(1 for _ in self._db.keys(prefix=TX_PREFIX)),
        )

    def _highest(self, prefix: bytes) -> int:
        last = next(self._db.keys(prefix=prefix, reverse=True), None)
        if last is None:
            return 0
        if len(last) != len(prefix) + _HEIGHT_BYTES:
            raise self._corrupted(f"a record under {prefix.decode()} has a malformed key")
        return int.from_bytes(last[len(prefix) :], "big")

    def check_consistency(self) -> int:
        with self._lock:
            self._check_open()
            return audit(self)


def _strip(pairs: Iterator[tuple[bytes, bytes]], n: int) -> Iterator[tuple[bytes, bytes]]:
    for key, value in pairs:
        yield key[n:], value


class LevelDBSafetyStore:
    """Safety records of a :class:`LevelDBStore`, under ``safety/`` + slot."""

    def __init__(self, owner: LevelDBStore) -> None:
        self._owner = owner
        self._lock = threading.Lock()

    def _decode(self, key: bytes, data: bytes) -> SafetyRecord:
        try:
            record = SafetyRecord.decode(data)
        except DecodeError as exc:
            raise self._owner._corrupted(f"a safety record does not decode: {exc}") from exc
        if _slot_key(*record.slot) != key:
            raise self._owner._corrupted(f"the safety record for {record.slot} is misfiled")
        return record

    def record(self, r: SafetyRecord) -> None:
        if not isinstance(r, SafetyRecord):
            raise TypeError(f"expected a SafetyRecord, got {type(r).__name__}")
        key = _slot_key(*r.slot)
        with self._lock:
            self._owner._check_open()
            data = self._owner._db.get(key)
            if data is not None:
                existing = self._decode(key, data)
                if existing.digest != r.digest:
                    raise SafetyViolation(
                        self._owner.path,
                        slot=r.slot,
                        recorded_digest=existing.digest,
                        attempted_digest=r.digest,
                    )
                return
            self._owner._db.put(key, r.encode(), sync=True)

    def get(self, height: int, view: int, phase: int) -> SafetyRecord | None:
        self._owner._check_open()
        if not (0 <= height < 1 << 64 and 0 <= view < 1 << 64 and 0 <= phase <= 0xFF):
            return None
        key = _slot_key(height, view, phase)
        data = self._owner._db.get(key)
        return None if data is None else self._decode(key, data)

    def records_since(self, height: int) -> list[SafetyRecord]:
        self._owner._check_open()
        if height >= 1 << 64:
            return []
        pairs = self._owner._db.items(
            start=_slot_key(max(height, 0), 0, 0), stop=_prefix_end(SAFETY_PREFIX)
        )
        return [self._decode(key, data) for key, data in pairs]

    def prune_below(self, height: int) -> int:
        """Delete records below ``height``. Not fsynced: losing a prune only keeps old records."""
        with self._lock:
            self._owner._check_open()
            if height <= 0:
                return 0
            stop = _prefix_end(SAFETY_PREFIX) if height >= 1 << 64 else _slot_key(height, 0, 0)
            doomed = [key for key, _ in self._owner._db.items(start=SAFETY_PREFIX, stop=stop)]
            if doomed:
                self._owner._db.write((), doomed, sync=False)
            return len(doomed)

    def save_prepared(self, certificate: PreparedCertificate, block: Block) -> None:
        """One fsynced put of ``[certificate, block]`` under ``meta/prepared``."""
        check_prepared(certificate, block)
        value = codec.encode([certificate.encode(), block.encode()])
        with self._lock:
            self._owner._check_open()
            self._owner._db.put(PREPARED_KEY, value, sync=True)

    def load_prepared(self) -> tuple[PreparedCertificate, Block] | None:
        self._owner._check_open()
        data = self._owner._db.get(PREPARED_KEY)
        if data is None:
            return None
        try:
            value = codec.decode(data)
            if not (isinstance(value, list) and len(value) == 2):
                raise DecodeError("expected [certificate, block]")
            cert_bytes, block_bytes = value
            if not (isinstance(cert_bytes, bytes) and isinstance(block_bytes, bytes)):
                raise DecodeError("expected two byte strings")
            certificate = PreparedCertificate.decode(cert_bytes)
            block = Block.decode(block_bytes)
        except DecodeError as exc:
            raise self._owner._corrupted(
                f"the saved prepared certificate is garbled: {exc}"
            ) from exc
        return certificate, block


def _prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key starting with ``prefix`` (prefix is ASCII)."""
    return prefix[:-1] + bytes((prefix[-1] + 1,))


# --------------------------------------------------------------------------- opening


def open_store(
    path: str | os.PathLike[str], *, chain_id: str, genesis_hash: bytes, create: bool = False
) -> LevelDBStore:
    """Open the LevelDB store at ``path`` for chain ``chain_id`` with ``genesis_hash``.

    With ``create=False`` the directory must hold a radledger store; with ``create=True`` it
    may also be missing or empty, and a new store is created there. An existing store is
    opened, never overwritten, in either mode; its chain id and genesis hash must match
    (:class:`~storage.errors.ChainMismatchError` otherwise). A non-empty directory that is
    not a radledger store is refused (:class:`~storage.errors.StoreCorruptedError`) even
    with ``create=True``, so a mistyped path never scatters LevelDB files among someone
    else's. A store in use raises :class:`~storage.errors.StoreLockedError`.
    """
    return LevelDBStore.open(path, chain_id=chain_id, genesis_hash=genesis_hash, create=create)


def _check_directory(directory: Path, label: str, *, create: bool) -> bool:
    """Vet ``directory`` before LevelDB touches it; return whether to create a new store."""
    if not directory.exists():
        if not create:
            raise StoreNotFoundError(
                label,
                "no store exists at this path",
                "Check the data directory setting, or create a new store there "
                "(open with create=True, as node initialisation does)",
            )
        try:
            directory.mkdir(parents=True)
        except OSError as exc:
            raise StorageError(
                label, f"cannot create the directory: {exc.strerror}", _IO_ACTION
            ) from exc
        return True
    if not directory.is_dir():
        raise StoreCorruptedError(
            label,
            "this is a file, not a store directory",
            "Nothing was changed. Point the node at a store directory",
        )
    if (directory / "CURRENT").exists():
        return False
    try:
        names = sorted(entry.name for entry in directory.iterdir())
    except OSError as exc:
        raise StorageError(label, f"cannot list the directory: {exc.strerror}", _IO_ACTION) from exc
    if names:
        shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
        raise StoreCorruptedError(
            label,
            f"the directory is not empty but holds no LevelDB database (found: {shown})",
            "Nothing was changed. Point the node at its store directory, or at a missing or "
            "empty directory to create a new store",
        )
    if not create:
        raise StoreNotFoundError(
            label,
            "the directory is empty: no store exists here",
            "Check the data directory setting, or create a new store here "
            "(open with create=True, as node initialisation does)",
        )
    return True


def _open_leveldb(directory: Path, label: str, *, create_if_missing: bool) -> _Db:
    try:
        raw = plyvel.DB(
            str(directory),
            create_if_missing=create_if_missing,
            error_if_exists=False,
            paranoid_checks=False,
            # Commits look up every transaction hash to refuse duplicates; nearly all of
            # those lookups miss, and a Bloom filter answers a miss without a disk read.
            bloom_filter_bits=10,
        )
    except plyvel.IOError as exc:
        message = _message(exc)
        if "lock" in message.lower():
            raise StoreLockedError(
                label, f"the store is in use ({message})", _LOCKED_ACTION
            ) from exc
        raise StorageError(label, f"cannot open the store: {message}", _IO_ACTION) from exc
    except plyvel.CorruptionError as exc:
        raise StoreCorruptedError(
            label, f"LevelDB reports corruption: {_message(exc)}", CORRUPTION_ACTION
        ) from exc
    except plyvel.Error as exc:
        raise StoreCorruptedError(
            label, f"LevelDB cannot open the directory: {_message(exc)}", CORRUPTION_ACTION
        ) from exc
    return _Db(label, raw)


def _load_or_init_metadata(
    db: _Db, label: str, *, chain_id: str, genesis_hash: bytes, create: bool
) -> _Head:
    """Check the stored identity against the expected one (or write it into a new store)."""
    identity = db.get(IDENTITY_KEY)
    if identity is None:
        if not db.is_empty():
            raise StoreCorruptedError(
                label,
                "this LevelDB database is not a radledger store (it has no metadata record)",
                "Nothing was changed. Point the node at its own store directory",
            )
        if not create:
            raise StoreCorruptedError(
                label,
                "this LevelDB database is empty and has no radledger metadata (was the creation "
                "of this store interrupted?)",
                "Nothing was changed. Remove the directory and create the store again",
            )
        head = _Head(0, genesis_hash, state_root.initial_root(genesis_hash))
        record = codec.encode(
            {"schema": SCHEMA_VERSION, "chain_id": chain_id, "genesis_hash": genesis_hash}
        )
        db.write([(IDENTITY_KEY, record), (HEAD_KEY, head.encode())], (), sync=True)
        return head

    decoded = _decode_identity(identity)
    if decoded is None:
        raise StoreCorruptedError(
            label,
            "the metadata record (chain id, genesis hash, schema) is garbled",
            CORRUPTION_ACTION,
        )
    schema, stored_chain, stored_genesis = decoded
    if schema > SCHEMA_VERSION:
        raise SchemaVersionError(
            label,
            f"the store has on-disk schema version {schema}, newer than version "
            f"{SCHEMA_VERSION} which this radledger reads",
            "Nothing was changed. Run the radledger release that wrote this store, or a newer one",
        )
    if schema < 1:  # no release ever wrote such a version
        raise StoreCorruptedError(
            label, f"the metadata record names schema version {schema}", CORRUPTION_ACTION
        )
    if (stored_chain, stored_genesis) != (chain_id, genesis_hash):
        raise ChainMismatchError(
            label,
            stored_chain_id=stored_chain,
            stored_genesis_hash=stored_genesis,
            expected_chain_id=chain_id,
            expected_genesis_hash=genesis_hash,
        )
    data = db.get(HEAD_KEY)
    stored_head = None if data is None else _decode_head(data)
    if stored_head is None:
        raise StoreCorruptedError(
            label, "the height pointer record is missing or garbled", CORRUPTION_ACTION
        )
    return stored_head
