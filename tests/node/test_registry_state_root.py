"""State-root determinism end to end: the registry's mixed scenario, replayed block by
block into two independent stores (LevelDB and the in-memory twin), gives the same
state root after every block, and the same as a third replay in a new LevelDB."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ledger.keys import SigningKey
from ledger.types import Block, CommitCertificate, Tx, Vote, VoteKind
from registry import BlockContext, Registry
from storage import MemoryStore, open_store
from storage.api import BlockStore, StateStore
from tests.registry.helpers import GENESIS, Chain, run_scenario

VALIDATORS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]


class Recorder(Chain):
    """The registry tests' chain, remembering each block's transactions and context."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks: list[tuple[list[Tx], BlockContext]] = []

    def block(self, txs: Sequence[Tx]) -> list[object]:  # type: ignore[override]
        self.blocks.append((list(txs), self.next_context()))
        return list(super().block(txs))


class Store(BlockStore, StateStore):  # what the replay needs of a store
    pass


def replay(store: Store, blocks: list[tuple[list[Tx], BlockContext]]) -> list[bytes]:
    """Commit the blocks the way a node does; return the state root after each."""
    registry = Registry(GENESIS)
    roots = []
    prev = GENESIS.hash
    for txs, ctx in blocks:
        writes, outcome = registry.execute(store.get, txs, ctx)
        accepted = [tx for tx, r in zip(txs, outcome, strict=True) if r is None]
        writes, _ = registry.execute(store.get, accepted, ctx)  # as a proposer drops refusals
        block = Block.build(
            chain_id=GENESIS.chain_id,
            height=ctx.height,
            view=0,
            prev_hash=prev,
            time_ms=ctx.time_ms,
            proposer=VALIDATORS[0].public_key,
            state_root=store.prospective_root(writes),
            txs=accepted,
        )
        votes = [
            Vote.create(
                key,
                chain_id=GENESIS.chain_id,
                kind=VoteKind.COMMIT,
                height=ctx.height,
                view=0,
                block_hash=block.hash,
            )
            for key in VALIDATORS[:3]
        ]
        store.commit_block(block, CommitCertificate.from_votes(votes), writes)
        roots.append(store.state_root())
        prev = block.hash
    return roots


def test_two_stores_reach_the_same_state_root_after_every_block(tmp_path: Path) -> None:
    chain = Recorder()
    run_scenario(chain)
    assert len(chain.blocks) > 10
    memory = MemoryStore(chain_id=GENESIS.chain_id, genesis_hash=GENESIS.hash)
    with (
        open_store(
            tmp_path / "a", chain_id=GENESIS.chain_id, genesis_hash=GENESIS.hash, create=True
        ) as first,
        open_store(
            tmp_path / "b", chain_id=GENESIS.chain_id, genesis_hash=GENESIS.hash, create=True
        ) as second,
    ):
        roots = replay(first, chain.blocks)  # type: ignore[arg-type]
        assert replay(second, chain.blocks) == roots  # type: ignore[arg-type]
        assert replay(memory, chain.blocks) == roots  # type: ignore[arg-type]
        assert len(set(roots)) >= len(roots) - 1  # only the last block wrote nothing
        assert dict(first.items(b"reg/")) == dict(memory.items(b"reg/"))
