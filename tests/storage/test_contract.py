"""The storage contract, run against both implementations (``store`` is parametrised).

Also here: the state-root construction checked against its written definition, and a
hypothesis state machine that drives the memory and LevelDB stores side by side with random
write sets (reopening LevelDB along the way) and requires identical roots and contents.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ledger import merkle
from ledger.types import PreparedCertificate, SafetyRecord, Vote, VoteKind, sha256
from storage import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    InconsistentCommitError,
    LevelDBStore,
    LimitError,
    MemoryStore,
    SafetyViolation,
    StorageError,
    Store,
    StoreClosedError,
    open_store,
)
from storage import state_root as sr
from tests.storage.conftest import (
    CHAIN_ID,
    GENESIS_HASH,
    QUORUM,
    VALIDATOR_KEYS,
    ChainBuilder,
    Commit,
    Snapshot,
    Writes,
    commit_all,
    make_certificate,
    make_chain,
)

# --------------------------------------------------------------------------- state root

_leaf = st.lists(st.sampled_from(b"ab/\x00\xff"), max_size=5).map(bytes)
write_sets = st.dictionaries(_leaf, st.none() | st.binary(max_size=12), max_size=10)
nonempty_write_sets = st.dictionaries(_leaf, st.none() | st.binary(max_size=12), min_size=1)


def test_initial_root_follows_the_definition() -> None:
    expected = hashlib.sha256(b"radledger/state/v1\x00" + GENESIS_HASH).digest()
    assert sr.initial_root(GENESIS_HASH) == expected
    assert sr.initial_root(sha256(b"another genesis")) != expected


def test_next_root_follows_the_definition_byte_for_byte() -> None:
    """Recompute a small example by hand: CBOR entries written out, RFC 6962 tree of 3."""
    prev = sr.initial_root(bytes(32))
    assert prev.hex() == "99e27319235114ec769cf8c668d06a59cd7048d16679c9df2e6adf5cf5597ec2"
    writes: Writes = {b"b": b"2", b"c": None, b"a": b"1"}
    entries = [bytes.fromhex("8241614131"), bytes.fromhex("8241624132"), bytes.fromhex("824163f6")]
    assert sr.write_set_entries(writes) == entries

    def leaf(data: bytes) -> bytes:
        return hashlib.sha256(b"\x00" + data).digest()

    def node(left: bytes, right: bytes) -> bytes:
        return hashlib.sha256(b"\x01" + left + right).digest()

    ws_root = node(node(leaf(entries[0]), leaf(entries[1])), leaf(entries[2]))
    assert sr.write_set_root(writes) == ws_root
    expected = hashlib.sha256(b"radledger/state/v1\x00" + prev + ws_root).digest()
    assert sr.next_root(prev, writes) == expected
    # Pinned so docs/STORAGE.md can quote it as a test vector for other implementations.
    assert expected.hex() == "e302bd13e91648ac99d25b01f8d1992e583d4773063b4eb8a3c54da87d4c8cc5"


def test_empty_write_set_leaves_the_root_unchanged() -> None:
    root = sr.initial_root(GENESIS_HASH)
    assert sr.next_root(root, {}) == root
    assert sr.write_set_root({}) == merkle.EMPTY_ROOT


def test_delete_differs_from_writing_an_empty_value() -> None:
    root = sr.initial_root(GENESIS_HASH)
    assert sr.next_root(root, {b"k": None}) != sr.next_root(root, {b"k": b""})


def test_roots_reject_malformed_inputs() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        sr.initial_root(b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        sr.next_root(b"short", {b"k": b"v"})
    with pytest.raises(TypeError):
        sr.write_set_entries({"text key": b"v"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        sr.write_set_entries({b"k": "text value"})  # type: ignore[dict-item]


@given(writes=write_sets, data=st.data())
def test_root_does_not_depend_on_mapping_order(writes: Writes, data: st.DataObject) -> None:
    shuffled = dict(data.draw(st.permutations(list(writes.items()))))
    root = sr.initial_root(GENESIS_HASH)
    assert sr.next_root(root, shuffled) == sr.next_root(root, writes)


@given(writes=nonempty_write_sets, data=st.data())
def test_root_changes_when_any_key_or_value_changes(writes: Writes, data: st.DataObject) -> None:
    root = sr.initial_root(GENESIS_HASH)
    original = sr.next_root(root, writes)
    key = data.draw(st.sampled_from(sorted(writes)))
    value = writes[key]
    other_values = [None, b"", b"x"] if value is None else [None, value + b"!", value[:-1] or b"?"]
    for replacement in other_values:
        if replacement != value:
            assert sr.next_root(root, {**writes, key: replacement}) != original
    renamed = dict(writes)
    del renamed[key]
    new_key = key + b"\x01"
    if new_key not in writes:
        renamed[new_key] = value
        assert sr.next_root(root, renamed) != original
    assert sr.next_root(sr.initial_root(sha256(b"other genesis")), writes) != original


# --------------------------------------------------------------------------- contract


def test_empty_store(store: Store) -> None:
    assert store.chain_id == CHAIN_ID
    assert store.genesis_hash == GENESIS_HASH
    assert store.latest_height() == 0
    assert store.state_root() == sr.initial_root(GENESIS_HASH)
    for height in (0, 1, 2):
        assert store.block(height) is None
        assert store.header(height) is None
        assert store.certificate(height) is None
        assert store.block_hash(height) is None
        assert store.write_set(height) is None
    assert store.block_by_hash(GENESIS_HASH) is None
    assert store.height_of(GENESIS_HASH) is None
    assert store.tx(sha256(b"nothing")) is None
    assert store.tx_location(sha256(b"nothing")) is None
    assert store.get(b"anything") is None
    assert list(store.items(b"")) == []
    assert store.safety.records_since(0) == []
    assert store.check_consistency() == 0


def test_committed_chain_reads_back(store: Store) -> None:
    commits = make_chain(6, txs_per_block=3)
    commit_all(store, commits)

    assert store.latest_height() == 6
    assert store.state_root() == commits[-1].block.header.state_root
    for commit in commits:
        block, height = commit.block, commit.block.height
        assert store.block(height) == block
        assert store.header(height) == block.header
        assert store.block_hash(height) == block.hash
        assert store.block_by_hash(block.hash) == block
        assert store.height_of(block.hash) == height
        assert store.certificate(height) == commit.cert
        assert store.write_set(height) == dict(sorted(commit.writes.items()))
        for index, tx in enumerate(block.txs):
            assert store.tx_location(tx.hash) == (height, index)
            assert store.tx(tx.hash) == tx
    with_evidence = store.block(3)
    assert with_evidence is not None
    assert len(with_evidence.evidence) == 1
    assert store.block(7) is None
    assert store.certificate(7) is None
    assert store.block_hash(7) is None
    assert store.check_consistency() == 6


def test_state_is_the_fold_of_the_write_sets(store: Store) -> None:
    commits = make_chain(6)
    commit_all(store, commits)
    model: dict[bytes, bytes] = {}
    for commit in commits:
        for key, value in commit.writes.items():
            if value is None:
                model.pop(key, None)
            else:
                model[key] = value
    assert dict(store.items(b"")) == model
    assert [key for key, _ in store.items(b"")] == sorted(model)
    for key, value in model.items():
        assert store.get(key) == value
    assert store.get(b"dataset/0001") is None  # deleted by block 3


def test_state_reads_deletes_and_prefix_iteration(store: Store, chain: ChainBuilder) -> None:
    first = chain.next(
        writes={b"a/2": b"two", b"a/1": b"one", b"a": b"root", b"b/1": b"bee", b"a/\xff": b""}
    )
    store.commit_block(first.block, first.cert, first.writes)
    assert list(store.items(b"a/")) == [(b"a/1", b"one"), (b"a/2", b"two"), (b"a/\xff", b"")]
    assert [key for key, _ in store.items(b"a")] == [b"a", b"a/1", b"a/2", b"a/\xff"]
    assert list(store.items(b"c")) == []
    assert store.get(b"a/\xff") == b""  # an empty value is a value, not a delete

    second = chain.next(writes={b"a/1": None, b"a/\xff": None, b"b/1": b"bee 2", b"nope": None})
    store.commit_block(second.block, second.cert, second.writes)
    assert store.get(b"a/1") is None
    assert store.get(b"a/\xff") is None
    assert store.get(b"nope") is None
    assert list(store.items(b"")) == [(b"a", b"root"), (b"a/2", b"two"), (b"b/1", b"bee 2")]
    assert store.check_consistency() == 2


def test_items_is_a_snapshot_taken_when_called(store: Store, chain: ChainBuilder) -> None:
    commit_all(store, [chain.next(writes={b"k/1": b"1", b"k/2": b"2"})])
    iterator = store.items(b"k/")
    commit_all(store, [chain.next(writes={b"k/1": None, b"k/3": b"3"})])
    assert list(iterator) == [(b"k/1", b"1"), (b"k/2", b"2")]
    assert list(store.items(b"k/")) == [(b"k/2", b"2"), (b"k/3", b"3")]


def test_prospective_root_predicts_the_commit_and_writes_nothing(
    store: Store, chain: ChainBuilder
) -> None:
    commit_all(store, make_chain(2, builder=chain))
    writes: Writes = {b"counter": b"99", b"dataset/0001": None, b"fresh": b"new"}
    before = Snapshot.of(store)
    predicted = store.prospective_root(writes)
    assert Snapshot.of(store) == before
    assert store.prospective_root({}) == store.state_root()

    commit = chain.build(writes=writes)
    assert commit.block.header.state_root == predicted
    store.commit_block(commit.block, commit.cert, writes)
    assert store.state_root() == predicted


def test_commit_copies_the_write_mapping(store: Store, chain: ChainBuilder) -> None:
    commit = chain.next(writes={b"k": b"v"})
    writes = dict(commit.writes)
    store.commit_block(commit.block, commit.cert, writes)
    writes[b"k"] = b"changed afterwards"
    assert store.get(b"k") == b"v"
    assert store.write_set(1) == {b"k": b"v"}


Case = Callable[[ChainBuilder], Commit]


def _skip_height(chain: ChainBuilder) -> Commit:
    return chain.build(height=chain.height + 2)


def _repeat_height(chain: ChainBuilder) -> Commit:
    return chain.history[-1]


def _wrong_prev_hash(chain: ChainBuilder) -> Commit:
    return chain.build(prev_hash=sha256(b"not the previous block"))


def _other_chain(chain: ChainBuilder) -> Commit:
    return chain.build(chain_id="other-chain", txs=0)


def _cert_for_other_block(chain: ChainBuilder) -> Commit:
    commit = chain.build()
    cert = make_certificate(commit.block, block_hash=sha256(b"another block"))
    return Commit(commit.block, cert, commit.writes)


def _cert_for_other_height(chain: ChainBuilder) -> Commit:
    commit = chain.build()
    return Commit(commit.block, make_certificate(commit.block, height=99), commit.writes)


def _cert_for_other_chain(chain: ChainBuilder) -> Commit:
    commit = chain.build()
    cert = make_certificate(commit.block, chain_id="other-chain")
    return Commit(commit.block, cert, commit.writes)


def _wrong_state_root(chain: ChainBuilder) -> Commit:
    return chain.build(state_root=sha256(b"not the root"))


def _writes_differ_from_header(chain: ChainBuilder) -> Commit:
    commit = chain.build()
    return Commit(commit.block, commit.cert, {**commit.writes, b"sneaky": b"extra write"})


def _tx_already_committed(chain: ChainBuilder) -> Commit:
    old_tx = chain.history[0].block.txs[0]
    return chain.build(txs=[*chain.make_txs(1), old_tx])


def _oversized_key(chain: ChainBuilder) -> Commit:
    return chain.build(writes={b"k" * (MAX_KEY_BYTES + 1): b"v"})


def _oversized_value(chain: ChainBuilder) -> Commit:
    return chain.build(writes={b"k": b"v" * (MAX_VALUE_BYTES + 1)})


REJECTIONS: dict[str, tuple[Case, type[StorageError], str]] = {
    "skips a height": (_skip_height, InconsistentCommitError, "next must be 3"),
    "repeats a height": (_repeat_height, InconsistentCommitError, "next must be 3"),
    "wrong prev_hash": (_wrong_prev_hash, InconsistentCommitError, "block 2's hash"),
    "block for another chain": (_other_chain, InconsistentCommitError, "chain 'other-chain'"),
    "cert for another block": (
        _cert_for_other_block,
        InconsistentCommitError,
        "certificate is for block",
    ),
    "cert for another height": (_cert_for_other_height, InconsistentCommitError, "height 99"),
    "cert for another chain": (
        _cert_for_other_chain,
        InconsistentCommitError,
        "certificate is for chain",
    ),
    "wrong state root": (_wrong_state_root, InconsistentCommitError, "state_root"),
    "writes differ from header": (
        _writes_differ_from_header,
        InconsistentCommitError,
        "state_root",
    ),
    "tx already committed": (
        _tx_already_committed,
        InconsistentCommitError,
        "already committed at height 1",
    ),
    "oversized key": (_oversized_key, LimitError, f"limit of {MAX_KEY_BYTES} bytes"),
    "oversized value": (_oversized_value, LimitError, f"limit of {MAX_VALUE_BYTES} bytes"),
}


@pytest.mark.parametrize("case", sorted(REJECTIONS))
def test_rejected_commit_leaves_the_store_unchanged(
    store: Store, chain: ChainBuilder, case: str
) -> None:
    commit_all(store, make_chain(2, builder=chain))
    build, error, fragment = REJECTIONS[case]
    bad = build(chain)
    before = Snapshot.of(store)

    with pytest.raises(error, match=fragment) as raised:
        store.commit_block(bad.block, bad.cert, bad.writes)

    assert store.path in str(raised.value)
    assert Snapshot.of(store) == before
    committed = {tx.hash for commit in chain.history for tx in commit.block.txs}
    for tx in bad.block.txs:
        if tx.hash not in committed:
            assert store.tx_location(tx.hash) is None
    assert store.check_consistency() == 2
    # The store is not wedged: the real next block still goes in.
    good = chain.next()
    store.commit_block(good.block, good.cert, good.writes)
    assert store.latest_height() == 3


def test_first_block_must_extend_the_stores_genesis(store: Store) -> None:
    foreign = ChainBuilder(genesis_hash=sha256(b"another genesis")).build()
    with pytest.raises(InconsistentCommitError, match="genesis hash"):
        store.commit_block(foreign.block, foreign.cert, foreign.writes)
    assert store.latest_height() == 0
    assert store.check_consistency() == 0


def test_limits_are_inclusive_and_apply_to_reads_too(store: Store, chain: ChainBuilder) -> None:
    big_key = b"k" * MAX_KEY_BYTES
    commit = chain.next(writes={big_key: b"v" * MAX_VALUE_BYTES})
    store.commit_block(commit.block, commit.cert, commit.writes)
    assert store.get(big_key) == b"v" * MAX_VALUE_BYTES
    with pytest.raises(LimitError, match="state key of 1025 bytes"):
        store.get(big_key + b"k")
    with pytest.raises(LimitError):
        store.prospective_root({b"k": b"v" * (MAX_VALUE_BYTES + 1)})
    with pytest.raises(TypeError):
        store.prospective_root({"text": b"v"})  # type: ignore[dict-item]


def test_closed_store_refuses_every_call(store: Store) -> None:
    store.close()
    store.close()  # idempotent
    calls: list[Callable[[], object]] = [
        store.latest_height,
        store.state_root,
        lambda: store.block(1),
        lambda: store.get(b"k"),
        lambda: store.items(b""),
        lambda: store.prospective_root({}),
        lambda: store.safety.get(1, 0, 1),
        lambda: store.safety.record(SafetyRecord(1, 0, 1, sha256(b"x"))),
        store.check_consistency,
    ]
    for call in calls:
        with pytest.raises(StoreClosedError, match="closed"):
            call()


# --------------------------------------------------------------------------- safety


def _record(height: int, view: int, phase: int, tag: bytes = b"a") -> SafetyRecord:
    return SafetyRecord(height, view, phase, sha256(b"%d/%d/%d/" % (height, view, phase) + tag))


def test_safety_record_round_trip_and_idempotence(store: Store) -> None:
    record = _record(5, 1, 2)
    store.safety.record(record)
    assert store.safety.get(5, 1, 2) == record
    store.safety.record(record)  # same digest again: a no-op
    assert store.safety.records_since(0) == [record]
    assert store.safety.get(5, 1, 1) is None
    assert store.safety.get(5, 2, 2) is None
    assert store.safety.get(6, 1, 2) is None


def test_safety_record_refuses_a_second_digest(store: Store) -> None:
    first = _record(5, 1, 2)
    store.safety.record(first)
    conflicting = _record(5, 1, 2, tag=b"b")
    with pytest.raises(SafetyViolation) as raised:
        store.safety.record(conflicting)
    assert raised.value.slot == (5, 1, 2)
    assert raised.value.recorded_digest == first.digest
    assert raised.value.attempted_digest == conflicting.digest
    assert store.path in str(raised.value)
    assert "must not be sent" in str(raised.value)
    assert store.safety.get(5, 1, 2) == first
    assert store.safety.records_since(0) == [first]


def test_safety_records_are_listed_in_slot_order_and_pruned(store: Store) -> None:
    slots = [(h, v, p) for h in (0, 1, 7, 300) for v in (0, 2, 256) for p in (1, 2, 255)]
    records = [_record(*slot) for slot in slots]
    for record in reversed(records):
        store.safety.record(record)
    assert store.safety.records_since(0) == records
    assert store.safety.records_since(7) == [r for r in records if r.height >= 7]
    assert store.safety.records_since(301) == []

    assert store.safety.prune_below(7) == 18
    assert store.safety.records_since(0) == [r for r in records if r.height >= 7]
    assert store.safety.prune_below(7) == 0
    assert store.safety.prune_below(0) == 0
    # Pruning forgets: consensus prunes only heights it will never vote on again.
    store.safety.record(_record(1, 0, 1, tag=b"new"))
    assert store.safety.get(1, 0, 1) == _record(1, 0, 1, tag=b"new")
    assert store.check_consistency() == 0


# --------------------------------------------------------------------------- differential

keys = st.lists(st.sampled_from(b"ab/\x00\xff"), max_size=4).map(bytes)
values = st.none() | st.binary(max_size=16)


class StoresAgree(RuleBasedStateMachine):
    """Memory and LevelDB stores fed the same commits must be indistinguishable."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="radledger-stores-agree-"))
        self.memory = MemoryStore(chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH)
        self.leveldb = self._open_leveldb(create=True)
        self.chain = ChainBuilder()
        self.model: dict[bytes, bytes] = {}

    def _open_leveldb(self, *, create: bool = False) -> LevelDBStore:
        return open_store(
            self.directory / "store", chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, create=create
        )

    @rule(writes=st.dictionaries(keys, values, max_size=8), txs=st.integers(0, 2))
    def commit(self, writes: Writes, txs: int) -> None:
        commit = self.chain.build(txs=txs, writes=writes)
        for store in (self.memory, self.leveldb):
            assert store.prospective_root(writes) == commit.block.header.state_root
            store.commit_block(commit.block, commit.cert, writes)
        self.chain.accept(commit)
        for key, value in writes.items():
            if value is None:
                self.model.pop(key, None)
            else:
                self.model[key] = value

    @rule()
    def reopen_leveldb(self) -> None:
        self.leveldb.close()
        self.leveldb = self._open_leveldb()

    @rule(key=keys)
    def get_agrees(self, key: bytes) -> None:
        assert self.memory.get(key) == self.leveldb.get(key) == self.model.get(key)

    @rule(prefix=keys)
    def items_agree(self, prefix: bytes) -> None:
        expected = sorted((k, v) for k, v in self.model.items() if k.startswith(prefix))
        assert list(self.memory.items(prefix)) == list(self.leveldb.items(prefix)) == expected

    @rule(writes=st.dictionaries(keys, values, max_size=8))
    def prospective_roots_agree(self, writes: Writes) -> None:
        assert self.memory.prospective_root(writes) == self.leveldb.prospective_root(writes)

    @rule(height=st.integers(0, 3), view=st.integers(0, 2), phase=st.integers(1, 2), tag=keys)
    def safety_agrees(self, height: int, view: int, phase: int, tag: bytes) -> None:
        record = SafetyRecord(height, view, phase, sha256(tag))
        outcomes = []
        for store in (self.memory, self.leveldb):
            try:
                store.safety.record(record)
                outcomes.append("recorded")
            except SafetyViolation:
                outcomes.append("refused")
        assert outcomes[0] == outcomes[1]
        assert self.memory.safety.records_since(0) == self.leveldb.safety.records_since(0)

    @precondition(lambda self: self.chain.height > 0)
    @rule()
    def blocks_agree(self) -> None:
        height = self.chain.height
        assert self.memory.block(height) == self.leveldb.block(height)
        assert self.memory.write_set(height) == self.leveldb.write_set(height)

    @invariant()
    def roots_and_heights_agree(self) -> None:
        assert self.memory.latest_height() == self.leveldb.latest_height() == self.chain.height
        assert self.memory.state_root() == self.leveldb.state_root() == self.chain.root

    def teardown(self) -> None:
        try:
            assert self.memory.check_consistency() == self.leveldb.check_consistency()
        finally:
            self.leveldb.close()
            shutil.rmtree(self.directory, ignore_errors=True)


