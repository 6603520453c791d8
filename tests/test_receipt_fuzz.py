"""Structural tampering of a receipt's JSON never crashes the verifier.

The JSON an auditor is handed may have been edited by anyone: a value of
another type (bytes turned into a map by renaming ``$hex``, a number into a
string), a key dropped or renamed, two values swapped, a character changed.
Whatever the edit, reading the file either refuses it with a ``LedgerError``
(``receipt verify`` then says the file is unreadable), or :func:`verify` runs
to the end and either names a failed step or passes; and it may pass only
when the edit made it prove nothing the original did not (a hex digit's
case, or the instance proof set to null: a weaker, still true, receipt).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any, Final

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ledger.errors import LedgerError
from ledger.receipt import RECEIPT_FORMAT, RECEIPT_VERSION, Receipt, verify
from ledger.types import Tx, sha256
from tests.test_receipt import ADMIN, GENESIS, _entry, _facts, make_receipt

Path = tuple[str | int, ...]

FUZZ: Final = settings(max_examples=1000, deadline=None, database=None)


def _derived_receipt() -> Receipt:
    """A receipt for a derived dataset: its dataset.derive and nothing else."""
    body = {
        "dataset": "lung-seg-2026",
        "parents": ["lung-ct-2026"],
        "transformation": "segmentation",
        "code_version": sha256(b"container"),
        "output": sha256(b"masks"),
        "reason": "nnU-Net lung masks",
        "time_ms": 1_700_000_000_000,
    }
    tx = Tx.create(ADMIN, chain_id=GENESIS.chain_id, kind="dataset.derive", nonce=3, body=body)
    return Receipt(
        RECEIPT_FORMAT,
        RECEIPT_VERSION,
        GENESIS.chain_id,
        GENESIS.hash,
        "lung-seg-2026",
        (_entry([tx], 0, 9),),
        None,
    )


RECEIPTS: Final = {
    "instance": make_receipt(with_instance=True),
    "dataset": make_receipt(with_instance=False),
    "derived": _derived_receipt(),
}


def _paths(value: Any, at: Path = ()) -> Iterator[Path]:
    """Every node of a JSON tree, the root excluded, parents before children."""
    if isinstance(value, dict):
        for key in sorted(value):
            yield (*at, key)
            yield from _paths(value[key], (*at, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*at, index)
            yield from _paths(item, (*at, index))


def _parent(tree: Any, path: Path) -> Any:
    for step in path[:-1]:
        tree = tree[step]
    return tree


def _get(tree: Any, path: Path) -> Any:
    return _parent(tree, path)[path[-1]]


JSON_VALUES: Final = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.sampled_from([0, 1, 2, 3, 2**32, 2**64 - 1, 2**64, -1])
    | st.text(max_size=80)
    | st.sampled_from(["", "00" * 32, "ab" * 64, "dataset.register", "1.2.3", "lung-ct-2026"])
    | st.builds(lambda h: {"$hex": h}, st.sampled_from(["", "00", "zz", "ab" * 32])),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@st.composite
def tampered(draw: st.DrawFn) -> tuple[str, Any]:
    """A receipt's JSON with one structural edit, and the receipt's name."""
    name = draw(st.sampled_from(sorted(RECEIPTS)))
    obj = copy.deepcopy(RECEIPTS[name].to_json())
    paths = list(_paths(obj))
    # Half the edits go into transaction bodies: the only part no schema checks on load.
    bodies = [p for p in paths if len(p) > 4 and p[0] == "entries" and p[2:4] == ("tx", "body")]
    in_body = bool(bodies) and draw(st.booleans())
    path = draw(st.sampled_from(bodies if in_body else paths))
    parent, last = _parent(obj, path), path[-1]
    edits = ["replace", "drop", "swap"]
    if isinstance(parent, dict):
        edits.append("rename")
    if isinstance(parent, list):
        edits.append("duplicate")
    if isinstance(parent[last], str) and parent[last]:
        edits.append("flip")
    edit = draw(st.sampled_from(edits))
    if edit == "replace":
        parent[last] = draw(JSON_VALUES)
    elif edit == "drop":
        del parent[last]
    elif edit == "rename":
        assert isinstance(last, str)
        new = draw(st.sampled_from([last + "x", last[:-1], last.upper(), "$hey", "$hex", ""]))
        parent[new] = parent.pop(last)
    elif edit == "swap":
        other = draw(st.sampled_from(paths))
        assume(other[: len(path)] != path and path[: len(other)] != other)  # disjoint
        a, b = _get(obj, path), _get(obj, other)
        parent[last] = b
        _parent(obj, other)[other[-1]] = a
    elif edit == "flip":
        text: str = parent[last]
        at = draw(st.integers(0, len(text) - 1))
        replacement = draw(st.sampled_from(["0", "1", "f", "F", "g", ".", "-", "A", "é"]))
        parent[last] = text[:at] + replacement + text[at + 1 :]
    else:
        assert isinstance(last, int)
        parent.insert(last, copy.deepcopy(parent[last]))
    assume(obj != RECEIPTS[name].to_json())  # an edit that changed the JSON
    return name, obj


def _proves_no_more(receipt: Receipt, original: Receipt) -> bool:
    """Whether every fact ``receipt`` proves, ``original`` proves too.

    An edit may weaken a receipt without forging anything: setting the
    instance proof to null leaves a valid dataset receipt. It must never make
    it prove another transaction, block, dataset or instance.
    """
    chain, genesis, dataset, entries, instance = _facts(receipt)
    o_chain, o_genesis, o_dataset, o_entries, o_instance = _facts(original)
    return (
        (chain, genesis, dataset) == (o_chain, o_genesis, o_dataset)
        and set(entries) <= set(o_entries)
        and instance in (None, o_instance)
    )


@FUZZ
@given(tampered())
def test_a_tampered_receipt_is_unreadable_fails_a_named_step_or_proves_the_same(
    case: tuple[str, Any],
) -> None:
    name, obj = case
    original = RECEIPTS[name]
    try:
        receipt = Receipt.from_json(obj)
    except LedgerError:
        return  # unreadable: `receipt verify` names the file and the field
    steps = verify(receipt, GENESIS)  # must not raise, whatever the edit
    assert steps
    assert steps[0].name == "genesis"
    failed = [s for s in steps if not s.ok]
    if failed:
        assert all(s.name and s.detail for s in failed)
    else:
        assert _proves_no_more(receipt, original), "a passing edit proves something new"


def test_renaming_hex_in_a_series_root_fails_the_body_step() -> None:
    """The audit's reproduction: bytes turned into a map used to raise TypeError."""
    obj = copy.deepcopy(RECEIPTS["instance"].to_json())
    root = obj["entries"][0]["tx"]["body"]["series_root"]
    obj["entries"][0]["tx"]["body"]["series_root"] = {"$hey": root["$hex"]}
    steps = verify(Receipt.from_json(obj), GENESIS)
    failed = [s for s in steps if not s.ok]
    body = next(s for s in failed if s.name.endswith(": body"))
    assert body.name == "tx 0 (dataset.register, block 7): body"
    assert "series_root" in body.detail
    assert any("series complete" in s.name for s in failed)


def test_a_huge_part_count_fails_without_building_the_range() -> None:
    obj = copy.deepcopy(RECEIPTS["dataset"].to_json())
    for entry in obj["entries"]:
        entry["tx"]["body"]["parts"] = 2**64 - 1
    failed = [s.name for s in verify(Receipt.from_json(obj), GENESIS) if not s.ok]
    assert any(name.endswith("complete") for name in failed)


def test_every_step_of_a_good_receipt_has_a_body_step_per_transaction() -> None:
    for receipt in RECEIPTS.values():
        names = [s.name for s in verify(receipt, GENESIS) if s.ok]
        assert sum(name.endswith(": body") for name in names) == len(receipt.entries)
