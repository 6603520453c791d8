"""Shared builders and fixtures for the storage tests.

Everything here is real: transactions signed with ed25519 keys, blocks built with
``Block.build``, certificates assembled from signed COMMIT votes of 3 of 4 validators, and
header state roots computed from the write sets with ``storage.state_root``. Keys are
derived from fixed seeds so every run builds byte-identical chains.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.keys import SigningKey
from ledger.types import (
    Block,
    CommitCertificate,
    DuplicateVoteEvidence,
    Tx,
    Vote,
    VoteKind,
    sha256,
)
from storage import MemoryStore, Store, open_store
from storage.state_root import initial_root, next_root

CHAIN_ID = "radledger-test"
GENESIS_HASH = sha256(b"radledger storage tests: genesis")
VALIDATOR_KEYS = tuple(SigningKey(sha256(b"validator %d" % i)) for i in range(4))
QUORUM = 3
CLIENT_KEY = SigningKey(sha256(b"storage tests: client"))

Writes = dict[bytes, bytes | None]


@dataclass(frozen=True, slots=True)
class Commit:
    """Everything ``commit_block`` takes for one height."""

    block: Block
    cert: CommitCertificate
    writes: Writes


def make_certificate(
    block: Block,
    *,
    chain_id: str | None = None,
    height: int | None = None,
    block_hash: bytes | None = None,
    keys: Sequence[SigningKey] = VALIDATOR_KEYS[:QUORUM],
) -> CommitCertificate:
    """A certificate from real COMMIT votes; the overrides build mismatching ones."""
    votes = [
        Vote.create(
            key,
            chain_id=block.header.chain_id if chain_id is None else chain_id,
            kind=VoteKind.COMMIT,
            height=block.height if height is None else height,
            view=block.header.view,
            block_hash=block.hash if block_hash is None else block_hash,
        )
        for key in keys
    ]
    return CommitCertificate.from_votes(votes)


def make_evidence(chain_id: str, height: int) -> DuplicateVoteEvidence:
    """Validator 3 signing two different blocks at one (height, view)."""
    votes = [
        Vote.create(
            VALIDATOR_KEYS[3],
            chain_id=chain_id,
            kind=VoteKind.PREPARE,
            height=height,
            view=0,
            block_hash=sha256(b"fork %d" % side),
        )
        for side in (0, 1)
    ]
    return DuplicateVoteEvidence.of(*votes)


def default_writes(height: int) -> Writes:
    """Writes that exercise sets, overwrites and deletes as a chain grows."""
    writes: Writes = {
        b"dataset/%04d" % height: b"manifest of dataset %d" % height,
        b"counter": b"%d" % height,
    }
    if height > 2:
        writes[b"dataset/%04d" % (height - 2)] = None
    return writes


@dataclass(slots=True)
class ChainBuilder:
    """Builds a valid chain one height at a time, mirroring what a store will accept."""

    chain_id: str = CHAIN_ID
    genesis_hash: bytes = GENESIS_HASH
    height: int = 0
    prev_hash: bytes = b""
    root: bytes = b""
    nonce: int = 0
    time_ms: int = 1_700_000_000_000
    history: list[Commit] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.prev_hash = self.prev_hash or self.genesis_hash
        self.root = self.root or initial_root(self.genesis_hash)

    def make_txs(self, count: int) -> list[Tx]:
        txs = []
        for _ in range(count):
            self.nonce += 1
            txs.append(
                Tx.create(
                    CLIENT_KEY,
                    chain_id=self.chain_id,
                    kind="dataset.register",
                    nonce=self.nonce,
                    body={"dataset": f"ds-{self.nonce}", "sha256": sha256(b"%d" % self.nonce)},
                )
            )
        return txs

    def build(
        self,
        *,
        txs: int | Sequence[Tx] = 2,
        writes: Mapping[bytes, bytes | None] | None = None,
        evidence: Sequence[DuplicateVoteEvidence] = (),
        height: int | None = None,
        prev_hash: bytes | None = None,
        state_root: bytes | None = None,
        chain_id: str | None = None,
        view: int = 0,
    ) -> Commit:
        """The next commit (not yet accepted); overrides build invalid ones."""
        next_height = self.height + 1 if height is None else height
        chosen: Writes = dict(default_writes(next_height) if writes is None else writes)
        block = Block.build(
            chain_id=self.chain_id if chain_id is None else chain_id,
            height=next_height,
            view=view,
            prev_hash=self.prev_hash if prev_hash is None else prev_hash,
            time_ms=self.time_ms + next_height * 1000,
            proposer=VALIDATOR_KEYS[next_height % 4].public_key,
            state_root=next_root(self.root, chosen) if state_root is None else state_root,
            txs=self.make_txs(txs) if isinstance(txs, int) else txs,
            evidence=evidence,
        )
        return Commit(block, make_certificate(block), chosen)

    def accept(self, commit: Commit) -> Commit:
        """Advance the builder past ``commit`` (after the store accepted it)."""
        self.height = commit.block.height
        self.nonce = max([self.nonce, *(tx.nonce for tx in commit.block.txs)])
        self.prev_hash = commit.block.hash
        self.root = commit.block.header.state_root
        self.history.append(commit)
        return commit

    def next(
        self,
        *,
        txs: int | Sequence[Tx] = 2,
        writes: Mapping[bytes, bytes | None] | None = None,
        evidence: Sequence[DuplicateVoteEvidence] = (),
    ) -> Commit:
        """Build the next valid commit and advance past it."""
        return self.accept(self.build(txs=txs, writes=writes, evidence=evidence))


def make_chain(
    count: int, *, txs_per_block: int = 2, builder: ChainBuilder | None = None
) -> list[Commit]:
    """``count`` consecutive valid commits; block 3 (if any) also carries evidence."""
    chain = builder or ChainBuilder()
    commits = []
    for _ in range(count):
        height = chain.height + 1
        evidence = [make_evidence(chain.chain_id, height)] if height == 3 else []
        commits.append(chain.next(txs=txs_per_block, evidence=evidence))
    return commits


def commit_all(store: Store, commits: Sequence[Commit]) -> None:
    for commit in commits:
        store.commit_block(commit.block, commit.cert, commit.writes)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything observable through the read API, to prove a rejected commit wrote nothing."""

    height: int
    root: bytes
    state: tuple[tuple[bytes, bytes], ...]
    blocks: tuple[Block | None, ...]
    certs: tuple[CommitCertificate | None, ...]
    write_sets: tuple[Writes | None, ...]

    @classmethod
    def of(cls, store: Store) -> Snapshot:
        top = store.latest_height() + 2  # look past the pointer too
        return cls(
            height=store.latest_height(),
            root=store.state_root(),
            state=tuple(store.items(b"")),
            blocks=tuple(store.block(h) for h in range(1, top)),
            certs=tuple(store.certificate(h) for h in range(1, top)),
            write_sets=tuple(store.write_set(h) for h in range(1, top)),
        )


def new_store(kind: str, directory: Path, *, name: str = "store") -> Store:
    if kind == "memory":
        return MemoryStore(chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, name=name)
    return open_store(directory / name, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH, create=True)


@pytest.fixture(params=["memory", "leveldb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """An empty store of each implementation; the contract tests run against both."""
    opened = new_store(str(request.param), tmp_path)
    with opened:
        yield opened


@pytest.fixture
def chain() -> ChainBuilder:
    return ChainBuilder()