TestStoresAgree = StoresAgree.TestCase
TestStoresAgree.settings = settings(max_examples=50, stateful_step_count=20, deadline=None)


def test_write_set_is_returned_in_key_order(store: Store, chain: ChainBuilder) -> None:
    commit = chain.next(writes={b"z": b"1", b"a": None, b"m": b""})
    store.commit_block(commit.block, commit.cert, commit.writes)
    written = store.write_set(1)
    assert written is not None
    assert list(written) == [b"a", b"m", b"z"]
    assert written == {b"a": None, b"m": b"", b"z": b"1"}


def test_prepared_certificate_slot(store: Store, chain: ChainBuilder) -> None:
    """One durable slot for the replica's latest prepared certificate and block."""
    assert store.safety.load_prepared() is None
    first = chain.build()
    prepares = [
        Vote.create(
            key,
            chain_id=CHAIN_ID,
            kind=VoteKind.PREPARE,
            height=first.block.height,
            view=0,
            block_hash=first.block.hash,
        )
        for key in VALIDATOR_KEYS[:QUORUM]
    ]
    certificate = PreparedCertificate.from_votes(prepares)
    store.safety.save_prepared(certificate, first.block)
    assert store.safety.load_prepared() == (certificate, first.block)
    other = chain.build(txs=1)
    with pytest.raises(ValueError, match="another block"):
        store.safety.save_prepared(certificate, other.block)
    assert store.safety.load_prepared() == (certificate, first.block)
