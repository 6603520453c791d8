"""LevelDB-specific behaviour: persistence, opening in every wrong situation, and audits.

The situations are real: a second process holding the lock, a garbage ``CURRENT`` file, a
directory of someone else's files, a store of another chain, records damaged behind the
store's back. Each test also proves that nothing was overwritten (the damaged or foreign
data is byte-for-byte unchanged, and the right store still opens afterwards), and that the
message names the directory, since that is what an operator has to go on.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import plyvel
import pytest

from ledger import codec
from ledger.types import SafetyRecord, sha256
from storage import (
    SCHEMA_VERSION,
    ChainMismatchError,
    InconsistentCommitError,
    LevelDBStore,
    SafetyViolation,
    SchemaVersionError,
    StorageError,
    StoreCorruptedError,
    StoreLockedError,
    StoreNotFoundError,
    open_store,
)
from storage.leveldb import (
    BODY_PREFIX,
    CERT_PREFIX,
    HASH_PREFIX,
    HEAD_KEY,
    HEADER_PREFIX,
    IDENTITY_KEY,
    SAFETY_PREFIX,
    STATE_PREFIX,
    TX_PREFIX,
    WRITE_SET_PREFIX,
)
from tests.storage.conftest import (
    CHAIN_ID,
    GENESIS_HASH,
    ChainBuilder,
    Commit,
    Snapshot,
    commit_all,
    make_chain,
)

ROOT = Path(__file__).resolve().parents[2]


def _open(path: Path, *, create: bool = False, chain_id: str = CHAIN_ID) -> LevelDBStore:
    genesis = GENESIS_HASH if chain_id == CHAIN_ID else sha256(chain_id.encode())
    return open_store(path, chain_id=chain_id, genesis_hash=genesis, create=create)


@contextmanager
def raw_db(path: Path) -> Iterator[plyvel.DB]:
    """The store's LevelDB opened directly, to inspect or damage it behind the store's back."""
    db = plyvel.DB(str(path))
    try:
        yield db
    finally:
        db.close()


def dump(path: Path) -> dict[bytes, bytes]:
    with raw_db(path) as db:
        return {bytes(k): bytes(v) for k, v in db.iterator()}


def h8(height: int) -> bytes:
    return height.to_bytes(8, "big")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "store"


@pytest.fixture
def built(store_path: Path) -> list[Commit]:
    """A closed store at ``store_path`` with 3 blocks (block 3 has evidence) and 2 votes."""
    commits = make_chain(3, txs_per_block=2)
    with _open(store_path, create=True) as store:
        commit_all(store, commits)
        store.safety.record(SafetyRecord(3, 0, 2, commits[-1].block.hash))
        store.safety.record(SafetyRecord(4, 0, 1, sha256(b"proposal 4")))
    return commits


# --------------------------------------------------------------------------- persistence


def test_reopen_persists_everything(store_path: Path, built: list[Commit]) -> None:
    with _open(store_path) as store:
        assert store.latest_height() == 3
        assert store.check_consistency() == 3
        for commit in built:
            height = commit.block.height
            assert store.block(height) == commit.block
            assert store.certificate(height) == commit.cert
            assert store.block_by_hash(commit.block.hash) == commit.block
            for index, tx in enumerate(commit.block.txs):
                assert store.tx(tx.hash) == tx
                assert store.tx_location(tx.hash) == (height, index)
        assert store.state_root() == built[-1].block.header.state_root
        assert store.get(b"counter") == b"3"
        assert [r.height for r in store.safety.records_since(0)] == [3, 4]
        with pytest.raises(SafetyViolation, match="already signed"):
            store.safety.record(SafetyRecord(3, 0, 2, sha256(b"a different block")))

        chain = ChainBuilder()
        for commit in built:
            chain.accept(commit)
        nxt = chain.next()
        store.commit_block(nxt.block, nxt.cert, nxt.writes)
    with _open(store_path) as store:
        assert store.latest_height() == 4
        assert store.check_consistency() == 4


def test_create_on_an_existing_store_opens_it_unchanged(
    store_path: Path, built: list[Commit]
) -> None:
    before = dump(store_path)
    with _open(store_path, create=True) as store:
        assert store.latest_height() == 3
    assert dump(store_path) == before


def test_create_makes_missing_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "store"
    with _open(path, create=True) as store:
        assert store.latest_height() == 0
        assert store.path == str(path)
    assert (path / "CURRENT").is_file()


def test_rejected_commits_write_no_byte(store_path: Path, built: list[Commit]) -> None:
    before = dump(store_path)
    chain = ChainBuilder()
    for commit in built:
        chain.accept(commit)
    bad = [
        chain.build(height=5),
        chain.build(state_root=sha256(b"wrong")),
        built[0],
        chain.build(writes={b"k" * 2000: b"v"}),
    ]
    with _open(store_path) as store:
        for commit in bad:
            with pytest.raises(StorageError, match=re.escape(str(store_path))):
                store.commit_block(commit.block, commit.cert, commit.writes)
        with pytest.raises(SafetyViolation, match="already signed"):
            store.safety.record(SafetyRecord(4, 0, 1, sha256(b"another proposal")))
        store.safety.record(SafetyRecord(4, 0, 1, sha256(b"proposal 4")))  # no-op
    assert dump(store_path) == before


def test_arguments_are_checked_before_touching_disk(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chain id"):
        open_store(tmp_path / "s", chain_id="bad chain id!", genesis_hash=GENESIS_HASH, create=True)
    with pytest.raises(ValueError, match="32 bytes"):
        open_store(tmp_path / "s", chain_id=CHAIN_ID, genesis_hash=b"short", create=True)
    assert not (tmp_path / "s").exists()


# --------------------------------------------------------------------------- opening errors


def test_missing_directory(tmp_path: Path) -> None:
    path = tmp_path / "nowhere"
    with pytest.raises(StoreNotFoundError) as raised:
        _open(path)
    message = str(raised.value)
    assert str(path) in message
    assert "create=True" in message
    assert not path.exists()


def test_empty_directory_without_create(tmp_path: Path) -> None:
    with pytest.raises(StoreNotFoundError, match="empty"):
        _open(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("create", [False, True])
def test_directory_with_foreign_files_is_refused(tmp_path: Path, create: bool) -> None:
    (tmp_path / "thesis.tex").write_bytes(b"\\documentclass{article}")
    with pytest.raises(StoreCorruptedError) as raised:
        _open(tmp_path, create=create)
    assert str(tmp_path) in str(raised.value)
    assert "thesis.tex" in str(raised.value)
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.tex"]
    assert (tmp_path / "thesis.tex").read_bytes() == b"\\documentclass{article}"


def test_a_file_instead_of_a_directory_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "store"
    path.write_bytes(b"not a directory")
    with pytest.raises(StoreCorruptedError, match="a file, not a store directory"):
        _open(path, create=True)
    assert path.read_bytes() == b"not a directory"


def test_garbage_current_file(store_path: Path, built: list[Commit]) -> None:
    current = store_path / "CURRENT"
    good = current.read_bytes()
    current.write_bytes(b"\x00\xffgarbage")
    for create in (False, True):
        with pytest.raises(StoreCorruptedError) as raised:
            _open(store_path, create=create)
        assert str(store_path) in str(raised.value)
        assert "CURRENT" in str(raised.value)
        assert "resync from its peers" in str(raised.value)
        assert current.read_bytes() == b"\x00\xffgarbage"
    current.write_bytes(good)  # the operator restores the file: everything is still there
    with _open(store_path) as store:
        assert store.check_consistency() == 3


def test_a_leveldb_that_is_not_a_radledger_store(tmp_path: Path) -> None:
    with plyvel.DB(str(tmp_path), create_if_missing=True) as db:
        db.put(b"someone", b"else's data")
    for create in (False, True):
        with pytest.raises(StoreCorruptedError, match="not a radledger store") as raised:
            _open(tmp_path, create=create)
        assert str(tmp_path) in str(raised.value)
    assert dump(tmp_path) == {b"someone": b"else's data"}


def test_an_empty_leveldb_is_an_interrupted_create(tmp_path: Path) -> None:
    plyvel.DB(str(tmp_path), create_if_missing=True).close()
    with pytest.raises(StoreCorruptedError, match="interrupted"):
        _open(tmp_path)
    assert dump(tmp_path) == {}
    with _open(tmp_path, create=True) as store:  # creating again finishes the job
        assert store.latest_height() == 0
    with _open(tmp_path) as store:
        assert store.check_consistency() == 0


def test_store_of_another_chain(store_path: Path, built: list[Commit]) -> None:
    before = dump(store_path)
    other = "radledger-other"
    for create in (False, True):
        with pytest.raises(ChainMismatchError) as raised:
            _open(store_path, create=create, chain_id=other)
        error = raised.value
        message = str(error)
        assert str(store_path) in message
        assert repr(CHAIN_ID) in message
        assert repr(other) in message
        assert GENESIS_HASH.hex() in message
        assert sha256(other.encode()).hex() in message
        assert "not modified" in message
        assert (error.stored_chain_id, error.expected_chain_id) == (CHAIN_ID, other)
    assert dump(store_path) == before
    with _open(store_path) as store:
        assert store.check_consistency() == 3


def test_store_with_another_genesis(store_path: Path, built: list[Commit]) -> None:
    other_genesis = sha256(b"a re-issued genesis")
    with pytest.raises(ChainMismatchError) as raised:
        open_store(store_path, chain_id=CHAIN_ID, genesis_hash=other_genesis)
    assert raised.value.stored_genesis_hash == GENESIS_HASH
    assert other_genesis.hex() in str(raised.value)
    with _open(store_path) as store:
        assert store.latest_height() == 3


def test_locked_by_another_process(store_path: Path, built: list[Commit]) -> None:
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys\n"
            "from storage import open_store\n"
            "store = open_store(sys.argv[1], chain_id=sys.argv[2],"
            " genesis_hash=bytes.fromhex(sys.argv[3]))\n"
            "print('open', store.latest_height(), flush=True)\n"
            "sys.stdin.readline()\n"
            "store.close()\n",
            str(store_path),
            CHAIN_ID,
            GENESIS_HASH.hex(),
        ],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline() == "open 3\n"
        with pytest.raises(StoreLockedError) as raised:
            _open(store_path)
        assert str(store_path) in str(raised.value)
        assert "Stop the other radledger process" in str(raised.value)
        child.stdin.write("done\n")
        child.stdin.flush()
        assert child.wait(timeout=30) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with _open(store_path) as store:
        assert store.latest_height() == 3


def test_locked_by_another_handle_in_this_process(store_path: Path, built: list[Commit]) -> None:
    with _open(store_path) as first:
        with pytest.raises(StoreLockedError, match="in use"):
            _open(store_path)
        assert first.latest_height() == 3
    with _open(store_path) as again:  # closing released the lock
        assert again.latest_height() == 3


# --------------------------------------------------------------------------- damaged records


def _put(key: bytes, value: bytes) -> Callable[[plyvel.DB], None]:
    return lambda db: db.put(key, value)


def _delete(key: bytes) -> Callable[[plyvel.DB], None]:
    return lambda db: db.delete(key)


@pytest.mark.parametrize(
    ("damage", "fragment"),
    [
        (_put(IDENTITY_KEY, b"\xa0"), "metadata record"),
        (_delete(IDENTITY_KEY), "not a radledger store"),
        (_put(HEAD_KEY, b"junk"), "height pointer record"),
        (_delete(HEAD_KEY), "height pointer record"),
    ],
    ids=["garbled identity", "missing identity", "garbled head", "missing head"],
)
def test_damaged_metadata_refuses_to_open(
    store_path: Path,
    built: list[Commit],
    damage: Callable[[plyvel.DB], None],
    fragment: str,
) -> None:
    with raw_db(store_path) as db:
        damage(db)
    before = dump(store_path)
    with pytest.raises(StoreCorruptedError, match=fragment) as raised:
        _open(store_path)
    assert str(store_path) in str(raised.value)
    assert dump(store_path) == before


def test_newer_schema_refuses_to_open(store_path: Path, built: list[Commit]) -> None:
    record = {"schema": SCHEMA_VERSION + 1, "chain_id": CHAIN_ID, "genesis_hash": GENESIS_HASH}
    with raw_db(store_path) as db:
        db.put(IDENTITY_KEY, codec.encode(record))
    with pytest.raises(SchemaVersionError, match="newer") as raised:
        _open(store_path)
    assert str(store_path) in str(raised.value)


def test_height_pointer_not_matching_its_block_refuses_to_open(
    store_path: Path, built: list[Commit]
) -> None:
    head = {"height": 3, "block_hash": built[1].block.hash, "state_root": bytes(32)}
    with raw_db(store_path) as db:
        db.put(HEAD_KEY, codec.encode(head))
    with pytest.raises(StoreCorruptedError, match="does not match the block"):
        _open(store_path)


def _rewind_head(db: plyvel.DB, commits: list[Commit]) -> None:
    block = commits[1].block
    head = {"height": 2, "block_hash": block.hash, "state_root": block.header.state_root}
    db.put(HEAD_KEY, codec.encode(head))


def _relink_block_2(db: plyvel.DB, commits: list[Commit]) -> None:
    header = dataclasses.replace(commits[1].block.header, prev_hash=sha256(b"elsewhere"))
    db.put(HEADER_PREFIX + h8(2), header.encode())


def _misplace_tx(db: plyvel.DB, commits: list[Commit]) -> None:
    tx = commits[1].block.txs[0]
    db.put(TX_PREFIX + tx.hash, h8(2) + (1).to_bytes(4, "big") + tx.encode())


def _tamper_write_set(db: plyvel.DB, commits: list[Commit]) -> None:
    db.put(WRITE_SET_PREFIX + h8(2), codec.encode([[b"counter", b"tampered"]]))


def _tamper_state(db: plyvel.DB, commits: list[Commit]) -> None:
    db.put(STATE_PREFIX + b"counter", b"tampered")


def _wrong_hash_index(db: plyvel.DB, commits: list[Commit]) -> None:
    db.put(HASH_PREFIX + commits[1].block.hash, h8(1))


def _stray_tx_record(db: plyvel.DB, commits: list[Commit]) -> None:
    tx = commits[0].block.txs[0]
    db.put(TX_PREFIX + sha256(b"stray"), h8(1) + bytes(4) + tx.encode())


def _misfiled_vote(db: plyvel.DB, commits: list[Commit]) -> None:
    record = SafetyRecord(9, 0, 1, sha256(b"vote"))
    db.put(SAFETY_PREFIX + h8(8) + h8(0) + b"\x01", record.encode())


Damage = Callable[[plyvel.DB, list[Commit]], None]

AUDIT_DEFECTS: dict[str, tuple[Damage, str]] = {
    "missing middle certificate": (
        lambda db, c: db.delete(CERT_PREFIX + h8(2)),
        "certificate of block 2 is missing",
    ),
    "missing latest certificate": (
        lambda db, c: db.delete(CERT_PREFIX + h8(3)),
        "highest stored certificate is at height 2",
    ),
    "certificate of another block": (
        lambda db, c: db.put(CERT_PREFIX + h8(2), c[0].cert.encode()),
        "certificate stored at height 2 is for",
    ),
    "header beyond the pointer": (
        lambda db, c: db.put(HEADER_PREFIX + h8(4), c[2].block.header.encode()),
        "highest stored block header is at height 4",
    ),
    "pointer rewound": (_rewind_head, "the height pointer is 2 but the highest stored"),
    "garbled header": (
        lambda db, c: db.put(HEADER_PREFIX + h8(2), b"\xff"),
        "header of block 2 does not decode",
    ),
    "garbled body": (lambda db, c: db.put(BODY_PREFIX + h8(2), b"\x80"), "body of block 2"),
    "missing body": (lambda db, c: db.delete(BODY_PREFIX + h8(2)), "no body"),
    "broken prev link": (_relink_block_2, "block 2's prev_hash"),
    "missing tx": (
        lambda db, c: db.delete(TX_PREFIX + c[1].block.txs[1].hash),
        "transaction 1 of block 2",
    ),
    "misplaced tx": (_misplace_tx, "is recorded at (2, 1)"),
    "stray tx record": (_stray_tx_record, "7 transaction index entries for 6 transactions"),
    "missing hash index entry": (
        lambda db, c: db.delete(HASH_PREFIX + c[0].block.hash),
        "2 block-hash index entries for 3 blocks",
    ),
    "wrong hash index entry": (_wrong_hash_index, "maps block 2's hash to height 1"),
    "missing write set": (
        lambda db, c: db.delete(WRITE_SET_PREFIX + h8(2)),
        "write set of block 2 is missing",
    ),
    "tampered write set": (_tamper_write_set, "recomputed through block 2"),
    "tampered state value": (_tamper_state, "does not hold the value last written"),
    "extra state key": (
        lambda db, c: db.put(STATE_PREFIX + b"intruder", b"x"),
        "is set but no committed write set",
    ),
    "missing state key": (
        lambda db, c: db.delete(STATE_PREFIX + b"counter"),
        "1 state keys written by committed blocks are missing",
    ),
    "misfiled safety record": (_misfiled_vote, "misfiled"),
}


@pytest.mark.parametrize("defect", sorted(AUDIT_DEFECTS))
def test_check_consistency_finds_each_defect(
    store_path: Path, built: list[Commit], defect: str
) -> None:
    damage, fragment = AUDIT_DEFECTS[defect]
    with raw_db(store_path) as db:
        damage(db, built)
    before = dump(store_path)
    with _open(store_path) as store, pytest.raises(StoreCorruptedError) as raised:
        store.check_consistency()
    message = str(raised.value)
    assert fragment in message
    assert message.startswith(f"{store_path}: ")
    assert dump(store_path) == before


def test_damaged_records_raise_on_read(store_path: Path, built: list[Commit]) -> None:
    tx = built[0].block.txs[0]
    with raw_db(store_path) as db:
        db.put(CERT_PREFIX + h8(1), b"\x00")
        db.put(TX_PREFIX + tx.hash, h8(1) + bytes(4) + b"\xf6")
        db.put(WRITE_SET_PREFIX + h8(1), codec.encode([[b"b", None], [b"a", None]]))
    with _open(store_path) as store:
        with pytest.raises(StoreCorruptedError, match="certificate of block 1 does not decode"):
            store.certificate(1)
        with pytest.raises(StoreCorruptedError, match=f"transaction {tx.hash.hex()}"):
            store.tx(tx.hash)
        with pytest.raises(StoreCorruptedError, match="keys out of order"):
            store.write_set(1)
        with pytest.raises(StoreCorruptedError, match="transaction 0 of block 1"):
            store.block(1)
        assert store.block(2) == built[1].block  # the rest still reads


def test_stale_commit_after_reopen_is_still_rejected(store_path: Path, built: list[Commit]) -> None:
    with _open(store_path) as store:
        before = Snapshot.of(store)
        with pytest.raises(InconsistentCommitError, match="next must be 4"):
            store.commit_block(built[2].block, built[2].cert, built[2].writes)
        assert Snapshot.of(store) == before
