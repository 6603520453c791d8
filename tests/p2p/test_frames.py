"""Batch framing inside an encrypted frame (p2p/frames.py)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from p2p.frames import DEFAULT_MAX_BYTES, FrameError, Kind, decode_batch, encode_batch

LIMITS = {Kind.CONSENSUS: 1000, Kind.TX: 100, Kind.SYNC: 5000}


def test_layout_is_kind_then_big_endian_length_then_payload() -> None:
    frame = encode_batch([(Kind.TX, b"abc"), (Kind.CONSENSUS, b"")])
    assert frame == b"\x02\x00\x00\x00\x03abc" + b"\x01\x00\x00\x00\x00"


def test_round_trip_keeps_order_and_kinds() -> None:
    items = [(Kind.CONSENSUS, b"vote"), (Kind.SYNC, b"s" * 4000), (Kind.TX, b"t" * 100)]
    assert decode_batch(encode_batch(items), LIMITS) == items


def test_each_kind_has_its_own_limit() -> None:
    assert decode_batch(encode_batch([(Kind.SYNC, b"x" * 5000)]), LIMITS)
    with pytest.raises(FrameError, match="TX message of 101 bytes"):
        decode_batch(encode_batch([(Kind.TX, b"x" * 101)]), LIMITS)
    with pytest.raises(FrameError, match="CONSENSUS"):
        decode_batch(encode_batch([(Kind.CONSENSUS, b"x" * 1001)]), LIMITS)


def test_oversize_is_refused_from_the_header_alone() -> None:
    """A declared length over the limit is refused before any payload is read."""
    header_only = b"\x02" + (10**9).to_bytes(4, "big")
    with pytest.raises(FrameError, match="exceeds"):
        decode_batch(header_only, LIMITS)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"\x01\x00\x00", "truncated"),
        (b"\x09\x00\x00\x00\x00", "unknown message kind 9"),
        (b"\x00\x00\x00\x00\x00", "unknown message kind 0"),
        (b"\x01\x00\x00\x00\x05abc", "runs past"),
        (encode_batch([(Kind.TX, b"ok")]) + b"\x02", "truncated"),
    ],
)
def test_malformed_batches(data: bytes, message: str) -> None:
    with pytest.raises(FrameError, match=message):
        decode_batch(data, LIMITS)


def test_an_empty_batch_cannot_be_encoded() -> None:
    with pytest.raises(FrameError):
        encode_batch([])


def test_default_limits_cover_every_kind() -> None:
    assert set(DEFAULT_MAX_BYTES) == set(Kind)
    assert DEFAULT_MAX_BYTES[Kind.TX] < DEFAULT_MAX_BYTES[Kind.CONSENSUS]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_raise_only_frame_errors(data: bytes) -> None:
    try:
        items = decode_batch(data, LIMITS)
    except FrameError:
        return
    assert encode_batch(items) == data  # what decodes re-encodes to the same bytes


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from(list(Kind)), st.binary(max_size=100)), min_size=1, max_size=20
    )
)
def test_any_batch_within_limits_round_trips(items: list[tuple[Kind, bytes]]) -> None:
    assert decode_batch(encode_batch(items), LIMITS) == items
