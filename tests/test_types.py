"""Wire records: construction checks, strict decoding, signatures, certificates."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec, merkle
from ledger.errors import DecodeError, SignatureError, ValidationError
from ledger.keys import Domain, SigningKey
from ledger.types import (
    HEADER_SCHEMA,
    TX_SCHEMA,
    Block,
    BlockHeader,
    CommitCertificate,
    DuplicateVoteEvidence,
    SafetyRecord,
    Tx,
    ValidatorSignature,
    Vote,
    VoteKind,
    max_faulty,
    quorum_size,
)

CHAIN = "radledger-test"
KEYS = [SigningKey(bytes([i + 1]) * 32) for i in range(4)]
VALIDATORS = [k.public_key for k in KEYS]
BODY = {"dataset": "ds-1", "purpose": "research", "reason": "IRB-1", "time": 1_700_000_000_000}


def make_tx(nonce: int = 1, key: SigningKey = KEYS[0], chain: str = CHAIN) -> Tx:
    return Tx.create(key, chain_id=chain, kind="access.log", nonce=nonce, body=BODY)


def make_block(txs: tuple[Tx, ...] = (), height: int = 1) -> Block:
    return Block.build(
        chain_id=CHAIN,
        height=height,
        view=0,
        prev_hash=bytes(32),
        time_ms=1_700_000_000_000,
        proposer=VALIDATORS[0],
        state_root=bytes(32),
        txs=txs,
    )


def commit_votes(block: Block, keys: list[SigningKey] = KEYS) -> list[Vote]:
    return [
        Vote.create(
            k,
            chain_id=CHAIN,
            kind=VoteKind.COMMIT,
            height=block.height,
            view=0,
            block_hash=block.hash,
        )
        for k in keys
    ]


# --------------------------------------------------------------------------- quorum


@pytest.mark.parametrize(
    ("n", "f", "q"),
    [(1, 0, 1), (3, 0, 2), (4, 1, 3), (5, 1, 4), (6, 1, 4), (7, 2, 5), (10, 3, 7), (100, 33, 67)],
)
def test_quorum_sizes(n: int, f: int, q: int) -> None:
    assert max_faulty(n) == f
    assert quorum_size(n) == q
    # Any two quorums intersect in at least f+1 validators (one honest) ...
    assert 2 * q - n >= f + 1
    # ... and a quorum is reachable with f validators silent.
    assert q <= n - f


# --------------------------------------------------------------------------- tx


def test_tx_round_trip_and_signature() -> None:
    tx = make_tx()
    assert tx.verify_signature()
    decoded = Tx.decode(tx.encode())
    assert decoded == tx
    assert decoded.hash == tx.hash
    assert decoded.verify_signature()
    assert decoded.body_value() == BODY
    assert Tx.decode(tx.encode()).encode() == tx.encode()


def test_tx_signature_binds_chain_kind_nonce_and_body() -> None:
    tx = make_tx()
    for change in (
        {"chain_id": "other-chain"},
        {"kind": "dataset.register"},
        {"nonce": 2},
        {"body": codec.encode({**BODY, "purpose": "marketing"})},
        {"signer": VALIDATORS[1]},
    ):
        forged = dataclasses.replace(tx, **change)
        assert not forged.verify_signature(), change


def test_tx_signature_is_domain_separated() -> None:
    """A signature over the same bytes under another domain tag does not verify."""
    tx = make_tx()
    wrong = KEYS[0].sign(Domain.VOTE, tx.unsigned_bytes())
    assert not dataclasses.replace(tx, sig=wrong).verify_signature()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("version", 2),
        ("chain_id", ""),
        ("chain_id", "has space"),
        ("kind", "Upper.Case"),
        ("kind", "a..b"),
        ("signer", b"\x00" * 31),
        ("nonce", -1),
        ("nonce", 1 << 64),
        ("body", b"\x01"),  # an integer, not a map
        ("body", b"\xa1\x61\x61"),  # truncated map
        ("sig", b"\x00" * 63),
    ],
)
def test_tx_construction_rejects_bad_fields(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(make_tx(), **{field: value})


def test_tx_decode_rejects_unknown_missing_and_mistyped_fields() -> None:
    good = codec.decode(make_tx().encode())
    assert isinstance(good, dict)
    with pytest.raises(DecodeError, match="unknown fields"):
        Tx.decode(codec.encode({**good, "extra": 1}))
    missing = dict(good)
    del missing["nonce"]
    with pytest.raises(DecodeError, match="missing fields"):
        Tx.decode(codec.encode(missing))
    with pytest.raises(DecodeError, match=r"tx\.nonce"):
        Tx.decode(codec.encode({**good, "nonce": "7"}))
    with pytest.raises(DecodeError, match=r"tx\.body"):
        Tx.decode(codec.encode({**good, "body": [1]}))
    with pytest.raises(DecodeError, match="version"):
        Tx.decode(codec.encode({**good, "v": 9}))
    with pytest.raises(DecodeError, match="expected a map"):
        Tx.decode(codec.encode([1, 2]))
    with pytest.raises(DecodeError, match="trailing"):
        Tx.decode(make_tx().encode() + b"\x00")


def test_tx_size_limit() -> None:
    tx = Tx.create(
        KEYS[0], chain_id=CHAIN, kind="access.log", nonce=1, body={"blob": b"x" * 70_000}
    )
    with pytest.raises(DecodeError, match="exceeds the limit"):
        Tx.decode(tx.encode())


@settings(max_examples=200)
@given(st.data())
def test_mutated_tx_bytes_raise_only_decode_error(data: st.DataObject) -> None:
    encoded = bytearray(make_tx().encode())
    index = data.draw(st.integers(0, len(encoded) - 1))
    encoded[index] = data.draw(st.integers(0, 255).filter(lambda b: b != encoded[index]))
    try:
        decoded = Tx.decode(bytes(encoded))
    except DecodeError:
        return
    # It decoded, so it is canonical: it re-encodes to exactly these bytes, is a
    # different transaction from the original, and the signature cannot cover it.
    assert TX_SCHEMA.encode(decoded) == bytes(encoded)  # re-encoded, not the cache
    assert decoded != make_tx()
    assert not decoded.verify_signature()


def test_tx_json_round_trip() -> None:
    tx = make_tx()
    assert TX_SCHEMA.from_json(tx.to_json()) == tx
    assert tx.to_json()["body"]["dataset"] == "ds-1"


# --------------------------------------------------------------------------- blocks


def test_block_round_trip_and_roots() -> None:
    txs = tuple(make_tx(nonce=i) for i in range(5))
    block = make_block(txs)
    assert Block.decode(block.encode()) == block
    assert block.header.tx_root == merkle.root([tx.hash for tx in txs])
    assert block.header.evidence_root == merkle.root([])
    assert BlockHeader.decode(block.header.encode()).hash == block.hash
    for i, tx in enumerate(txs):
        proof = block.tx_inclusion_proof(i)
        assert merkle.verify_inclusion(tx.hash, i, len(txs), proof, block.header.tx_root)


def test_decoded_records_cache_exactly_their_canonical_encoding() -> None:
    """Decoding caches the input bytes as the encoding (so hashing does not re-encode);
    the cache must equal a fresh encoding, for top-level and nested records alike."""
    block = make_block(tuple(make_tx(nonce=i) for i in range(3)))
    decoded = Block.decode(block.encode())
    for tx in decoded.txs:
        assert tx.encode() == TX_SCHEMA.encode(tx)
    assert decoded.header.encode() == HEADER_SCHEMA.encode(decoded.header)
    assert decoded.hash == block.hash
    single = Tx.decode(make_tx().encode())
    assert single.encode() == TX_SCHEMA.encode(single)
    assert single.hash == make_tx().hash


def test_block_rejects_inconsistent_contents() -> None:
    txs = (make_tx(1), make_tx(2))
    block = make_block(txs)
    with pytest.raises(ValidationError, match="tx_root"):
        Block(block.header, txs[:1])
    with pytest.raises(ValidationError, match="tx_root"):
        Block(block.header, (txs[1], txs[0]))
    with pytest.raises(ValidationError, match="twice"):
        make_block((txs[0], txs[0]))
    with pytest.raises(ValidationError, match="another chain"):
        make_block((make_tx(chain="elsewhere"),))
    with pytest.raises(ValidationError, match="evidence_root"):
        Block(block.header, txs, (evidence(),))


def test_block_decode_checks_roots() -> None:
    block = make_block((make_tx(1), make_tx(2)))
    value = codec.decode(block.encode())
    assert isinstance(value, dict)
    assert isinstance(value["txs"], list)
    value["txs"].reverse()
    with pytest.raises(DecodeError, match="tx_root"):
        Block.decode(codec.encode(value))


@pytest.mark.parametrize(
    ("field", "value"),
    [("height", 0), ("version", 2), ("prev_hash", b"\x00"), ("time_ms", -5), ("view", -1)],
)
def test_header_rejects_bad_fields(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        dataclasses.replace(make_block().header, **{field: value})


# --------------------------------------------------------------------------- votes & certs


def test_vote_round_trip_and_signature() -> None:
    vote = commit_votes(make_block())[0]
    assert Vote.decode(vote.encode()) == vote
    assert vote.verify_signature()
    assert not dataclasses.replace(vote, kind=VoteKind.PREPARE).verify_signature()
    assert not dataclasses.replace(vote, view=1).verify_signature()
    assert not dataclasses.replace(vote, chain_id="other").verify_signature()


def test_vote_decode_rejects_unknown_kind() -> None:
    value = codec.decode(commit_votes(make_block())[0].encode())
    assert isinstance(value, dict)
    with pytest.raises(DecodeError, match="vote kind"):
        Vote.decode(codec.encode({**value, "kind": 9}))


def test_certificate_quorum_rules() -> None:
    block = make_block()
    votes = commit_votes(block)
    cert = CommitCertificate.from_votes(votes[:3])
    cert.verify(CHAIN, VALIDATORS)  # 3 of 4: a quorum
    assert CommitCertificate.decode(cert.encode()) == cert
    assert CommitCertificate.from_votes(votes[:3] + votes[:1]) == cert  # duplicates merge
    with pytest.raises(SignatureError, match="quorum"):
        CommitCertificate.from_votes(votes[:2]).verify(CHAIN, VALIDATORS)
    with pytest.raises(SignatureError, match="chain"):
        cert.verify("other", VALIDATORS)
    outsider = SigningKey(b"\x99" * 32)
    foreign = CommitCertificate.from_votes([*votes[:2], *commit_votes(block, [outsider])])
    with pytest.raises(SignatureError, match="not a validator"):
        foreign.verify(CHAIN, VALIDATORS)
    forged = dataclasses.replace(
        cert,
        signatures=(
            *cert.signatures[:2],
            ValidatorSignature(cert.signatures[2].validator, cert.signatures[0].sig),
        ),
    )
    with pytest.raises(SignatureError, match="does not verify"):
        forged.verify(CHAIN, VALIDATORS)
    other_height = dataclasses.replace(cert, height=2)
    with pytest.raises(SignatureError):
        other_height.verify(CHAIN, VALIDATORS)


def test_certificate_rejects_unsorted_or_repeated_signers() -> None:
    cert = CommitCertificate.from_votes(commit_votes(make_block())[:3])
    with pytest.raises(ValidationError, match="sorted"):
        dataclasses.replace(cert, signatures=tuple(reversed(cert.signatures)))
    with pytest.raises(ValidationError, match="sorted"):
        dataclasses.replace(cert, signatures=(cert.signatures[0], cert.signatures[0]))


def test_certificate_from_votes_rejects_mixed_votes() -> None:
    a, b = make_block(), make_block(height=2)
    with pytest.raises(ValidationError, match="different"):
        CommitCertificate.from_votes([commit_votes(a)[0], commit_votes(b)[1]])
    prepare = Vote.create(
        KEYS[0], chain_id=CHAIN, kind=VoteKind.PREPARE, height=1, view=0, block_hash=a.hash
    )
    with pytest.raises(ValidationError, match="COMMIT"):
        CommitCertificate.from_votes([prepare])


# --------------------------------------------------------------------------- evidence


def evidence() -> DuplicateVoteEvidence:
    one = Vote.create(
        KEYS[1], chain_id=CHAIN, kind=VoteKind.PREPARE, height=3, view=1, block_hash=b"\x01" * 32
    )
    two = Vote.create(
        KEYS[1], chain_id=CHAIN, kind=VoteKind.PREPARE, height=3, view=1, block_hash=b"\x02" * 32
    )
    return DuplicateVoteEvidence.of(two, one)


def test_evidence() -> None:
    ev = evidence()
    assert DuplicateVoteEvidence.decode(ev.encode()) == ev
    ev.verify(VALIDATORS)
    with pytest.raises(SignatureError):
        ev.verify(VALIDATORS[2:])
    with pytest.raises(ValidationError, match="canonical order"):
        DuplicateVoteEvidence(ev.vote_b, ev.vote_a)
    with pytest.raises(ValidationError, match="do not conflict"):
        DuplicateVoteEvidence.of(ev.vote_a, dataclasses.replace(ev.vote_a, view=2))
    block = Block.build(
        chain_id=CHAIN,
        height=4,
        view=0,
        prev_hash=bytes(32),
        time_ms=1,
        proposer=VALIDATORS[0],
        state_root=bytes(32),
        evidence=[ev],
    )
    assert Block.decode(block.encode()).evidence == (ev,)


def test_safety_record() -> None:
    record = SafetyRecord(height=5, view=2, phase=1, digest=b"\x07" * 32)
    assert SafetyRecord.decode(record.encode()) == record
    assert record.slot == (5, 2, 1)
    with pytest.raises(ValidationError):
        SafetyRecord(height=5, view=2, phase=256, digest=b"\x07" * 32)
