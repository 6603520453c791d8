"""The fast decoding path accepts exactly what the reference path accepts.

``Schema.decode`` and ``decode_message`` read records straight from the bytes
and fall back to the reference path (generic canonical decode, then
``Schema.from_value``) only on a defect, to name it. Safety rests on the fast
path never accepting anything the reference path refuses and never building a
different record, so every record kind is checked both ways on valid
encodings and on hostile mutations of them. Reusing known transactions in a
block (interning) must give the same block as decoding them.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.codec import Decoder
from ledger.errors import DecodeError
from ledger.keys import SigningKey
from ledger.messages import (
    BlockRequest,
    Proposal,
    _decode_message_reference,
    decode_message,
    encode_message,
)
from ledger.schema import Schema
from ledger.types import (
    BLOCK_SCHEMA,
    CERT_SCHEMA,
    EVIDENCE_SCHEMA,
    HEADER_SCHEMA,
    MAX_BLOCK_BYTES,
    TX_SCHEMA,
    VOTE_SCHEMA,
    Block,
    CommitCertificate,
    DuplicateVoteEvidence,
    Tx,
    Vote,
    VoteKind,
)

KEY = SigningKey(b"\x0b" * 32)
CHAIN = "radledger-fast"


def _tx(nonce: int, body: dict[str, Any] | None = None) -> Tx:
    return Tx.create(
        KEY,
        chain_id=CHAIN,
        kind="access.log",
        nonce=nonce,
        body=body if body is not None else {"dataset": "ds", "n": nonce, "b": b"\x00" * 30},
    )


TXS = [_tx(n) for n in range(1, 4)] + [_tx(9, {"deep": [[{"x": [1, -2, None, True]}]], "t": ""})]
BLOCK = Block.build(
    chain_id=CHAIN,
    height=7,
    view=2,
    prev_hash=b"\x01" * 32,
    time_ms=1_700_000_000_000,
    proposer=KEY.public_key,
    state_root=b"\x02" * 32,
    txs=TXS,
)
VOTES = [
    Vote.create(
        SigningKey(bytes([i]) * 32),
        chain_id=CHAIN,
        kind=VoteKind.COMMIT,
        height=7,
        view=2,
        block_hash=BLOCK.hash,
    )
    for i in range(1, 4)
]
OTHER = Vote.create(
    SigningKey(b"\x01" * 32),
    chain_id=CHAIN,
    kind=VoteKind.COMMIT,
    height=7,
    view=2,
    block_hash=b"\x07" * 32,
)
SAMPLES: dict[str, tuple[Schema[Any], bytes]] = {
    "tx": (TX_SCHEMA, TXS[-1].encode()),
    "vote": (VOTE_SCHEMA, VOTES[0].encode()),
    "header": (HEADER_SCHEMA, BLOCK.header.encode()),
    "block": (BLOCK_SCHEMA, BLOCK.encode()),
    "certificate": (CERT_SCHEMA, CommitCertificate.from_votes(VOTES).encode()),
    "evidence": (EVIDENCE_SCHEMA, DuplicateVoteEvidence.of(VOTES[0], OTHER).encode()),
}
PROPOSE = Vote.create(
    KEY, chain_id=CHAIN, kind=VoteKind.PROPOSE, height=7, view=2, block_hash=BLOCK.hash
)
MESSAGES = {
    "proposal": encode_message(Proposal(PROPOSE, BLOCK)),
    "vote": encode_message(VOTES[1]),
    "block_request": encode_message(BlockRequest(CHAIN, 3, 4)),
}


def _reference(schema: Schema[Any], data: bytes) -> object:
    return schema.from_value(codec.decode(data, max_bytes=schema.max_bytes))


def _fast(schema: Schema[Any], data: bytes) -> object:
    dec = Decoder(data)
    record = schema.read(dec, 0)
    if dec.pos != dec.end:
        raise DecodeError("trailing bytes")
    return record


def _outcome(decode: Any, data: bytes) -> tuple[str, object]:
    try:
        return "ok", decode(data)
    except DecodeError:
        return "refused", None


def _agree(schema: Schema[Any], data: bytes) -> None:
    fast = _outcome(lambda d: _fast(schema, d), data)
    reference = _outcome(lambda d: _reference(schema, d), data)
    assert fast == reference, (fast[0], reference[0], data.hex())
    # And what callers use: Schema.decode gives the reference answer either way.
    assert _outcome(schema.decode, data) == reference


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_the_fast_path_reads_every_valid_record_like_the_reference(name: str) -> None:
    schema, data = SAMPLES[name]
    assert _fast(schema, data) == _reference(schema, data)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_a_decoded_record_caches_exactly_its_input(name: str) -> None:
    schema, data = SAMPLES[name]
    record = schema.decode(data)
    assert schema.encode(record) == data


_mutation = st.tuples(
    st.sampled_from(sorted(SAMPLES)),
    st.sampled_from(["flip", "set", "insert", "delete", "truncate"]),
    st.integers(min_value=0),
    st.integers(min_value=0, max_value=255),
)


@given(_mutation)
@settings(max_examples=600, deadline=None)
def test_fast_and_reference_paths_agree_on_every_mutation(case: tuple[str, str, int, int]) -> None:
    name, how, where, byte = case
    schema, data = SAMPLES[name]
    at = where % len(data)
    if how == "flip":
        mutated = data[:at] + bytes([data[at] ^ (1 << (byte % 8))]) + data[at + 1 :]
    elif how == "set":
        mutated = data[:at] + bytes([byte]) + data[at + 1 :]
    elif how == "insert":
        mutated = data[:at] + bytes([byte]) + data[at:]
    elif how == "delete":
        mutated = data[:at] + data[at + 1 :]
    else:
        mutated = data[:at]
    _agree(schema, mutated)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.binary(max_size=70)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(st.sampled_from(sorted(SAMPLES)), st.data())
@settings(max_examples=400, deadline=None)
def test_fast_and_reference_paths_agree_on_reshaped_values(name: str, data: st.DataObject) -> None:
    """The right keys with arbitrary values: every field kind sees wrong types."""
    schema, encoded = SAMPLES[name]
    value = codec.decode(encoded)
    assert isinstance(value, dict)
    key = data.draw(st.sampled_from(sorted(value)))
    value[key] = data.draw(_values)
    _agree(schema, codec.encode(value))


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_messages_decode_the_same_both_ways(name: str) -> None:
    data = MESSAGES[name]
    assert decode_message(data) == decode_message(data, max_bytes=len(data))
    value = codec.decode(data)
    assert isinstance(value, list)
    assert encode_message(decode_message(data)) == data


@given(st.sampled_from(sorted(MESSAGES)), st.integers(min_value=0), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_a_mutated_message_decodes_to_what_the_reference_says(
    name: str, where: int, byte: int
) -> None:
    data = MESSAGES[name]
    at = where % len(data)
    for mutated in (data[:at] + bytes([byte]) + data[at + 1 :], data[:at], data + bytes([byte])):
        reference = _outcome(lambda d: _decode_message_reference(d, 2 * MAX_BLOCK_BYTES), mutated)
        assert _outcome(decode_message, mutated) == reference


def test_a_boolean_message_tag_is_refused() -> None:
    """``true`` equals 1 in Python; the envelope must still name its type as an integer."""
    data = MESSAGES["proposal"]
    assert data[1] == 0x01
    with pytest.raises(DecodeError):
        decode_message(data[:1] + b"\xf5" + data[2:])


def test_known_transactions_are_reused_and_give_the_same_block() -> None:
    known = {tx.hash: tx for tx in TXS[:2]}
    asked: list[bytes] = []

    def lookup(tx_hash: bytes) -> Tx | None:
        asked.append(tx_hash)
        return known.get(tx_hash)

    block = Block.decode(BLOCK.encode(), known_txs=lookup)
    assert block == BLOCK
    assert block.txs[0] is TXS[0]
    assert block.txs[1] is TXS[1]
    assert block.txs[2] is not TXS[2]
    assert asked == [tx.hash for tx in TXS]
    fresh = block.txs[2]
    assert fresh._hash == TXS[2].hash  # filled from the span already hashed


def test_a_lookup_that_answers_another_transaction_is_not_believed() -> None:
    """Interning trusts bytes, not the lookup: a wrong answer is decoded instead."""
    impostor = _tx(99)
    block = Block.decode(BLOCK.encode(), known_txs=lambda _hash: impostor)
    assert block == BLOCK
    assert all(tx is not impostor for tx in block.txs)


def test_a_proposal_reuses_known_transactions() -> None:
    message = decode_message(MESSAGES["proposal"], known_txs={TXS[0].hash: TXS[0]}.get)
    assert isinstance(message, Proposal)
    assert message.block is not None
    assert message.block.txs[0] is TXS[0]
    assert message == Proposal(PROPOSE, BLOCK)


@given(st.integers(min_value=0), st.integers(0, 255))
@settings(max_examples=300, deadline=None)
def test_interning_never_changes_what_a_mutated_block_decodes_to(where: int, byte: int) -> None:
    data = BLOCK.encode()
    at = where % len(data)
    mutated = data[:at] + bytes([byte]) + data[at + 1 :]
    known = {tx.hash: tx for tx in TXS}.get
    assert _outcome(lambda d: Block.decode(d, known_txs=known), mutated) == _outcome(
        lambda d: _reference(BLOCK_SCHEMA, d), mutated
    )


@given(_values, st.binary(max_size=8))
@settings(max_examples=400, deadline=None)
def test_skip_finds_where_every_canonical_value_ends(value: Any, tail: bytes) -> None:
    encoded = codec.encode(value)
    assert Decoder(encoded + tail).skip(0) == len(encoded)


@given(st.binary(max_size=64))
@settings(max_examples=400, deadline=None)
def test_skip_on_garbage_ends_inside_the_input_or_refuses(data: bytes) -> None:
    try:
        end = Decoder(data).skip(0)
    except DecodeError:
        return
    assert 0 < end <= len(data)


def test_skip_refuses_nesting_past_the_limit() -> None:
    deep = b"\x81" * (codec.MAX_DEPTH + 1) + b"\x00"
    with pytest.raises(DecodeError):
        Decoder(deep).skip(0)
    shallow = b"\x81" * (codec.MAX_DEPTH - 1) + b"\x00"
    assert Decoder(shallow).skip(0) == len(shallow)
