"""The canonical codec: round trips, agreement with cbor2, and strict rejection."""

from __future__ import annotations

from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.errors import DecodeError, EncodeError

UINT64_MAX = (1 << 64) - 1

scalars = (
    st.integers(min_value=-(1 << 64), max_value=UINT64_MAX)
    | st.binary(max_size=40)
    | st.text(max_size=20)
    | st.booleans()
    | st.none()
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=25,
)


def normalise(value: Any) -> Any:
    """Tuples encode as arrays and decode as lists."""
    if isinstance(value, tuple | list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value


@given(values)
def test_round_trip(value: Any) -> None:
    encoded = codec.encode(value)
    assert codec.decode(encoded) == normalise(value)
    assert codec.encode(codec.decode(encoded)) == encoded


@given(values)
def test_agrees_with_cbor2_canonical_mode(value: Any) -> None:
    assert codec.encode(value) == cbor2.dumps(value, canonical=True)
    assert cbor2.loads(codec.encode(value)) == normalise(value)


@settings(max_examples=300)
@given(values, st.data())
def test_mutated_bytes_are_rejected_or_still_canonical(value: Any, data: st.DataObject) -> None:
    """Any mutation either fails with DecodeError or is itself the canonical
    encoding of the value it decodes to: no value ever has two encodings."""
    encoded = bytearray(codec.encode(value))
    position = data.draw(st.integers(0, len(encoded) - 1))
    action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
    if action == "flip":
        encoded[position] ^= 1 << data.draw(st.integers(0, 7))
    elif action == "insert":
        encoded.insert(position, data.draw(st.integers(0, 255)))
    elif action == "delete":
        del encoded[position]
    else:
        del encoded[position:]
    mutated = bytes(encoded)
    try:
        decoded = codec.decode(mutated)
    except DecodeError:
        return
    assert codec.encode(decoded) == mutated


@given(st.binary(max_size=64))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        decoded = codec.decode(data)
    except DecodeError:
        return
    assert codec.encode(decoded) == data


@pytest.mark.parametrize(
    ("hex_input", "reason"),
    [
        ("1805", "shortest"),  # 5 encoded with a one-byte argument
        ("190017", "shortest"),  # 23 with a two-byte argument
        ("1a0000ffff", "shortest"),
        ("1b00000000ffffffff", "shortest"),
        ("5801ff", "shortest"),  # a 1-byte string with a long-form length
        ("9f01ff", "indefinite"),
        ("5f4101ff", "indefinite"),
        ("f93c00", "float"),  # half-precision 1.0
        ("fb3ff0000000000000", "float"),
        ("c000", "tags"),
        ("f7", "simple value 23"),  # undefined
        ("f0", "simple value 16"),
        ("f820", "extended simple"),
        ("1c", "reserved"),
        ("a2616101616102", "duplicated"),  # {"a":1,"a":2}
        ("a2616201616101", "canonical order"),  # {"b":1,"a":2}
        ("a2626161016162", "canonical order"),  # {"aa":1,"b":..}: longer key first
        ("a10101", "not a text string"),  # {1: 1}
        ("62c328", "UTF-8"),  # invalid UTF-8 continuation
        ("0000", "trailing"),
        ("", "end of input"),
        ("8301", "cannot fit"),  # an array of 3 with one item
        ("820119", "end of input"),  # second item's head is cut short
        ("5b" + "ff" * 8, "past the end"),
        ("9b" + "ff" * 8, "cannot fit"),
        ("bb" + "ff" * 8, "cannot fit"),
    ],
)
def test_non_canonical_inputs_are_rejected(hex_input: str, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason):
        codec.decode(bytes.fromhex(hex_input))


def test_deep_nesting_is_rejected_cleanly() -> None:
    bomb = b"\x81" * 10_000 + b"\x00"
    with pytest.raises(DecodeError, match="nest"):
        codec.decode(bomb)


def test_size_limit() -> None:
    data = codec.encode(b"x" * 100)
    assert codec.decode(data, max_bytes=len(data)) == b"x" * 100
    with pytest.raises(DecodeError, match="exceeds the limit"):
        codec.decode(data, max_bytes=len(data) - 1)


def test_decode_rejects_non_bytes() -> None:
    with pytest.raises(DecodeError):
        codec.decode("a0")


@pytest.mark.parametrize(
    "bad",
    [1.5, 1 << 64, -(1 << 64) - 1, {1: 2}, {"a": object()}, "\ud800", set()],
)
def test_encode_rejects_values_outside_the_model(bad: Any) -> None:
    with pytest.raises(EncodeError):
        codec.encode(bad)


def test_known_encodings() -> None:
    """A few fixed points from RFC 8949 Appendix A, for a reader of the spec."""
    assert codec.encode(0).hex() == "00"
    assert codec.encode(23).hex() == "17"
    assert codec.encode(24).hex() == "1818"
    assert codec.encode(1000).hex() == "1903e8"
    assert codec.encode(1000000).hex() == "1a000f4240"
    assert codec.encode(18446744073709551615).hex() == "1bffffffffffffffff"
    assert codec.encode(-1).hex() == "20"
    assert codec.encode(-1000).hex() == "3903e7"
    assert codec.encode(-(1 << 64)).hex() == "3bffffffffffffffff"
    assert codec.encode(b"\x01\x02\x03\x04").hex() == "4401020304"
    assert codec.encode("IETF").hex() == "6449455446"
    assert codec.encode("\u00fc").hex() == "62c3bc"
    assert codec.encode([1, [2, 3], [4, 5]]).hex() == "8301820203820405"
    assert codec.encode({"a": 1, "b": [2, 3]}).hex() == "a26161016162820203"
    assert codec.encode(False).hex() == "f4"
    assert codec.encode(True).hex() == "f5"
    assert codec.encode(None).hex() == "f6"
    # Canonical key order: shorter key first, then bytewise.
    assert codec.encode({"bb": 1, "a": 2, "c": 3}).hex() == "a3616102616303626262" + "01"


def _maps(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [value, *(m for v in value.values() for m in _maps(v))]
    if isinstance(value, list):
        return [m for v in value for m in _maps(v)]
    return []


@given(values)
def test_decoded_maps_know_their_own_encoding(value: Any) -> None:
    """Every decoded map, at any depth, points at exactly its own canonical bytes."""
    for decoded_map in _maps(codec.decode(codec.encode(value))):
        assert isinstance(decoded_map, codec.DecodedMap)
        assert decoded_map.encoded() == codec.encode(decoded_map)
