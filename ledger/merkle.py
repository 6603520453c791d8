"""RFC 6962 / RFC 9162 Merkle tree hashing, inclusion proofs and consistency proofs.

Construction (RFC 6962 §2.1, unchanged in RFC 9162 §2.1.1, with SHA-256 as the hash):

* The hash of an empty list is ``MTH({}) = SHA-256("")`` (:data:`EMPTY_ROOT`).
* The hash of a one-entry list is the *leaf hash* ``SHA-256(0x00 || d(0))``
  (:func:`leaf_hash`).
* For ``n > 1`` let ``k`` be the largest power of two strictly smaller than ``n``; then
  ``MTH(D[n]) = SHA-256(0x01 || MTH(D[0:k]) || MTH(D[k:n]))`` (:func:`node_hash`).

The distinct 0x00 / 0x01 prefixes provide domain separation between leaves and interior nodes,
so a leaf can never be passed off as an interior node (second-preimage protection). The split
rule makes the tree left-balanced: the left subtree is always perfect, and an equivalent
bottom-up description is "hash adjacent pairs level by level, carrying a lone last node up
unchanged", which is how roots are computed here (linear time, no recursion).

Proofs follow RFC 6962 §2.1.1 (``PATH``) and §2.1.2 (``PROOF``/``SUBPROOF``): they are built
top-down with the same largest-power-of-two splits. Every proof element is the root of a
subtree, and the subtrees used by one proof are pairwise disjoint, so generating a proof hashes
each entry at most once (O(n) work) and recurses only O(log n) deep.

Verification follows the iterative algorithms of RFC 9162 §2.1.3.2 (inclusion) and §2.1.4.2
(consistency). The verifiers never raise on well-typed input; anything malformed (indices out
of range, negative numbers, proofs of the wrong length, proof elements or roots that are not
32 bytes, any flipped bit) simply yields ``False``.

Edge-case decisions (RFC 9162 leaves these to the application):

* :func:`consistency_proof` with ``old_size == 0`` raises :class:`ValueError`: RFC 9162 §2.1.4
  defines consistency proofs only for ``0 < old_size <= new_size``. There is nothing to prove
  against an empty tree.
* :func:`verify_consistency` with ``old_size == 0`` returns ``True`` exactly when the proof is
  empty, ``old_root`` is :data:`EMPTY_ROOT` (the only possible root of an empty tree) and
  ``new_root`` is a 32-byte hash (:data:`EMPTY_ROOT` itself if ``new_size == 0``): every tree
  is an extension of the empty tree, so there is nothing further to check about ``new_root``.
* :func:`verify_consistency` with ``old_size == new_size`` returns ``True`` exactly when the
  proof is empty and the two roots are equal 32-byte hashes.

Caveat: as in RFC 6962/9162, a proof does not by itself authenticate the tree size. The
verifiers only use ``size`` to decide the left/right order of the proof elements, and different
sizes can give the same order (leaf 0's audit path in a tree of 8 has the same shape as in a
tree of 5, so ``verify_inclusion(e0, 0, 5, proof_for_8, root_of_8)`` is ``True``). Callers must
take ``size`` and ``root`` together from one authenticated source (e.g. a signed tree head).

References:
  RFC 6962 "Certificate Transparency", §2.1 (https://www.rfc-editor.org/rfc/rfc6962#section-2.1)
  RFC 9162 "Certificate Transparency Version 2.0", §2.1
  (https://www.rfc-editor.org/rfc/rfc9162#section-2.1)
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Length in bytes of every hash produced or accepted by this module (SHA-256)."""

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()
"""Root of the empty tree: ``SHA-256("")`` (RFC 6962 §2.1)."""


