"""The research-registry state machine the node runs.

``Registry.execute(get, txs, ctx)`` is a pure function of the committed state
(read through ``get``), the block context and the transactions: no clock, no
randomness, no I/O, no iteration over unordered containers in what it writes.
Every node therefore computes the same write set, and storage the same state
root (docs/STORAGE.md).

Transactions apply in order. Each runs over a private layer on top of the
block's accumulated writes: an accepted one merges its layer, a refused one
drops it, so it writes nothing (not even its nonce) and later transactions
see exactly the writes of the accepted ones before them.

``Registry.check`` is the mempool's admission test: the same code path, run
alone against committed state with ``now_ms`` as the block time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ledger.genesis import Genesis
from ledger.types import Tx
from registry.errors import Rejected
from registry.rules import REJECTION_CODES, Consortium, apply_tx, check_envelope
from registry.state import State, StateReader, Writes

__all__ = [
    "REJECTION_CODES",
    "BlockContext",
    "Registry",
    "StateReader",
    "TxRejection",
    "Writes",
]

#: The height that :meth:`Registry.check` records (its writes are discarded).
CHECK_HEIGHT = 0


@dataclass(frozen=True, slots=True)
class BlockContext:
    """The block being executed: its height and its (validator-bounded) time."""

    height: int
    time_ms: int


@dataclass(frozen=True, slots=True)
class TxRejection:
    """Why a transaction is refused: a snake_case ``code`` and a sentence for people."""

    code: str
    message: str


class Registry:
    """The registry application: admission checks and block execution."""

    __slots__ = ("_consortium", "genesis")

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self._consortium = Consortium.from_genesis(genesis)

    def _run(
        self, base: StateReader, tx: Tx, height: int, time_ms: int, parent: State | None = None
    ) -> State | TxRejection:
        layer = State(base, parent)
        try:
            apply_tx(layer, self._consortium, tx, height, time_ms)
        except Rejected as exc:
            return TxRejection(exc.code, exc.message)
        return layer

    def view(self, get: StateReader) -> State:
        """A read-only view of committed state that keeps the records it decodes.

        Pass it to :meth:`check` and :meth:`execute` until the next commit, then
        take a new one: admission and execution then decode each committed record
        (a member, a dataset) once per height instead of once per transaction.
        """
        return State(get)

    def check(
        self,
        get: StateReader,
        tx: Tx,
        now_ms: int,
        view: State | None = None,
        *,
        envelope_only: bool = False,
    ) -> TxRejection | None:
        """Would ``tx`` be accepted if it were executed alone now on committed state?

        The signature and chain id are checked by the caller. ``view`` (from
        :meth:`view` over the same ``get``) only saves decoding. With
        ``envelope_only`` only what holds for every kind is checked (known kind,
        valid body, fresh nonce, plausible time), not the kind's rules: for a
        transaction another validator has already checked in full.
        """
        if tx.chain_id != self.genesis.chain_id:
            return TxRejection(
                "wrong_chain",
                f"transaction is for chain {tx.chain_id}, not {self.genesis.chain_id}",
            )
        if envelope_only:
            try:
                check_envelope(State(get, view), tx, now_ms)
            except Rejected as exc:
                return TxRejection(exc.code, exc.message)
            return None
        outcome = self._run(get, tx, CHECK_HEIGHT, now_ms, parent=view)
        return outcome if isinstance(outcome, TxRejection) else None

    def execute(
        self,
        get: StateReader,
        txs: Sequence[Tx],
        ctx: BlockContext,
        view: State | None = None,
    ) -> tuple[Writes, list[TxRejection | None]]:
        """Apply ``txs`` in order over the committed state read through ``get``.

        Returns the write set of the accepted transactions (sorted by key) and,
        per transaction, ``None`` (accepted) or its :class:`TxRejection`.
        """
        block = State(get, view)
        outcome: list[TxRejection | None] = []
        for tx in txs:
            result = self._run(block.get, tx, ctx.height, ctx.time_ms, parent=block)
            if isinstance(result, TxRejection):
                outcome.append(result)
            else:
                block.merge(result)
                outcome.append(None)
        writes: Writes = {key: block.writes[key] for key in sorted(block.writes)}
        return writes, outcome
