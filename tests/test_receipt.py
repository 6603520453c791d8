"""Receipts verify offline against the genesis, and any tampering is caught."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from ledger import codec
from ledger.errors import LedgerError
from ledger.genesis import Genesis
from ledger.keys import SigningKey
from ledger.manifest import InstanceLeaf, instance_proof, series_root, sort_leaves
from ledger.receipt import (
    RECEIPT_FORMAT,
    RECEIPT_SCHEMA,
    RECEIPT_VERSION,
    InstanceProof,
    Receipt,
    TxProof,
    all_passed,
    verify,
)
from ledger.types import Block, CommitCertificate, Tx, Vote, VoteKind, sha256
from tests.factories import make_genesis

GENESIS = make_genesis(4)
VALIDATORS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
ADMIN = SigningKey(bytes([50]) * 32)
SERIES = "1.2.826.0.1.3680043.2.1125.7"


def _leaves(n: int) -> list[InstanceLeaf]:
    return sort_leaves(
        InstanceLeaf(f"1.2.3.{i}", sha256(b"p%d" % i), sha256(b"m%d" % i), sha256(b"f%d" % i))
        for i in range(n)
    )


LEAVES = _leaves(5)
ROOT = series_root(LEAVES)


def _register(part: int, parts: int, leaves: list[InstanceLeaf], nonce: int) -> Tx:
    body: dict[str, Any] = {
        "dataset": "lung-ct-2026",
        "series": SERIES,
        "part": part,
        "parts": parts,
        "leaves": [codec.decode(leaf.encode()) for leaf in leaves],
        "series_root": ROOT,
        "instances": len(LEAVES),
        "summary": None,
        "supersedes": None,
        "reason": "baseline registration",
        "time_ms": 1_700_000_000_000,
    }
    return Tx.create(
        ADMIN, chain_id=GENESIS.chain_id, kind="dataset.register", nonce=nonce, body=body
    )


def _commit(block: Block, signers: int = 3) -> CommitCertificate:
    votes = [
        Vote.create(
            key,
            chain_id=GENESIS.chain_id,
            kind=VoteKind.COMMIT,
            height=block.height,
            view=0,
            block_hash=block.hash,
        )
        for key in VALIDATORS[:signers]
    ]
    return CommitCertificate.from_votes(votes)


def _entry(txs: list[Tx], index: int, height: int) -> TxProof:
    other = Tx.create(
        SigningKey(bytes([9]) * 32), chain_id=GENESIS.chain_id, kind="noop", nonce=height, body={}
    )
    all_txs = [other, *txs]
    block = Block.build(
        chain_id=GENESIS.chain_id,
        height=height,
        view=0,
        prev_hash=bytes(32),
        time_ms=1_700_000_000_000 + height,
        proposer=VALIDATORS[0].public_key,
        state_root=sha256(b"state %d" % height),
        txs=all_txs,
    )
    position = index + 1
    return TxProof(
        all_txs[position],
        position,
        len(all_txs),
        tuple(block.tx_inclusion_proof(position)),
        block.header,
        _commit(block),
    )


def make_receipt(with_instance: bool = True) -> Receipt:
    part0 = _register(0, 2, LEAVES[:3], 1)
    part1 = _register(1, 2, LEAVES[3:], 2)
    entries = (_entry([part0], 0, 7), _entry([part1], 0, 8))
    instance = None
    if with_instance:
        index, path = instance_proof(LEAVES, LEAVES[3].sop_instance_uid)
        instance = InstanceProof(LEAVES[3], SERIES, index, len(LEAVES), tuple(path))
    return Receipt(
        RECEIPT_FORMAT,
        RECEIPT_VERSION,
        GENESIS.chain_id,
        GENESIS.hash,
        "lung-ct-2026",
        entries,
        instance,
    )


def _failed(receipt: Receipt, genesis: Genesis = GENESIS) -> list[str]:
    return [s.name for s in verify(receipt, genesis) if not s.ok]


def test_a_good_receipt_passes_every_step() -> None:
    receipt = make_receipt()
    steps = verify(receipt, GENESIS)
    assert all_passed(steps), [s for s in steps if not s.ok]
    names = [s.name for s in steps]
    assert names[0] == "genesis"
    assert any("commit certificate" in n for n in names)
    assert any("inclusion in series manifest" in n for n in names)


def test_json_round_trip_is_exact() -> None:
    receipt = make_receipt()
    again = Receipt.from_json(receipt.to_json())
    assert again.encode() == receipt.encode()
    assert all_passed(verify(again, GENESIS))


def test_another_networks_genesis_is_refused() -> None:
    other = dataclasses.replace(GENESIS, chain_id="radledger-other")
    assert "genesis" in _failed(make_receipt(), other)


def test_a_certificate_without_quorum_is_refused() -> None:
    receipt = make_receipt(with_instance=False)
    entry = receipt.entries[0]
    weak = dataclasses.replace(
        entry.cert, signatures=entry.cert.signatures[:2]
    )  # 2 of 4 validators: below the quorum of 3
    tampered = dataclasses.replace(
        receipt, entries=(dataclasses.replace(entry, cert=weak), *receipt.entries[1:])
    )
    assert any("commit certificate" in n for n in _failed(tampered))


def test_a_certificate_from_outside_the_validator_set_is_refused() -> None:
    receipt = make_receipt(with_instance=False)
    entry = receipt.entries[0]
    strangers = [SigningKey(bytes([200 + i]) * 32) for i in range(3)]
    votes = [
        Vote.create(
            key,
            chain_id=GENESIS.chain_id,
            kind=VoteKind.COMMIT,
            height=entry.header.height,
            view=0,
            block_hash=entry.header.hash,
        )
        for key in strangers
    ]
    forged = dataclasses.replace(entry, cert=CommitCertificate.from_votes(votes))
    tampered = dataclasses.replace(receipt, entries=(forged, *receipt.entries[1:]))
    assert any("commit certificate" in n for n in _failed(tampered))


def test_an_incomplete_series_is_refused() -> None:
    receipt = make_receipt()
    tampered = dataclasses.replace(receipt, entries=receipt.entries[1:])
    assert any("series complete" in n for n in _failed(tampered))


def test_a_different_instance_is_refused() -> None:
    receipt = make_receipt()
    assert receipt.instance is not None
    forged = dataclasses.replace(
        receipt.instance, leaf=dataclasses.replace(LEAVES[3], pixel=sha256(b"edited"))
    )
    assert any(
        "series manifest" in n for n in _failed(dataclasses.replace(receipt, instance=forged))
    )


def _facts(receipt: Receipt) -> tuple[Any, ...]:
    """What a receipt proves: transactions, blocks, the instance and its manifest position."""
    instance = receipt.instance
    return (
        receipt.chain_id,
        receipt.genesis_hash,
        receipt.dataset,
        tuple((e.tx.encode(), e.header.encode(), e.cert.encode()) for e in receipt.entries),
        None if instance is None else (instance.leaf.encode(), instance.series, instance.size),
    )


def _with_counts_of(receipt: Receipt, original: Receipt) -> Receipt:
    """``receipt`` with every entry's block transaction count put back to ``original``'s."""
    entries = tuple(
        dataclasses.replace(entry, count=before.count)
        for entry, before in zip(receipt.entries, original.entries, strict=True)
    )
    return dataclasses.replace(receipt, entries=entries)


def test_flipping_any_byte_is_refused_or_changes_only_a_block_count() -> None:
    """Every single-byte change of the canonical receipt fails to decode or fails a step,
    except one that changes only a block's transaction ``count``: RFC 6962 audit paths
    do not authenticate the tree size (RFC 9162 §2.1.3.2), and nothing a receipt claims
    depends on it. (For this receipt, no such flip passes either.)"""
    receipt = make_receipt()
    original = receipt.encode()
    harmless = []
    for position in range(len(original)):
        tampered = bytearray(original)
        tampered[position] ^= 0x01
        try:
            decoded = RECEIPT_SCHEMA.decode(bytes(tampered))
        except LedgerError:
            continue
        if all_passed(verify(decoded, GENESIS)):
            assert len(decoded.entries) == len(receipt.entries), f"byte {position}"
            restored = _with_counts_of(decoded, receipt)
            assert restored.encode() == original, f"byte {position} changed more than a count"
            harmless.append(position)
    assert harmless == []


def test_a_block_count_is_not_authenticated_but_proves_nothing() -> None:
    """The one harmless change: index 0 of 3 and of 4 transactions share an audit path
    shape, so the count can change and the receipt still verifies, proving the same."""
    part0 = _register(0, 1, LEAVES, 1)
    extra = [
        Tx.create(ADMIN, chain_id=GENESIS.chain_id, kind="noop", nonce=10 + i, body={})
        for i in range(2)
    ]
    block = Block.build(
        chain_id=GENESIS.chain_id,
        height=7,
        view=0,
        prev_hash=bytes(32),
        time_ms=1_700_000_000_007,
        proposer=VALIDATORS[0].public_key,
        state_root=sha256(b"state"),
        txs=[part0, *extra],
    )
    entry = TxProof(part0, 0, 3, tuple(block.tx_inclusion_proof(0)), block.header, _commit(block))
    body = part0.body_value()
    assert body["parts"] == 1
    receipt = Receipt(
        RECEIPT_FORMAT,
        RECEIPT_VERSION,
        GENESIS.chain_id,
        GENESIS.hash,
        "lung-ct-2026",
        (entry,),
        None,
    )
    assert all_passed(verify(receipt, GENESIS))
    miscounted = dataclasses.replace(receipt, entries=(dataclasses.replace(entry, count=4),))
    assert all_passed(verify(miscounted, GENESIS))
    assert _facts(miscounted) == _facts(receipt)


@pytest.mark.parametrize("field", ["format", "v"])
def test_wrong_format_or_version_does_not_load(field: str) -> None:
    obj = make_receipt().to_json()
    obj[field] = "something-else" if field == "format" else 99
    with pytest.raises(LedgerError):
        Receipt.from_json(obj)
