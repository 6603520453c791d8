"""The write-collecting state layers: reads, lazy encoding, merges, and the body memo."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.schema import FieldSpec, Schema, Text, UInt
from ledger.types import Tx
from registry import kinds
from registry.state import State
from tests.registry.helpers import RESEARCHER, Chain


@dataclass(frozen=True, slots=True)
class Counter:
    name: str
    count: int


SCHEMA = Schema[Counter](
    "counter", Counter, [FieldSpec("name", "name", Text(16)), FieldSpec("count", "count", UInt())]
)
KEY = b"reg/test/counter"


def _empty(key: bytes) -> bytes | None:
    return None


def test_a_stored_record_reads_back_as_bytes_and_as_the_record() -> None:
    st = State(_empty)
    st.store(SCHEMA, KEY, Counter("a", 1))
    assert st.load(SCHEMA, KEY) == Counter("a", 1)
    assert st.get(KEY) == SCHEMA.encode(Counter("a", 1))
    assert st.has(KEY)
    assert st.writes == {KEY: SCHEMA.encode(Counter("a", 1))}


def test_a_record_rewritten_many_times_is_encoded_once() -> None:
    block = State(_empty)
    for _ in range(50):
        layer = State(block.get, block)
        current = layer.load(SCHEMA, KEY)
        layer.store(SCHEMA, KEY, Counter("a", 0 if current is None else current.count + 1))
        block.merge(layer)
    assert block._lazy == {KEY: SCHEMA}  # still a record: nothing encoded yet
    assert KEY not in block._raw
    assert block.writes == {KEY: SCHEMA.encode(Counter("a", 49))}
    assert block._lazy == {}


def test_a_refused_layer_leaves_nothing_behind() -> None:
    block = State(_empty)
    block.store(SCHEMA, KEY, Counter("a", 1))
    layer = State(block.get, block)
    layer.store(SCHEMA, KEY, Counter("a", 2))
    layer.put(b"reg/test/raw", b"\x01")
    # not merged: the block still has its own write only
    assert block.load(SCHEMA, KEY) == Counter("a", 1)
    assert block.writes == {KEY: SCHEMA.encode(Counter("a", 1))}


def test_bytes_written_over_a_record_replace_it_everywhere() -> None:
    base = {KEY: SCHEMA.encode(Counter("old", 1))}
    block = State(base.get)
    assert block.load(SCHEMA, KEY) == Counter("old", 1)  # cached in the block layer
    layer = State(block.get, block)
    layer.put(KEY, SCHEMA.encode(Counter("raw", 2)))
    block.merge(layer)
    assert block.load(SCHEMA, KEY) == Counter("raw", 2)
    assert block.writes == {KEY: SCHEMA.encode(Counter("raw", 2))}


def test_a_record_stored_over_bytes_replaces_them() -> None:
    block = State(_empty)
    block.put(KEY, SCHEMA.encode(Counter("raw", 2)))
    layer = State(block.get, block)
    layer.store(SCHEMA, KEY, Counter("rec", 3))
    block.merge(layer)
    assert block.get(KEY) == SCHEMA.encode(Counter("rec", 3))
    assert block.writes == {KEY: SCHEMA.encode(Counter("rec", 3))}


def _revokes(count: int) -> list[Tx]:
    chain = Chain()
    body = {"member": RESEARCHER.public_key}
    return [chain.tx(RESEARCHER, "member.revoke", body, nonce=n) for n in range(1, count + 1)]


def test_the_body_memo_answers_like_parsing_and_stays_bounded() -> None:
    memo = kinds._ParsedBodies(max_entries=3, max_bytes=10_000)
    for tx in _revokes(5):
        assert memo.get(tx) == kinds._parse_body(tx)
        assert memo.get(tx) is memo.get(tx)  # the second answer is the memo's
    assert len(memo) == 3


def test_the_body_memo_is_bounded_by_bytes() -> None:
    txs = _revokes(5)
    memo = kinds._ParsedBodies(max_entries=100, max_bytes=2 * len(txs[0].body))
    for tx in txs:
        memo.get(tx)
    assert len(memo) == 2


def test_parse_body_goes_through_the_memo() -> None:
    (tx,) = _revokes(1)
    assert kinds.parse_body(tx) is kinds.parse_body(tx)
