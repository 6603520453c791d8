"""``check_consistency``: one definition of "this store is sound", shared by both stores.

The audit reads a store only through its public read methods plus :meth:`Auditable.census`
(how many records of each kind exist), so the LevelDB store and its in-memory twin are held
to exactly the same standard, and a defect is described in terms an operator can act on.

What is checked, in this order (the first defect found is raised as
:class:`~storage.errors.StoreCorruptedError`):

1. the height pointer equals the highest stored header, body, certificate and write set,
   and there is exactly one block-hash index entry per height (nothing half-committed or
   committed beyond the pointer);
2. for every height ``h`` from 1 to the latest: the block decodes, its header names this
   chain and height ``h``, its ``prev_hash`` is the previous block's hash (the genesis hash
   for ``h = 1``), the hash index maps its hash back to ``h``, its certificate exists and
   names (chain, ``h``, hash), every transaction's index entry is ``(h, position)``, its write
   set exists, and the state root recomputed from genesis through this write set equals the
   header's ``state_root``;
3. there are exactly as many transaction index entries as transactions in blocks;
4. the recorded state root equals the recomputed one (and so the latest header's);
5. the current state is exactly the result of applying every write set in order (compared
   by SHA-256 of the values, so memory stays O(distinct keys));
6. every safety record decodes and sits under its own slot, in slot order.

Cost: O(blocks + transactions + writes) time; O(distinct state keys) memory.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from ledger.types import Block, CommitCertificate
from storage import state_root
from storage.api import SafetyStore
from storage.errors import CORRUPTION_ACTION, StoreCorruptedError

__all__ = ["Auditable", "Census", "audit"]


@dataclass(frozen=True, slots=True)
class Census:
    """How many records of each kind a store holds (heights: the highest one; 0 if none).

    Atomic commits keep all of these in step with the height pointer; a mismatch means a
    commit was torn or a record was added or lost outside the store's API.
    """

    highest_header: int
    highest_body: int
    highest_certificate: int
    highest_write_set: int
    block_hash_entries: int
    tx_index_entries: int


class Auditable(Protocol):
    """What :func:`audit` needs from a store."""

    @property
    def path(self) -> str: ...

    @property
    def chain_id(self) -> str: ...

    @property
    def genesis_hash(self) -> bytes: ...

    @property
    def safety(self) -> SafetyStore: ...

    def latest_height(self) -> int: ...

    def state_root(self) -> bytes: ...

    def block(self, height: int) -> Block | None: ...

    def height_of(self, block_hash: bytes) -> int | None: ...

    def certificate(self, height: int) -> CommitCertificate | None: ...

    def tx_location(self, tx_hash: bytes) -> tuple[int, int] | None: ...

    def write_set(self, height: int) -> dict[bytes, bytes | None] | None: ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...

    def census(self) -> Census: ...


def audit(store: Auditable) -> int:
    """Check everything listed in the module docstring; return the latest height."""
    path = store.path

    def defect(problem: str) -> StoreCorruptedError:
        return StoreCorruptedError(path, f"consistency check failed: {problem}", CORRUPTION_ACTION)

    latest = store.latest_height()
    census = store.census()
    for kind, highest in (
        ("block header", census.highest_header),
        ("block body", census.highest_body),
        ("certificate", census.highest_certificate),
        ("write set", census.highest_write_set),
    ):
        if highest != latest:
            raise defect(
                f"the height pointer is {latest} but the highest stored {kind} is at "
                f"height {highest}"
            )
    if census.block_hash_entries != latest:
        raise defect(f"{census.block_hash_entries} block-hash index entries for {latest} blocks")

    root = state_root.initial_root(store.genesis_hash)
    prev_hash = store.genesis_hash
    tx_count = 0
    # key -> SHA-256 of its latest value, or None if its latest write deleted it.
    replayed: dict[bytes, bytes | None] = {}
    for height in range(1, latest + 1):
        block = store.block(height)
        if block is None:
            raise defect(f"block {height} is missing")
        header = block.header
        if header.height != height:
            raise defect(f"the block stored at height {height} says it is at {header.height}")
        if header.chain_id != store.chain_id:
            raise defect(f"block {height} is for chain {header.chain_id!r}")
        if header.prev_hash != prev_hash:
            raise defect(
                f"block {height}'s prev_hash {header.prev_hash.hex()} is not "
                f"{prev_hash.hex()}, the hash of the block before it"
            )
        indexed = store.height_of(block.hash)
        if indexed != height:
            raise defect(f"the hash index maps block {height}'s hash to height {indexed}")
        cert = store.certificate(height)
        if cert is None:
            raise defect(f"the certificate of block {height} is missing")
        if (cert.chain_id, cert.height, cert.block_hash) != (store.chain_id, height, block.hash):
            raise defect(
                f"the certificate stored at height {height} is for chain "
                f"{cert.chain_id!r}, height {cert.height}, block {cert.block_hash.hex()}"
            )
        for index, tx in enumerate(block.txs):
            location = store.tx_location(tx.hash)
            if location != (height, index):
                raise defect(
                    f"transaction {index} of block {height} ({tx.hash.hex()}) is "
                    f"indexed at {location}"
                )
        tx_count += len(block.txs)
        writes = store.write_set(height)
        if writes is None:
            raise defect(f"the write set of block {height} is missing")
        root = state_root.next_root(root, writes)
        if root != header.state_root:
            raise defect(
                f"the state root recomputed through block {height} is {root.hex()}, "
                f"the header says {header.state_root.hex()}"
            )
        for key, value in writes.items():
            replayed[key] = None if value is None else hashlib.sha256(value).digest()
        prev_hash = block.hash

    if census.tx_index_entries != tx_count:
        raise defect(
            f"{census.tx_index_entries} transaction index entries for {tx_count} "
            "transactions in blocks"
        )
    recorded = store.state_root()
    if recorded != root:
        raise defect(
            f"the recorded state root {recorded.hex()} is not {root.hex()}, the root "
            f"of block {latest}"
        )

    live = {key: digest for key, digest in replayed.items() if digest is not None}
    seen = 0
    for key, value in store.items(b""):
        expected = live.get(key)
        if expected is None:
            raise defect(f"state key {key.hex()} is set but no committed write set leaves it set")
        if hashlib.sha256(value).digest() != expected:
            raise defect(f"state key {key.hex()} does not hold the value last written to it")
        seen += 1
    if seen != len(live):
        raise defect(f"{len(live) - seen} state keys written by committed blocks are missing")

    records = store.safety.records_since(0)
    for earlier, later in itertools.pairwise(records):
        if earlier.slot >= later.slot:
            raise defect(f"safety records are out of slot order at {earlier.slot}, {later.slot}")
    return latest
