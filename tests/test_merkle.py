"""Tests for ledger.merkle (RFC 6962 / RFC 9162 Merkle trees).

The checks come from three sources that do not depend on each other:

* published test vectors (tests/vectors/merkle_rfc6962.json, see its "source" field);
* a naive reference written here straight from the recursive definitions of RFC 6962 §2.1
  (MTH, PATH, PROOF/SUBPROOF) plus reference verifiers that replay those definitions
  recursively. These share no code with ledger.merkle, whose verifiers use the iterative
  bit-twiddling algorithms of RFC 9162 §2.1.3.2 / §2.1.4.2;
* exhaustive and hypothesis-driven property checks, including mutations of every kind.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.merkle import (
    EMPTY_ROOT,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)

VECTORS_PATH = Path(__file__).parent / "vectors" / "merkle_rfc6962.json"
SIZE_8_ROOT = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"
EMPTY_SHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

# Fast, deterministic hypothesis settings; database=None keeps the run from writing files.
FAST = settings(max_examples=150, deadline=None, database=None)


# --------------------------------------------------------------------------------------------
# Naive reference implementation, straight from RFC 6962 §2.1 (independent of ledger.merkle).
# --------------------------------------------------------------------------------------------


def _ref_leaf(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def _ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _ref_split(n: int) -> int:
    """Largest power of two strictly smaller than n (n > 1), by plain doubling."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(entries: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH(D[n])."""
    n = len(entries)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return _ref_leaf(entries[0])
    k = _ref_split(n)
    return _ref_node(ref_mth(entries[:k]), ref_mth(entries[k:]))


def ref_path(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n])."""
    n = len(entries)
    if n == 1:
        return []
    k = _ref_split(n)
    if m < k:
        return [*ref_path(m, entries[:k]), ref_mth(entries[k:])]
    return [*ref_path(m - k, entries[k:]), ref_mth(entries[:k])]


def _ref_subproof(m: int, entries: Sequence[bytes], b: bool) -> list[bytes]:
    n = len(entries)
    if m == n:
        return [] if b else [ref_mth(entries)]
    k = _ref_split(n)
    if m <= k:
        return [*_ref_subproof(m, entries[:k], b), ref_mth(entries[k:])]
    return [*_ref_subproof(m - k, entries[k:], False), ref_mth(entries[:k])]


def ref_proof(m: int, entries: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PROOF(m, D[n])."""
    return _ref_subproof(m, entries, True)


