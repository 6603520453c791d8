"""The state machine the node runs until the research registry lands (issue #7).

It is deliberately small but real, so the node's whole path (admission,
proposal, execute-then-agree, commit, restart) is exercised end to end:

* one transaction kind, ``noop``, whose body is any map (it records nothing
  but the fact that the signer acted);
* per-signer nonces that strictly increase: a transaction is valid when its
  nonce is above the signer's last committed one (gaps are allowed, so a
  client that loses a transaction need not stall; replays are impossible);
* state: ``acct/<signer>/nonce`` -> the last nonce (8 bytes, big-endian).

Execution is a pure function of the committed state and the block, so every
node computes the same write set and state root.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final

from ledger.types import Tx

SUPPORTED_KINDS: Final = frozenset({"noop"})
NONCE_PREFIX: Final = b"acct/"

Writes = dict[bytes, bytes | None]
StateReader = Callable[[bytes], bytes | None]


def nonce_key(signer: bytes) -> bytes:
    return NONCE_PREFIX + signer + b"/nonce"


def committed_nonce(get: StateReader, signer: bytes) -> int:
    """The signer's last committed nonce, or -1 if it never transacted."""
    raw = get(nonce_key(signer))
    return -1 if raw is None else int.from_bytes(raw, "big")


@dataclass(frozen=True, slots=True)
class TxRejection:
    code: str
    message: str


def check_kind(tx: Tx) -> TxRejection | None:
    if tx.kind not in SUPPORTED_KINDS:
        return TxRejection("unknown_kind", f"transaction kind {tx.kind!r} is not supported")
    return None


def execute(get: StateReader, txs: Sequence[Tx]) -> tuple[Writes, list[TxRejection | None]]:
    """Apply ``txs`` in order on top of the committed state read through ``get``.

    Returns the write set and, per transaction, ``None`` or why it is invalid.
    A block is valid only if every transaction is.
    """
    nonces: dict[bytes, int] = {}
    outcome: list[TxRejection | None] = []
    for tx in txs:
        rejection = check_kind(tx)
        if rejection is None:
            last = nonces.get(tx.signer)
            if last is None:
                last = committed_nonce(get, tx.signer)
            if tx.nonce <= last:
                rejection = TxRejection(
                    "nonce_reused", f"nonce {tx.nonce} is not above the last used {last}"
                )
            else:
                nonces[tx.signer] = tx.nonce
        outcome.append(rejection)
    writes: Writes = {nonce_key(s): n.to_bytes(8, "big") for s, n in nonces.items()}
    return writes, outcome
