"""Every record decoder, fed hostile input, raises DecodeError and nothing else.

Two kinds of input: arbitrary values of the data model re-shaped toward each
record (right keys, random values), and single-byte mutations of a valid
encoding. Round trips of randomly generated transactions close the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.errors import DecodeError
from ledger.genesis import Genesis
from ledger.keys import SigningKey
from ledger.types import (
    Block,
    BlockHeader,
    CommitCertificate,
    DuplicateVoteEvidence,
    SafetyRecord,
    Tx,
    Vote,
    VoteKind,
)
from tests.factories import make_genesis

KEY = SigningKey(b"\x09" * 32)
CHAIN = "radledger-fuzz"


def _samples() -> dict[str, tuple[Callable[[bytes], object], bytes]]:
    tx = Tx.create(KEY, chain_id=CHAIN, kind="access.log", nonce=3, body={"a": 1, "b": b"x"})
    block = Block.build(
        chain_id=CHAIN,
        height=2,
        view=1,
        prev_hash=b"\x01" * 32,
        time_ms=5,
        proposer=KEY.public_key,
        state_root=b"\x02" * 32,
        txs=[tx],
    )
    votes = [
        Vote.create(
            SigningKey(bytes([i]) * 32),
            chain_id=CHAIN,
            kind=VoteKind.COMMIT,
            height=2,
            view=1,
            block_hash=block.hash,
        )
        for i in range(1, 4)
    ]
    other = Vote.create(
        SigningKey(b"\x01" * 32),
        chain_id=CHAIN,
        kind=VoteKind.COMMIT,
        height=2,
        view=1,
        block_hash=b"\x07" * 32,
    )
    return {
        "tx": (Tx.decode, tx.encode()),
        "header": (BlockHeader.decode, block.header.encode()),
        "block": (Block.decode, block.encode()),
        "vote": (Vote.decode, votes[0].encode()),
        "certificate": (CommitCertificate.decode, CommitCertificate.from_votes(votes).encode()),
        "evidence": (
            DuplicateVoteEvidence.decode,
            DuplicateVoteEvidence.of(votes[0], other).encode(),
        ),
        "safety_record": (
            SafetyRecord.decode,
            SafetyRecord(height=1, view=0, phase=2, digest=b"\x03" * 32).encode(),
        ),
        "genesis": (Genesis.decode, make_genesis().encode()),
    }


SAMPLES = _samples()

leaf = (
    st.integers(min_value=-(1 << 64), max_value=(1 << 64) - 1)
    | st.binary(max_size=70)
    | st.text(max_size=10)
    | st.booleans()
    | st.none()
)
anything: st.SearchStrategy[Any] = st.recursive(
    leaf,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=6), c, max_size=4),
    max_leaves=12,
)


def _only_decode_error(decode: Callable[[bytes], object], data: bytes) -> None:
    """Any exception but DecodeError fails the test; input that decodes must have
    been canonical (it re-encodes to itself)."""
    try:
        decode(data)
    except DecodeError:
        return
    assert codec.encode(codec.decode(data)) == data


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=60)
@given(data=st.data())
def test_right_keys_random_values(name: str, data: st.DataObject) -> None:
    decode, good = SAMPLES[name]
    template = codec.decode(good)
    assert isinstance(template, dict)
    shaped = {key: data.draw(anything | st.just(value)) for key, value in template.items()}
    encoded = codec.encode(shaped)
    _only_decode_error(decode, encoded)
    if shaped == template:
        assert decode(encoded) is not None


@pytest.mark.parametrize("name", sorted(SAMPLES))
@settings(max_examples=60)
@given(data=st.data())
def test_byte_mutations(name: str, data: st.DataObject) -> None:
    decode, good = SAMPLES[name]
    mutated = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        position = data.draw(st.integers(0, len(mutated) - 1))
        mutated[position] = data.draw(st.integers(0, 255))
    _only_decode_error(decode, bytes(mutated))


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_samples_round_trip(name: str) -> None:
    decode, good = SAMPLES[name]
    record = decode(good)
    assert record.encode() == good  # type: ignore[attr-defined]


kinds = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}", fullmatch=True)
bodies = st.dictionaries(st.text(max_size=8), anything, max_size=5)


@settings(max_examples=100)
@given(kind=kinds, nonce=st.integers(0, (1 << 64) - 1), body=bodies)
def test_generated_transactions_round_trip(kind: str, nonce: int, body: dict[str, Any]) -> None:
    tx = Tx.create(KEY, chain_id=CHAIN, kind=kind, nonce=nonce, body=body)
    decoded = Tx.decode(tx.encode())
    assert decoded == tx
    assert decoded.hash == tx.hash
    assert decoded.verify_signature()
    assert codec.encode(decoded.body_value()) == tx.body
