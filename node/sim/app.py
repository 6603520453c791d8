"""The simulator's application: a tiny deterministic state machine over a MemoryStore.

It plays the part the registry will play in the node: it executes blocks (``ValidateBlock``,
``CommitBlock``) and builds them (``RequestProposal``). Execution of a block at height ``h``
on the committed state at ``h - 1`` writes::

    b"tx/" + tx.hash -> b"1"          for every transaction in the block
    b"count"         -> total number of transactions committed so far (decimal)
    b"height"        -> h (decimal)

so every block moves the state root (``store.prospective_root(writes)``), and the root
depends on the exact transaction set. A block is invalid if it does not extend the store's
tip, repeats a committed transaction, carries a transaction with a bad signature, or names
a state root other than the one its writes produce.

Transactions come from a :class:`TxPool` of real, pre-signed transactions shared by all
nodes of a run (and by all runs of a process: signing is the expensive part).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

from ledger.keys import SigningKey
from ledger.types import Block, Tx, sha256
from storage import MemoryStore

__all__ = [
    "COUNT_KEY",
    "HEIGHT_KEY",
    "SIM_CHAIN_ID",
    "TX_PREFIX",
    "App",
    "Execution",
    "TxPool",
    "default_pool",
]

SIM_CHAIN_ID: Final = "radledger-sim"
TX_PREFIX: Final = b"tx/"
COUNT_KEY: Final = b"count"
HEIGHT_KEY: Final = b"height"
#: Executions remembered per node, keyed by (block hash, parent state root).
EXECUTION_CACHE_ENTRIES: Final = 32


@dataclass(frozen=True, slots=True)
class TxPool:
    """Pre-signed transactions, in a fixed order; ``valid`` holds the hashes known good."""

    txs: tuple[Tx, ...]
    valid: frozenset[bytes]

    @classmethod
    def create(cls, chain_id: str, size: int, *, clients: int = 8, tag: bytes = b"") -> TxPool:
        """``size`` signed ``imaging.register`` transactions from ``clients`` client keys."""
        keys = [SigningKey(sha256(b"radledger sim client %d" % i + tag)) for i in range(clients)]
        txs = tuple(
            Tx.create(
                keys[i % clients],
                chain_id=chain_id,
                kind="imaging.register",
                nonce=i // clients,
                body={"series": sha256(b"series %d" % i + tag), "site": f"site-{i % clients}"},
            )
            for i in range(size)
        )
        return cls(txs, frozenset(tx.hash for tx in txs))


@lru_cache(maxsize=4)
def default_pool(chain_id: str = SIM_CHAIN_ID, size: int = 256) -> TxPool:
    """The process-wide pool the randomized runs draw from (signed once per process)."""
    return TxPool.create(chain_id, size)


@dataclass(frozen=True, slots=True)
class Execution:
    """The outcome of executing a block on the committed state."""

    block_hash: bytes
    valid: bool
    reason: str
    writes: Mapping[bytes, bytes | None]
    root: bytes | None


class App:
    """Executes and builds blocks for one node, against that node's store.

    ``sequential`` picks transactions strictly in pool order (the benchmark: every block
    takes the next ``max_txs``); otherwise a proposer takes 0..``max_txs`` uncommitted
    transactions starting at a random point near the committed count.
    """

    def __init__(
        self,
        store: MemoryStore,
        *,
        proposer: bytes,
        pool: TxPool,
        rng: random.Random,
        max_txs: int = 3,
        sequential: bool = False,
        verify_txs: bool = True,
    ) -> None:
        self.store = store
        self.proposer = proposer
        self.pool = pool
        self._rng = rng
        self._max_txs = max_txs
        self._sequential = sequential
        self._verify_txs = verify_txs
        self._cache: dict[tuple[bytes, bytes], Execution] = {}

    def committed_count(self) -> int:
        raw = self.store.get(COUNT_KEY)
        return 0 if raw is None else int(raw)

    def writes_for(self, height: int, txs: Sequence[Tx]) -> dict[bytes, bytes | None]:
        writes: dict[bytes, bytes | None] = {TX_PREFIX + tx.hash: b"1" for tx in txs}
        writes[COUNT_KEY] = str(self.committed_count() + len(txs)).encode()
        writes[HEIGHT_KEY] = str(height).encode()
        return writes

    def execute(self, block: Block) -> Execution:
        """Execute ``block`` on the committed state (cached per parent state)."""
        parent_root = self.store.state_root()
        key = (block.hash, parent_root)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        result = self._execute(block)
        if len(self._cache) >= EXECUTION_CACHE_ENTRIES:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = result
        return result

    def _execute(self, block: Block) -> Execution:
        store = self.store
        header = block.header
        tip = store.latest_height()

        def invalid(reason: str) -> Execution:
            return Execution(block.hash, False, reason, {}, None)

        if header.height != tip + 1:
            return invalid(f"block {header.height} does not follow the committed height {tip}")
        tip_hash = store.block_hash(tip) if tip else store.genesis_hash
        if header.prev_hash != tip_hash:
            return invalid(f"block {header.height} does not extend the committed tip")
        for tx in block.txs:
            if store.tx_location(tx.hash) is not None:
                return invalid(f"transaction {tx.hash.hex()[:16]} is already committed")
            if self._verify_txs and tx.hash not in self.pool.valid and not tx.verify_signature():
                return invalid(f"transaction {tx.hash.hex()[:16]} has a bad signature")
        writes = self.writes_for(header.height, block.txs)
        root = store.prospective_root(writes)
        if root != header.state_root:
            return Execution(
                block.hash,
                False,
                f"state root {header.state_root.hex()[:16]} != executed {root.hex()[:16]}",
                writes,
                root,
            )
        return Execution(block.hash, True, "", writes, root)

    def pick_txs(self, exclude: frozenset[bytes] = frozenset()) -> list[Tx]:
        """Uncommitted pool transactions for a new block (none in ``exclude``)."""
        txs = self.pool.txs
        if not txs:
            return []
        start = self.committed_count()
        wanted = self._max_txs
        if not self._sequential:
            start += self._rng.randrange(4)
            wanted = self._rng.randint(0, self._max_txs)
        picked: list[Tx] = []
        for offset in range(len(txs)):
            if len(picked) >= wanted:
                break
            tx = txs[(start + offset) % len(txs)]
            if tx.hash in exclude or self.store.tx_location(tx.hash) is not None:
                continue
            picked.append(tx)
        return picked

    def build(
        self,
        *,
        height: int,
        view: int,
        prev_hash: bytes,
        time_ms: int,
        exclude: frozenset[bytes] = frozenset(),
    ) -> Block:
        """A block on top of the committed state, executed: its header names its root."""
        txs = self.pick_txs(exclude)
        writes = self.writes_for(height, txs)
        return Block.build(
            chain_id=self.store.chain_id,
            height=height,
            view=view,
            prev_hash=prev_hash,
            time_ms=time_ms,
            proposer=self.proposer,
            state_root=self.store.prospective_root(writes),
            txs=txs,
        )