def leaf_hash(entry: bytes) -> bytes:
    """Return the RFC 6962 leaf hash ``SHA-256(0x00 || entry)``."""
    return hashlib.sha256(_LEAF_PREFIX + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return the RFC 6962 interior node hash ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """Return the largest power of two strictly smaller than ``n`` (requires ``n >= 2``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _subtree_root(hashes: Sequence[bytes], lo: int, hi: int) -> bytes:
    """Return ``MTH`` of the leaves whose leaf hashes are ``hashes[lo:hi]`` (``lo < hi``).

    Works bottom-up, level by level, promoting a lone last node unchanged; this yields exactly
    the RFC 6962 left-balanced tree in O(hi - lo) hashes and without recursion.
    """
    level = list(hashes[lo:hi])
    while len(level) > 1:
        paired = [node_hash(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            paired.append(level[-1])
        level = paired
    return level[0]


def root(entries: Sequence[bytes]) -> bytes:
    """Return the Merkle Tree Hash ``MTH(entries)`` of raw entries (RFC 6962 §2.1).

    ``root([])`` is :data:`EMPTY_ROOT`. Runs in O(n) hashes.
    """
    if not entries:
        return EMPTY_ROOT
    hashes = [leaf_hash(entry) for entry in entries]
    return _subtree_root(hashes, 0, len(hashes))


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """``MTH`` of a list whose leaf hashes (:func:`leaf_hash`) are already known."""
    if not hashes:
        return EMPTY_ROOT
    return _subtree_root(hashes, 0, len(hashes))


def _path(hashes: Sequence[bytes], index: int, lo: int, hi: int) -> list[bytes]:
    """RFC 6962 ``PATH(index, D[lo:hi])`` over leaf hashes; ``index`` is relative to ``lo``."""
    if hi - lo == 1:
        return []
    k = _split_point(hi - lo)
    mid = lo + k
    if index < k:
        proof = _path(hashes, index, lo, mid)
        proof.append(_subtree_root(hashes, mid, hi))
    else:
        proof = _path(hashes, index - k, mid, hi)
        proof.append(_subtree_root(hashes, lo, mid))
    return proof


def inclusion_proof(entries: Sequence[bytes], index: int) -> list[bytes]:
    """Return the audit path for ``entries[index]`` in the tree of all ``entries``.

    This is RFC 6962 §2.1.1 ``PATH(index, D[n])``: the sibling subtree roots from the leaf up
    to the root. Raises :class:`ValueError` unless ``0 <= index < len(entries)``.
    """
    size = len(entries)
    if not 0 <= index < size:
        raise ValueError(
            f"inclusion_proof: leaf index {index} out of range for a tree of size {size}"
        )
    hashes = [leaf_hash(entry) for entry in entries]
    return _path(hashes, index, 0, size)


def _subproof(hashes: Sequence[bytes], m: int, lo: int, hi: int, have_root: bool) -> list[bytes]:
    """RFC 6962 ``SUBPROOF(m, D[lo:hi], have_root)`` over leaf hashes (``0 < m <= hi - lo``)."""
    n = hi - lo
    if m == n:
        return [] if have_root else [_subtree_root(hashes, lo, hi)]
    k = _split_point(n)
    mid = lo + k
    if m <= k:
        proof = _subproof(hashes, m, lo, mid, have_root)
        proof.append(_subtree_root(hashes, mid, hi))
    else:
        proof = _subproof(hashes, m - k, mid, hi, False)
        proof.append(_subtree_root(hashes, lo, mid))
    return proof


def consistency_proof(entries: Sequence[bytes], old_size: int) -> list[bytes]:
    """Return the proof that the first ``old_size`` entries are a prefix of ``entries``.

    This is RFC 6962 §2.1.2 ``PROOF(old_size, D[n])``. The proof for ``old_size == len(entries)``
    is empty. Raises :class:`ValueError` unless ``0 < old_size <= len(entries)``; in particular
    ``old_size == 0`` is rejected because RFC 9162 §2.1.4 leaves that proof undefined.
    """
    size = len(entries)
    if not 0 < old_size <= size:
        raise ValueError(
            f"consistency_proof: old size {old_size} out of range for a tree of size {size} "
            "(need 0 < old_size <= size; proofs from the empty tree are undefined)"
        )
    hashes = [leaf_hash(entry) for entry in entries]
    return _subproof(hashes, old_size, 0, size, True)


def _all_hashes(values: Sequence[bytes]) -> bool:
    """Return whether every value has the length of a SHA-256 hash."""
    return all(len(value) == HASH_SIZE for value in values)


def _shift_while_even(fn: int, sn: int) -> tuple[int, int]:
    """Right-shift ``fn`` and ``sn`` equally until ``fn`` is odd or zero."""
    while fn and not fn & 1:
        fn >>= 1
        sn >>= 1
    return fn, sn


def verify_inclusion(
    entry: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    """Return whether ``proof`` shows ``entry`` at ``index`` in the tree (``size``, ``root``).

    Implements RFC 9162 §2.1.3.2. Never raises on well-typed input: out-of-range or negative
    ``index``/``size``, a proof of the wrong length, or elements that are not 32 bytes give
    ``False``.
    """
    if not 0 <= index < size:
        return False
    if len(root) != HASH_SIZE or not _all_hashes(proof):
        return False
    fn = index
    sn = size - 1
    r = leaf_hash(entry)
    for p in proof:
        if sn == 0:
            return False  # proof is longer than the path for this tree size
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            fn, sn = _shift_while_even(fn, sn)
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """Return whether ``proof`` shows the new tree extends the old one (append-only growth).

    Implements RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. Special cases (see the module
    docstring): ``old_size == 0`` accepts only an empty proof with ``old_root == EMPTY_ROOT``;
    ``old_size == new_size`` accepts only an empty proof with ``old_root == new_root``. Never
    raises on well-typed input; anything malformed gives ``False``.
    """
    if not 0 <= old_size <= new_size:
        return False
    if len(old_root) != HASH_SIZE or len(new_root) != HASH_SIZE or not _all_hashes(proof):
        return False
    if old_size == 0:
        # Every tree extends the empty tree; only the empty root and an empty proof make sense.
        if proof or old_root != EMPTY_ROOT:
            return False
        return new_size > 0 or new_root == EMPTY_ROOT
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False

    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # old_size is a power of two: the old root is itself a node of the new tree and is
        # omitted from the proof, so it becomes the starting point.
        path.insert(0, old_root)
    fn = old_size - 1
    sn = new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # proof is longer than needed for these sizes
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            fn, sn = _shift_while_even(fn, sn)
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == old_root and sr == new_root
