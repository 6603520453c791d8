"""The mempool: admission checks, bounds, and what the primary proposes.

Admission (CheckTx) in order of cost: size, chain id, duplicate, nonce not
already pending, bounds, the ed25519 signature (verified once per node and
cached by hash), then the registry's check against committed state: for a client's
transaction everything (kind, body schema, the signer's rights, nonce above the
committed one, the kind's rules; docs/REGISTRY.md), for one gossiped by a
validator that already did so the envelope only (kind, body, nonce, time). A
transaction that depends on another (the next part of a series, access to a
new dataset) is admitted once that one is committed. Bounded by
count, bytes and per-signer count; when full, submission fails with
``mempool_full`` (the RPC answers 429 with ``Retry-After``). After each commit
the committed transactions and those whose nonce is now stale are evicted.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ledger.types import Tx
from node.app import StateReader, TxRejection, committed_nonce

_VERIFIED_CACHE_ENTRIES: Final = 32_768  # a few blocks beyond a full pool


@dataclass(frozen=True, slots=True)
class MempoolLimits:
    max_txs: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    max_txs_per_signer: int = 256
    max_tx_bytes: int = 32 * 1024


class Rejected(Exception):
    """A transaction was not admitted; ``code`` is stable for clients."""

    def __init__(self, code: str, message: str, *, retry_after_s: int | None = None) -> None:
        self.code = code
        self.message = message
        self.retry_after_s = retry_after_s
        super().__init__(f"{code}: {message}")


class Mempool:
    def __init__(
        self,
        chain_id: str,
        limits: MempoolLimits,
        state: StateReader,
        admission: Callable[[Tx, bool], TxRejection | None],
    ) -> None:
        """``admission(tx, from_peer)`` is the application's check of a transaction
        against the committed state (kind, body, signer's rights, nonce, the kind's
        rules); ``from_peer`` says another validator already checked it in full."""
        self._chain_id = chain_id
        self._admission = admission
        self._limits = limits
        self._state = state
        self._txs: OrderedDict[bytes, Tx] = OrderedDict()
        self._sizes: dict[bytes, int] = {}
        self._admitted_at: dict[bytes, float] = {}  # monotonic seconds, for commit latency
        self._bytes = 0
        self._by_signer: dict[bytes, dict[int, bytes]] = {}  # signer -> nonce -> hash
        self._verified: OrderedDict[bytes, bool] = OrderedDict()

    def __len__(self) -> int:
        return len(self._txs)

    @property
    def max_tx_bytes(self) -> int:
        return self._limits.max_tx_bytes

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __contains__(self, tx_hash: object) -> bool:
        return tx_hash in self._txs

    def get(self, tx_hash: bytes) -> Tx | None:
        """The pending transaction with this hash, if any."""
        return self._txs.get(tx_hash)

    def signature_ok(self, tx: Tx) -> bool:
        """Verify once per node; later calls (e.g. the same tx in a proposal) hit the cache."""
        cached = self._verified.get(tx.hash)
        if cached is None:
            cached = tx.verify_signature()
            self._remember(tx.hash, cached)
        return cached

    def mark_verified(self, tx: Tx) -> None:
        """The peer layer already verified this signature: do not verify it again."""
        self._remember(tx.hash, True)

    def _remember(self, tx_hash: bytes, valid: bool) -> None:
        self._verified[tx_hash] = valid
        if len(self._verified) > _VERIFIED_CACHE_ENTRIES:
            self._verified.popitem(last=False)

    def add(self, tx: Tx, *, from_peer: bool = False) -> None:
        size = len(tx.encode())
        if size > self._limits.max_tx_bytes:
            raise Rejected("tx_too_large", f"{size} bytes exceeds {self._limits.max_tx_bytes}")
        if tx.chain_id != self._chain_id:
            raise Rejected("wrong_chain", f"transaction is for chain {tx.chain_id!r}")
        if tx.hash in self._txs:
            raise Rejected("duplicate", "transaction is already pending")
        pending = self._by_signer.get(tx.signer, {})
        if tx.nonce in pending:
            raise Rejected("nonce_reused", f"nonce {tx.nonce} is already pending")
        if len(pending) >= self._limits.max_txs_per_signer:
            raise Rejected(
                "signer_limit",
                f"{len(pending)} transactions of this signer are pending",
                retry_after_s=1,
            )
        if len(self._txs) >= self._limits.max_txs or self._bytes + size > self._limits.max_bytes:
            raise Rejected("mempool_full", "the mempool is full", retry_after_s=1)
        if not self.signature_ok(tx):
            raise Rejected("bad_signature", "the signature does not verify")
        rejection = self._admission(tx, from_peer)
        if rejection is not None:
            raise Rejected(rejection.code, rejection.message)
        self._txs[tx.hash] = tx
        self._sizes[tx.hash] = size
        self._admitted_at[tx.hash] = time.monotonic()
        self._bytes += size
        self._by_signer.setdefault(tx.signer, {})[tx.nonce] = tx.hash

    def _remove(self, tx_hash: bytes) -> None:
        tx = self._txs.pop(tx_hash, None)
        if tx is None:
            return
        self._bytes -= self._sizes.pop(tx_hash)
        self._admitted_at.pop(tx_hash, None)
        pending = self._by_signer.get(tx.signer)
        if pending is not None:
            pending.pop(tx.nonce, None)
            if not pending:
                del self._by_signer[tx.signer]

    def reap(self, max_txs: int, max_bytes: int) -> list[Tx]:
        """Transactions for a block: first admitted, first proposed, each signer's in
        ascending nonce order.

        Taking a signer's transaction takes its lower pending nonces with it (they
        must go first, or a later one would make them stale). Admission order, not
        key order, decides who waits when the pool holds more than a block, so no
        site's keys are starved under load.
        """
        chosen: list[Tx] = []
        order: dict[bytes, tuple[list[int], int]] = {}  # signer -> (sorted nonces, next)
        total = 0
        for tx in self._txs.values():
            pending = self._by_signer[tx.signer]
            nonces, at = order.get(tx.signer) or (sorted(pending), 0)
            while at < len(nonces) and nonces[at] <= tx.nonce:  # this one and the lower ones
                tx_hash = pending[nonces[at]]
                size = self._sizes[tx_hash]
                if len(chosen) >= max_txs or total + size > max_bytes:
                    return chosen  # the block is full
                chosen.append(self._txs[tx_hash])
                total += size
                at += 1
            order[tx.signer] = (nonces, at)
        return chosen

    def admitted_at(self, tx_hash: bytes) -> float | None:
        """When (monotonic seconds) this node admitted a pending transaction."""
        return self._admitted_at.get(tx_hash)

    def drop(self, txs: list[Tx]) -> None:
        """Remove transactions that can no longer commit."""
        for tx in txs:
            self._remove(tx.hash)

    def on_commit(self, committed: list[Tx]) -> int:
        """Evict committed transactions and those made stale; return how many left."""
        before = len(self._txs)
        for tx in committed:
            self._remove(tx.hash)
        # Only a signer with a transaction in the block has a new committed nonce, so
        # only its pending transactions can have gone stale.
        for signer in {tx.signer for tx in committed} & self._by_signer.keys():
            last = committed_nonce(self._state, signer)
            for nonce, tx_hash in list(self._by_signer.get(signer, {}).items()):
                if nonce <= last:
                    self._remove(tx_hash)
        return before - len(self._txs)
