"""Child process of ``test_crash``: commit blocks forever until SIGKILLed.

Usage: ``python -m tests.storage.crash_child STORE_DIR``. Opens the existing store, prints
``ready HEIGHT``, then in a loop builds the next block, records the validator's COMMIT vote
in the safety store (synced, as consensus does before sending it), commits the block with
its certificate and state writes, and only then prints the committed height (flushed).
Every few blocks it prunes old safety records.

The chain is a pure function of the height (deterministic keys, nonces, times and writes;
ed25519 signatures are deterministic too), so the parent can rebuild what any height must
contain with :func:`txs_for` and :func:`writes_for`. This module imports only ``ledger`` and
``storage`` so that starting it is quick.
"""

from __future__ import annotations

import sys
from typing import Final

from ledger.keys import SigningKey
from ledger.types import Block, CommitCertificate, SafetyRecord, Tx, Vote, VoteKind, sha256
from storage import LevelDBStore, open_store

CHAIN_ID: Final = "radledger-crash"
GENESIS_HASH: Final = sha256(b"radledger crash test: genesis")
VALIDATORS: Final = tuple(SigningKey(sha256(b"crash validator %d" % i)) for i in range(4))
CLIENT: Final = SigningKey(sha256(b"crash client"))
TXS_PER_BLOCK: Final = 3
#: The phase number the child records its COMMIT votes under (opaque to storage).
COMMIT_PHASE: Final = 2
PRUNE_EVERY: Final = 16


def txs_for(height: int) -> list[Tx]:
    return [
        Tx.create(
            CLIENT,
            chain_id=CHAIN_ID,
            kind="dataset.register",
            nonce=height * TXS_PER_BLOCK + i,
            body={"height": height, "slot": i, "payload": sha256(b"%d/%d" % (height, i)) * 4},
        )
        for i in range(TXS_PER_BLOCK)
    ]


def writes_for(height: int) -> dict[bytes, bytes | None]:
    """A few sets, an overwrite of a shared key, and a delete of an older key."""
    writes: dict[bytes, bytes | None] = {
        b"block/%08d" % height: sha256(b"block %d" % height) * 6,
        b"latest": b"%d" % height,
        b"site/%d" % (height % 7): b"%d" % height,
    }
    if height > 3:
        writes[b"block/%08d" % (height - 3)] = None
    return writes


def certificate_for(block: Block) -> CommitCertificate:
    votes = [
        Vote.create(
            key,
            chain_id=CHAIN_ID,
            kind=VoteKind.COMMIT,
            height=block.height,
            view=0,
            block_hash=block.hash,
        )
        for key in VALIDATORS[:3]
    ]
    return CommitCertificate.from_votes(votes)


def commit_next(store: LevelDBStore) -> int:
    height = store.latest_height() + 1
    writes = writes_for(height)
    block = Block.build(
        chain_id=CHAIN_ID,
        height=height,
        view=0,
        prev_hash=store.block_hash(height - 1) or GENESIS_HASH,
        time_ms=1_700_000_000_000 + height,
        proposer=VALIDATORS[height % 4].public_key,
        state_root=store.prospective_root(writes),
        txs=txs_for(height),
    )
    store.safety.record(SafetyRecord(height, 0, COMMIT_PHASE, block.hash))
    store.commit_block(block, certificate_for(block), writes)
    if height % PRUNE_EVERY == 0:
        store.safety.prune_below(height - PRUNE_EVERY // 2)
    return height


def main(argv: list[str]) -> int:
    (path,) = argv
    with open_store(path, chain_id=CHAIN_ID, genesis_hash=GENESIS_HASH) as store:
        print("ready", store.latest_height(), flush=True)
        while True:
            print(commit_next(store), flush=True)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