def ref_verify_inclusion(
    entry: bytes, index: int, size: int, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Replay PATH recursively: consume proof elements from the end (outermost level first)."""
    if not 0 <= index < size or any(len(p) != 32 for p in proof):
        return False
    remaining = list(proof)

    def rebuild(m: int, n: int) -> bytes | None:
        if n == 1:
            return _ref_leaf(entry)
        if not remaining:
            return None
        sibling = remaining.pop()
        k = _ref_split(n)
        if m < k:
            inner = rebuild(m, k)
            return None if inner is None else _ref_node(inner, sibling)
        inner = rebuild(m - k, n - k)
        return None if inner is None else _ref_node(sibling, inner)

    computed = rebuild(index, size)
    return computed is not None and not remaining and computed == expected_root


def ref_verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Replay SUBPROOF recursively, rebuilding (old subtree, new subtree) hashes."""
    if not 0 < old_size < new_size or any(len(p) != 32 for p in proof):
        return False
    remaining = list(proof)

    def rebuild(m: int, n: int, b: bool) -> tuple[bytes, bytes] | None:
        if m == n:
            if b:
                return old_root, old_root
            if not remaining:
                return None
            x = remaining.pop()
            return x, x
        if not remaining:
            return None
        y = remaining.pop()
        k = _ref_split(n)
        if m <= k:
            inner = rebuild(m, k, b)
            return None if inner is None else (inner[0], _ref_node(inner[1], y))
        inner = rebuild(m - k, n - k, False)
        if inner is None:
            return None
        return _ref_node(y, inner[0]), _ref_node(y, inner[1])

    pair = rebuild(old_size, new_size, True)
    return pair is not None and not remaining and pair == (old_root, new_root)


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


@cache
def entries_of(n: int) -> tuple[bytes, ...]:
    """n distinct entries of varying length (so all subtree hashes are distinct)."""
    return tuple(f"entry-{i}".encode() * (1 + i % 3) for i in range(n))


@cache
def prefix_root(n: int) -> bytes:
    return root(entries_of(n))


def flip(data: bytes, bit: int) -> bytes:
    buf = bytearray(data)
    buf[bit // 8] ^= 1 << (bit % 8)
    return bytes(buf)


def proof_mutations(proof: Sequence[bytes], junk: bytes) -> Iterator[tuple[str, list[bytes]]]:
    """Structural mutations of a proof: truncation, extension, swaps, bad element lengths."""
    p = list(proof)
    yield "append junk", [*p, junk]
    yield "prepend junk", [junk, *p]
    yield "append empty", [*p, b""]
    if p:
        yield "drop last", p[:-1]
        yield "drop first", p[1:]
        yield "duplicate first", [p[0], *p]
        yield "duplicate last", [*p, p[-1]]
        yield "31-byte element", [*p[:-1], p[-1][:31]]
        yield "33-byte element", [*p[:-1], p[-1] + b"\x00"]
    for i in range(len(p) - 1):
        swapped = list(p)
        swapped[i], swapped[i + 1] = swapped[i + 1], swapped[i]
        yield f"swap {i},{i + 1}", swapped
    if len(p) > 1:
        yield "reversed", p[::-1]


# --------------------------------------------------------------------------------------------
# Published test vectors
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionVector:
    index: int
    size: int
    proof: list[bytes]
    origin: str
    node_ids: list[tuple[int, int]] | None


@dataclass(frozen=True)
class ConsistencyVector:
    old_size: int
    new_size: int
    proof: list[bytes]
    origin: str
    node_ids: list[tuple[int, int]] | None


@dataclass(frozen=True)
class Vectors:
    source: str
    leaves: list[bytes]
    node_hashes: list[list[bytes]]
    roots: dict[int, bytes]
    inclusion: list[InclusionVector]
    consistency: list[ConsistencyVector]


def _hexes(values: list[str]) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


def _ids(raw: list[list[int]] | None) -> list[tuple[int, int]] | None:
    return None if raw is None else [(level, index) for level, index in raw]


@cache
def load_vectors() -> Vectors:
    raw = json.loads(VECTORS_PATH.read_text(encoding="utf-8"))
    return Vectors(
        source=str(raw["source"]),
        leaves=_hexes(raw["leaves_hex"]),
        node_hashes=[_hexes(level) for level in raw["node_hashes"]],
        roots={int(r["size"]): bytes.fromhex(r["root"]) for r in raw["roots"]},
        inclusion=[
            InclusionVector(
                int(v["index"]),
                int(v["size"]),
                _hexes(v["proof"]),
                v["origin"],
                _ids(v.get("node_ids")),
            )
            for v in raw["inclusion_proofs"]
        ],
        consistency=[
            ConsistencyVector(
                int(v["old_size"]),
                int(v["new_size"]),
                _hexes(v["proof"]),
                v["origin"],
                _ids(v.get("node_ids")),
            )
            for v in raw["consistency_proofs"]
        ],
    )


def test_vector_file_documents_its_source() -> None:
    vectors = load_vectors()
    assert "transparency-dev/merkle" in vectors.source
    assert len(vectors.leaves) == 8
    assert sorted(vectors.roots) == list(range(9))
    assert vectors.roots[8].hex() == SIZE_8_ROOT
    assert vectors.roots[0].hex() == EMPTY_SHA256
    published_inclusion = {(v.index, v.size) for v in vectors.inclusion if v.node_ids is None}
    assert {(0, 8), (5, 8), (2, 3), (1, 5)} <= published_inclusion
    published_consistency = {
        (v.old_size, v.new_size) for v in vectors.consistency if v.node_ids is None
    }
    assert {(1, 1), (1, 8), (6, 8), (2, 5)} <= published_consistency
    for proof, origin in [(v.proof, v.origin) for v in vectors.inclusion] + [
        (v.proof, v.origin) for v in vectors.consistency
    ]:
        assert origin
        assert all(len(p) == 32 for p in proof)


def test_vector_node_hashes_match_leaf_and_node_hash() -> None:
    vectors = load_vectors()
    levels = vectors.node_hashes
    assert [leaf_hash(e) for e in vectors.leaves] == levels[0]
    assert [_ref_leaf(e) for e in vectors.leaves] == levels[0]
    for lower, upper in itertools.pairwise(levels):
        assert len(upper) * 2 == len(lower)
        assert upper == [node_hash(lower[2 * i], lower[2 * i + 1]) for i in range(len(upper))]
        assert upper == [_ref_node(lower[2 * i], lower[2 * i + 1]) for i in range(len(upper))]


@pytest.mark.parametrize("size", range(9))
def test_vector_roots(size: int) -> None:
    vectors = load_vectors()
    entries = vectors.leaves[:size]
    assert root(entries) == vectors.roots[size]
    assert ref_mth(entries) == vectors.roots[size]


def test_vector_derived_proofs_match_their_node_ids() -> None:
    vectors = load_vectors()
    derived: list[tuple[list[bytes], list[tuple[int, int]]]] = [
        (v.proof, v.node_ids) for v in vectors.inclusion if v.node_ids is not None
    ] + [(v.proof, v.node_ids) for v in vectors.consistency if v.node_ids is not None]
    assert len(derived) >= 20
    for proof, ids in derived:
        assert proof == [vectors.node_hashes[level][index] for level, index in ids]


def _inclusion_id(v: InclusionVector) -> str:
    return f"leaf{v.index}-size{v.size}{'-derived' if v.node_ids else ''}"


def _consistency_id(v: ConsistencyVector) -> str:
    return f"{v.old_size}to{v.new_size}{'-derived' if v.node_ids else ''}"


@pytest.mark.parametrize("vector", load_vectors().inclusion, ids=_inclusion_id)
def test_vector_inclusion_proofs(vector: InclusionVector) -> None:
    vectors = load_vectors()
    entries = vectors.leaves[: vector.size]
    assert ref_path(vector.index, entries) == vector.proof
    assert inclusion_proof(entries, vector.index) == vector.proof
    tree_root = vectors.roots[vector.size]
    entry = entries[vector.index]
    assert verify_inclusion(entry, vector.index, vector.size, vector.proof, tree_root)
    assert ref_verify_inclusion(entry, vector.index, vector.size, vector.proof, tree_root)


@pytest.mark.parametrize("vector", load_vectors().consistency, ids=_consistency_id)
def test_vector_consistency_proofs(vector: ConsistencyVector) -> None:
    vectors = load_vectors()
    entries = vectors.leaves[: vector.new_size]
    assert ref_proof(vector.old_size, entries) == vector.proof
    assert consistency_proof(entries, vector.old_size) == vector.proof
    old_root = vectors.roots[vector.old_size]
    new_root = vectors.roots[vector.new_size]
    assert verify_consistency(vector.old_size, vector.new_size, old_root, new_root, vector.proof)
    if vector.old_size < vector.new_size:
        assert ref_verify_consistency(
            vector.old_size, vector.new_size, old_root, new_root, vector.proof
        )


# --------------------------------------------------------------------------------------------
# Edge cases
# --------------------------------------------------------------------------------------------


def test_empty_tree_root() -> None:
    assert root([]) == EMPTY_ROOT == hashlib.sha256(b"").digest()
    assert EMPTY_ROOT.hex() == EMPTY_SHA256


def test_helpers_use_domain_separation_prefixes() -> None:
    assert leaf_hash(b"abc") == hashlib.sha256(b"\x00abc").digest()
    left, right = b"L" * 32, b"R" * 32
    assert node_hash(left, right) == hashlib.sha256(b"\x01" + left + right).digest()
    assert node_hash(left, right) != node_hash(right, left)
    # A leaf whose content looks like two child hashes must not collide with that node.
    assert leaf_hash(left + right) != node_hash(left, right)


def test_single_leaf_tree() -> None:
    entry = b"only"
    tree_root = root([entry])
    assert tree_root == leaf_hash(entry)
    assert inclusion_proof([entry], 0) == []
    assert verify_inclusion(entry, 0, 1, [], tree_root)
    assert not verify_inclusion(b"other", 0, 1, [], tree_root)
    assert not verify_inclusion(entry, 1, 1, [], tree_root)
    assert not verify_inclusion(entry, 0, 2, [], tree_root)
    assert not verify_inclusion(entry, 0, 1, [tree_root], tree_root)
    assert consistency_proof([entry], 1) == []
    assert verify_consistency(1, 1, tree_root, tree_root, [])


def test_equal_leaf_bytes_do_not_make_a_two_leaf_tree_a_leaf() -> None:
    # Second-preimage check: the root of [a, b] is not the leaf hash of the concatenation.
    a, b = leaf_hash(b"a"), leaf_hash(b"b")
    assert root([b"a", b"b"]) == node_hash(a, b)
    assert root([b"a", b"b"]) != root([a + b])


def test_size_zero_and_negative_inputs_are_rejected_without_raising() -> None:
    entry = b"x"
    leaf = leaf_hash(entry)
    assert verify_inclusion(entry, 0, 0, [], EMPTY_ROOT) is False
    assert verify_inclusion(entry, 0, 0, [], leaf) is False
    assert verify_inclusion(entry, -1, 1, [], leaf) is False
    assert verify_inclusion(entry, -1, -1, [], leaf) is False
    assert verify_inclusion(entry, 0, -5, [], leaf) is False
    assert verify_inclusion(entry, 2**70, 2**71, [leaf] * 3, leaf) is False
    assert verify_consistency(-1, 1, EMPTY_ROOT, leaf, []) is False
    assert verify_consistency(1, -1, leaf, leaf, []) is False
    assert verify_consistency(-2, -1, leaf, leaf, [leaf]) is False
    assert verify_consistency(2, 1, leaf, leaf, []) is False
    assert verify_consistency(2**64, 2**65, leaf, leaf, [leaf] * 4) is False


def test_wrong_length_elements_and_roots_are_rejected() -> None:
    entries = entries_of(8)
    tree_root = prefix_root(8)
    proof = inclusion_proof(entries, 3)
    assert verify_inclusion(entries[3], 3, 8, proof, tree_root)
    for bad in (proof[0][:31], proof[0] + b"\x00", b"", bytes(64)):
        assert verify_inclusion(entries[3], 3, 8, [bad, *proof[1:]], tree_root) is False
    assert verify_inclusion(entries[3], 3, 8, proof, tree_root[:31]) is False
    assert verify_inclusion(entries[3], 3, 8, proof, tree_root + b"\x00") is False

    cproof = consistency_proof(entries, 3)
    old_root = prefix_root(3)
    assert verify_consistency(3, 8, old_root, tree_root, cproof)
    assert verify_consistency(3, 8, old_root, tree_root, [cproof[0][:31], *cproof[1:]]) is False
    assert verify_consistency(3, 8, old_root[:31], tree_root, cproof) is False
    assert verify_consistency(3, 8, old_root, tree_root[:31], cproof) is False


def test_consistency_rejects_hash_boundary_shifting_forgery() -> None:
    # For a power-of-two old size the old root is the verifier's starting value and the first
    # step computes SHA-256(0x01 || old_root || proof[0]). Moving the last byte of the old root
    # to the front of proof[0] keeps that hash input identical, so without the 32-byte length
    # checks a truncated (wrong) old root would be accepted.
    for n in range(2, 21):
        for m in (1, 2, 4, 8, 16):
            if m >= n:
                continue
            old_root, new_root = prefix_root(m), prefix_root(n)
            proof = consistency_proof(entries_of(n), m)
            forged_root = old_root[:31]
            forged_proof = [old_root[31:] + proof[0], *proof[1:]]
            assert verify_consistency(m, n, old_root, new_root, proof)
            assert verify_consistency(m, n, forged_root, new_root, forged_proof) is False, (m, n)


def test_consistency_with_empty_old_tree() -> None:
    # Decision: any tree extends the empty tree, so the only acceptable proof is [] and the only
    # acceptable old root is EMPTY_ROOT; new_root merely has to be a 32-byte hash.
    new_root = prefix_root(5)
    assert verify_consistency(0, 5, EMPTY_ROOT, new_root, [])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, new_root, [new_root]) is False
    assert verify_consistency(0, 5, EMPTY_ROOT, new_root, [EMPTY_ROOT]) is False
    assert verify_consistency(0, 5, new_root, new_root, []) is False
    assert verify_consistency(0, 5, EMPTY_ROOT, new_root[:31], []) is False
    assert verify_consistency(0, 0, EMPTY_ROOT, new_root, []) is False


def test_consistency_with_equal_sizes() -> None:
    r = prefix_root(6)
    assert verify_consistency(6, 6, r, r, [])
    assert verify_consistency(6, 6, r, prefix_root(5), []) is False
    assert verify_consistency(6, 6, r, r, [r]) is False
    assert verify_consistency(6, 6, r, flip(r, 0), []) is False


def test_nonempty_consistency_requires_a_proof() -> None:
    assert verify_consistency(1, 2, prefix_root(1), prefix_root(2), []) is False
    assert verify_consistency(4, 8, prefix_root(4), prefix_root(8), []) is False


@pytest.mark.parametrize("index", [-1, 3, 4, 100])
def test_inclusion_proof_rejects_out_of_range_index(index: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(entries_of(3), index)


def test_inclusion_proof_rejects_empty_tree() -> None:
    with pytest.raises(ValueError, match="size 0"):
        inclusion_proof([], 0)


@pytest.mark.parametrize("old_size", [0, -1, 6, 50])
def test_consistency_proof_rejects_out_of_range_size(old_size: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof(entries_of(5), old_size)


def test_consistency_proof_rejects_empty_tree() -> None:
    with pytest.raises(ValueError, match="out of range"):
        consistency_proof([], 0)


def test_inclusion_proof_does_not_authenticate_tree_size() -> None:
    # Documented RFC 6962/9162 property: leaf 0's audit path has the same shape in trees of
    # size 5..8, so the size-8 proof also "verifies" for a claimed size of 5 against the
    # size-8 root. The (size, root) pair must be authenticated together (signed tree head).
    entries = entries_of(8)
    proof = inclusion_proof(entries, 0)
    assert verify_inclusion(entries[0], 0, 5, proof, prefix_root(8))
    assert ref_verify_inclusion(entries[0], 0, 5, proof, prefix_root(8))
    # ... but not against the genuine size-5 root, nor for a size whose path shape differs.
    assert verify_inclusion(entries[0], 0, 5, proof, prefix_root(5)) is False
    assert verify_inclusion(entries[0], 0, 4, proof, prefix_root(8)) is False
    assert verify_inclusion(entries[0], 0, 9, proof, prefix_root(8)) is False


# --------------------------------------------------------------------------------------------
# Exhaustive agreement with the reference
# --------------------------------------------------------------------------------------------


def test_roots_match_reference_up_to_300() -> None:
    for n in range(301):
        assert root(entries_of(n)) == ref_mth(entries_of(n)), n


def test_every_inclusion_proof_up_to_130_verifies_and_matches_reference() -> None:
    for n in range(1, 131):
        entries = entries_of(n)
        tree_root = prefix_root(n)
        for i in range(n):
            proof = inclusion_proof(entries, i)
            if n <= 64:
                assert proof == ref_path(i, entries), (i, n)
            assert verify_inclusion(entries[i], i, n, proof, tree_root), (i, n)


def test_every_consistency_proof_up_to_64_verifies_and_matches_reference() -> None:
    for n in range(1, 65):
        entries = entries_of(n)
        new_root = prefix_root(n)
        for m in range(1, n + 1):
            proof = consistency_proof(entries, m)
            assert proof == ref_proof(m, entries), (m, n)
            assert verify_consistency(m, n, prefix_root(m), new_root, proof), (m, n)
            if m < n:
                assert proof
                assert ref_verify_consistency(m, n, prefix_root(m), new_root, proof), (m, n)
            else:
                assert proof == []


@given(
    st.integers(min_value=1, max_value=300).flatmap(
        lambda n: st.tuples(st.just(n), st.integers(0, n - 1))
    )
)
@FAST
def test_inclusion_random_sizes_match_reference(case: tuple[int, int]) -> None:
    n, i = case
    entries = entries_of(n)
    proof = inclusion_proof(entries, i)
    assert proof == ref_path(i, entries)
    assert verify_inclusion(entries[i], i, n, proof, prefix_root(n))


@given(
    st.integers(min_value=1, max_value=300).flatmap(
        lambda n: st.tuples(st.integers(1, n), st.just(n))
    )
)
@FAST
def test_consistency_random_sizes_match_reference(case: tuple[int, int]) -> None:
    m, n = case
    entries = entries_of(n)
    proof = consistency_proof(entries, m)
    assert proof == ref_proof(m, entries)
    assert verify_consistency(m, n, prefix_root(m), prefix_root(n), proof)


# --------------------------------------------------------------------------------------------
# Mutations: every bit, wrong indices and sizes, structural damage
# --------------------------------------------------------------------------------------------

INCLUSION_BIT_CASES = [(0, 1), (0, 2), (2, 3), (1, 5), (0, 8), (5, 8), (6, 7), (12, 13), (31, 100)]


@pytest.mark.parametrize(("index", "size"), INCLUSION_BIT_CASES)
def test_inclusion_every_single_bit_flip_is_rejected(index: int, size: int) -> None:
    entries = entries_of(size)
    entry = entries[index]
    tree_root = prefix_root(size)
    proof = inclusion_proof(entries, index)
    assert verify_inclusion(entry, index, size, proof, tree_root)
    for k, element in enumerate(proof):
        for bit in range(256):
            damaged = [*proof[:k], flip(element, bit), *proof[k + 1 :]]
            assert verify_inclusion(entry, index, size, damaged, tree_root) is False, (k, bit)
    for bit in range(256):
        assert verify_inclusion(entry, index, size, proof, flip(tree_root, bit)) is False, bit
    for bit in range(len(entry) * 8):
        assert verify_inclusion(flip(entry, bit), index, size, proof, tree_root) is False, bit


CONSISTENCY_BIT_CASES = [(1, 2), (1, 8), (2, 5), (6, 8), (6, 7), (3, 7), (4, 9), (13, 37)]


@pytest.mark.parametrize(("old_size", "new_size"), CONSISTENCY_BIT_CASES)
def test_consistency_every_single_bit_flip_is_rejected(old_size: int, new_size: int) -> None:
    proof = consistency_proof(entries_of(new_size), old_size)
    old_root, new_root = prefix_root(old_size), prefix_root(new_size)
    assert verify_consistency(old_size, new_size, old_root, new_root, proof)
    for k, element in enumerate(proof):
        for bit in range(256):
            damaged = [*proof[:k], flip(element, bit), *proof[k + 1 :]]
            assert not verify_consistency(old_size, new_size, old_root, new_root, damaged), (k, bit)
    for bit in range(256):
        assert not verify_consistency(old_size, new_size, flip(old_root, bit), new_root, proof)
        assert not verify_consistency(old_size, new_size, old_root, flip(new_root, bit), proof)


def _wrong_values(value: int, limit: int) -> set[int]:
    return {value - 1, value + 1, value ^ 1, value ^ 2, value * 2, value // 2, -value, limit} - {
        value
    }


def test_inclusion_wrong_index_size_and_structure_up_to_40() -> None:
    junk = hashlib.sha256(b"junk").digest()
    for n in range(1, 41):
        entries = entries_of(n)
        tree_root = prefix_root(n)
        for i in range(n):
            entry = entries[i]
            proof = inclusion_proof(entries, i)
            # A wrong index is always rejected.
            for j in _wrong_values(i, n):
                assert verify_inclusion(entry, j, n, proof, tree_root) is False, (i, j, n)
            # A wrong size is rejected unless the audit path has the very same shape (see
            # test_inclusion_proof_does_not_authenticate_tree_size); agree with the reference.
            for s in _wrong_values(n, 2 * n + 1):
                got = verify_inclusion(entry, i, s, proof, tree_root)
                assert got is ref_verify_inclusion(entry, i, s, proof, tree_root), (i, n, s)
                if s in (2 * n, n // 2, 0, -n):
                    assert got is False, (i, n, s)
            # Wrong root: the root of a different tree size.
            for s in {n - 1, n + 1} - {0}:
                assert verify_inclusion(entry, i, n, proof, prefix_root(s)) is False
            for name, damaged in proof_mutations(proof, junk):
                assert verify_inclusion(entry, i, n, damaged, tree_root) is False, (i, n, name)
                assert verify_inclusion(entry, i, n, damaged, tree_root) is ref_verify_inclusion(
                    entry, i, n, damaged, tree_root
                )


def test_consistency_wrong_sizes_roots_and_structure_up_to_24() -> None:
    junk = hashlib.sha256(b"junk").digest()
    for n in range(2, 25):
        new_root = prefix_root(n)
        for m in range(1, n):
            old_root = prefix_root(m)
            proof = consistency_proof(entries_of(n), m)
            for m2, n2 in [(m2, n) for m2 in _wrong_values(m, n)] + [
                (m, n2) for n2 in _wrong_values(n, 2 * n + 1)
            ]:
                got = verify_consistency(m2, n2, old_root, new_root, proof)
                assert got is ref_verify_consistency(m2, n2, old_root, new_root, proof), (
                    m,
                    n,
                    m2,
                    n2,
                )
                if n2 in (2 * n, n // 2) or m2 in (0, -m, n):
                    assert got is False, (m, n, m2, n2)
            assert verify_consistency(m, n, new_root, old_root, proof) is False  # swapped roots
            assert verify_consistency(m, n, old_root, old_root, proof) is False
            assert verify_consistency(m, n, new_root, new_root, proof) is False
            for name, damaged in proof_mutations(proof, junk):
                assert verify_consistency(m, n, old_root, new_root, damaged) is False, (m, n, name)


def _ref_shape(index: int, size: int) -> list[str]:
    """Sides of the PATH(index, D[size]) siblings, innermost first ("L": sibling on the left)."""
    if size == 1:
        return []
    k = _ref_split(size)
    if index < k:
        return [*_ref_shape(index, k), "R"]
    return [*_ref_shape(index - k, size - k), "L"]


def test_wrong_size_accepted_exactly_when_path_shape_is_identical() -> None:
    # Exact characterisation of the caveat in test_inclusion_proof_does_not_authenticate_tree_size:
    # with the genuine root, a claimed size s != n verifies iff PATH(i, D[s]) has the same
    # sequence of sibling sides as PATH(i, D[n]). This is not rare, which is why the module
    # docstring tells callers to take (size, root) from one authenticated tree head.
    accepted = total = 0
    for n in range(2, 33):
        entries = entries_of(n)
        tree_root = prefix_root(n)
        for i in range(n):
            proof = inclusion_proof(entries, i)
            shape = _ref_shape(i, n)
            for s in range(i + 1, 2 * n + 2):
                if s == n:
                    continue
                got = verify_inclusion(entries[i], i, s, proof, tree_root)
                assert got is (_ref_shape(i, s) == shape), (i, n, s)
                total += 1
                accepted += got
    assert total > 10_000
    assert 0 < accepted < total


@given(
    n=st.integers(min_value=2, max_value=300),
    data=st.data(),
)
@FAST
def test_random_bit_flip_in_inclusion_proof_is_rejected(n: int, data: st.DataObject) -> None:
    entries = entries_of(n)
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = inclusion_proof(entries, i)
    k = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, 255), label="bit")
    damaged = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
    assert verify_inclusion(entries[i], i, n, proof, prefix_root(n))
    assert verify_inclusion(entries[i], i, n, damaged, prefix_root(n)) is False


@given(
    n=st.integers(min_value=2, max_value=300),
    data=st.data(),
)
@FAST
def test_random_bit_flip_in_consistency_proof_is_rejected(n: int, data: st.DataObject) -> None:
    m = data.draw(st.integers(1, n - 1), label="old_size")
    proof = consistency_proof(entries_of(n), m)
    k = data.draw(st.integers(0, len(proof) - 1), label="element")
    bit = data.draw(st.integers(0, 255), label="bit")
    damaged = [*proof[:k], flip(proof[k], bit), *proof[k + 1 :]]
    assert verify_consistency(m, n, prefix_root(m), prefix_root(n), proof)
    assert verify_consistency(m, n, prefix_root(m), prefix_root(n), damaged) is False


hashes = st.binary(min_size=32, max_size=32)
blobs = st.one_of(hashes, st.binary(max_size=40))
sizes = st.one_of(st.integers(-(2**70), 2**70), st.integers(-3, 300))


@given(
    entry=st.binary(max_size=16),
    index=sizes,
    size=sizes,
    proof=st.lists(blobs, max_size=12),
    claimed_root=blobs,
)
@FAST
def test_verify_inclusion_never_raises_and_rejects_garbage(
    entry: bytes, index: int, size: int, proof: list[bytes], claimed_root: bytes
) -> None:
    result = verify_inclusion(entry, index, size, proof, claimed_root)
    assert result is False
    assert ref_verify_inclusion(entry, index, size, proof, claimed_root) is False


@given(
    old_size=sizes,
    new_size=sizes,
    old_root=blobs,
    new_root=blobs,
    proof=st.lists(blobs, max_size=12),
)
@FAST
def test_verify_consistency_never_raises_and_rejects_garbage(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: list[bytes]
) -> None:
    result = verify_consistency(old_size, new_size, old_root, new_root, proof)
    if old_size == 0 and old_root == EMPTY_ROOT and not proof and new_size >= 0:
        assert result is (len(new_root) == 32 and (new_size > 0 or new_root == EMPTY_ROOT))
    elif 0 < old_size == new_size and not proof and old_root == new_root and len(old_root) == 32:
        assert result is True
    else:
        assert result is False


# --------------------------------------------------------------------------------------------
# Efficiency: linear hashing and logarithmic recursion depth
# --------------------------------------------------------------------------------------------


def _count_node_hashes(monkeypatch: pytest.MonkeyPatch) -> Callable[[], int]:
    calls = 0
    real = merkle.node_hash

    def counting(left: bytes, right: bytes) -> bytes:
        nonlocal calls
        calls += 1
        return real(left, right)

    monkeypatch.setattr(merkle, "node_hash", counting)

    def read_and_reset() -> int:
        nonlocal calls
        value, calls = calls, 0
        return value

    return read_and_reset


@pytest.mark.skipif(
    (merkle.__file__ or "").endswith(".so"),
    reason="counts calls by patching the module, which a compiled build cannot do",
)
@pytest.mark.parametrize("n", [1, 2, 3, 1000, 4096, 5000])
def test_hashing_work_is_linear(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    entries = entries_of(n)
    counter = _count_node_hashes(monkeypatch)
    root(entries)
    assert counter() == n - 1  # every interior node hashed exactly once
    for i in {0, n // 3, n - 1}:
        inclusion_proof(entries, i)
        assert counter() <= n - 1
    for m in {1, n // 2 or 1, n - 1 or 1, n}:
        consistency_proof(entries, m)
        assert counter() <= n - 1


def test_large_tree_with_low_recursion_limit() -> None:
    n = 40_000
    entries = [i.to_bytes(4, "big") for i in range(n)]
    expected_root = ref_mth(entries)
    old_limit = sys.getrecursionlimit()
    # Allow only 64 frames beyond the current depth: an O(n)-deep recursion would fail here.
    sys.setrecursionlimit(len(inspect.stack(0)) + 64)
    try:
        tree_root = root(entries)
        proof = inclusion_proof(entries, 27_183)
        cproof = consistency_proof(entries, 31_415)
    finally:
        sys.setrecursionlimit(old_limit)
    assert tree_root == expected_root
    assert len(proof) == 16
    assert verify_inclusion(entries[27_183], 27_183, n, proof, tree_root)
    assert verify_consistency(31_415, n, ref_mth(entries[:31_415]), tree_root, cproof)
