"""Build offline-verifiable receipts (ledger/receipt.py) from a node's store.

A dataset receipt holds every transaction that created the dataset and every
part of each of its complete series, each with its inclusion proof, block
header and commit certificate. An instance receipt adds the instance's leaf
and its inclusion proof in the series manifest. docs/RECEIPTS.md.
"""

from __future__ import annotations

from ledger.genesis import Genesis
from ledger.manifest import instance_proof
from ledger.receipt import RECEIPT_FORMAT, RECEIPT_VERSION, InstanceProof, Receipt, TxProof
from registry import queries
from registry.errors import NotFound
from storage.api import BlockStore


def tx_proof(store: BlockStore, tx_hash: bytes) -> TxProof:
    """The proof that a committed transaction is in a certified block."""
    location = store.tx_location(tx_hash)
    if location is None:
        raise NotFound("transaction", tx_hash.hex())
    height, index = location
    block = store.block(height)
    cert = store.certificate(height)
    if block is None or cert is None:  # pragma: no cover - the store's own invariant
        raise NotFound("block", str(height))
    return TxProof(
        block.txs[index],
        index,
        len(block.txs),
        tuple(block.tx_inclusion_proof(index)),
        block.header,
        cert,
    )


def dataset_receipt(
    store: BlockStore,
    state: queries.StateView,
    genesis: Genesis,
    dataset_id: str,
    instance: str | None = None,
) -> Receipt:
    """A receipt for a dataset's registration, or for one of its instances.

    Raises :class:`registry.errors.NotFound` for an unknown dataset, an instance
    that is not in it, or an instance whose series is not complete yet.
    """
    info = queries.dataset(state, dataset_id)
    hashes: list[bytes] = []
    if info["kind"] == "derived":  # its creation is a dataset.derive, proven on its own
        hashes.append(bytes.fromhex(info["created"]["tx"]))
    proof: InstanceProof | None = None
    for series in info["series"]:
        if not series["complete"]:  # only what the registry has checked whole is proven
            continue
        hashes.extend(queries.series_parts(state, dataset_id, series["uid"]))
        if instance is not None and proof is None:
            leaves = queries.series_leaves(state, dataset_id, series["uid"])
            try:
                index, path = instance_proof(leaves, instance)
            except KeyError:
                continue
            proof = InstanceProof(leaves[index], series["uid"], index, len(leaves), tuple(path))
    if instance is not None and proof is None:
        raise NotFound("instance in a complete series of " + dataset_id, instance)
    if not hashes:
        raise NotFound("complete series (registration still in progress) of dataset", dataset_id)
    unique = list(dict.fromkeys(hashes))
    entries = sorted((tx_proof(store, h) for h in unique), key=lambda e: e.header.height)
    return Receipt(
        RECEIPT_FORMAT,
        RECEIPT_VERSION,
        genesis.chain_id,
        genesis.hash,
        dataset_id,
        tuple(entries),
        proof,
    )
