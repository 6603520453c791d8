"""What the researcher commands do, apart from talking to a node.

* :func:`register_bodies` turns a fingerprinted series into ``dataset.register``
  bodies, split into parts that fit a transaction;
* :func:`compare` checks fingerprinted files against registered leaves and
  says, per instance, match / pixels changed / header changed / missing / not
  registered / derived (a lossy copy of a registered instance);
* :func:`registered_from_receipt` reads the registered leaves out of a receipt,
  so verification works with no node at all;
* :func:`subject_commitment` is the ``subject.link`` commitment a site computes
  from its secret and a patient's pseudonym.

Pure functions over plain records: the command line (node/cli_registry.py) does
the I/O.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from imaging.inspect import Instance, Series
from ledger import codec
from ledger.errors import DecodeError
from ledger.manifest import SUMMARY_SCHEMA, InstanceLeaf
from ledger.receipt import REGISTER_KIND, Receipt, registration

#: The signed envelope around a body: version, chain id, kind, signer, nonce,
#: signature and map keys (about 190 bytes with a 64-character chain id).
_ENVELOPE_BYTES: Final = 256
#: Room for the rest of a body when it is not measured (ids, summary, reason).
_DEFAULT_BODY_BYTES: Final = 6 * 1024
#: A site secret's exact length. The commitment hashes secret || pseudonym with no
#: separator, which is unambiguous only because the secret's length is fixed.
SITE_SECRET_BYTES: Final = 32


def part_sizes(
    leaves: Sequence[InstanceLeaf], max_tx_bytes: int, overhead: int = _DEFAULT_BODY_BYTES
) -> list[int]:
    """How many leaves go in each part so every transaction stays under the limit.

    ``overhead`` is what a part's transaction holds besides its leaves. Raises
    ``ValueError`` when not even one leaf fits.
    """
    budget = max_tx_bytes - overhead
    largest = max((len(leaf.encode()) + 1 for leaf in leaves), default=0)
    if largest > budget:
        raise ValueError(
            f"a transaction of at most {max_tx_bytes} bytes cannot hold even one instance "
            f"(each part needs about {overhead + largest} bytes)"
        )
    sizes: list[int] = []
    used = count = 0
    for leaf in leaves:
        size = len(leaf.encode()) + 1
        if count and used + size > budget:
            sizes.append(count)
            used = count = 0
        used += size
        count += 1
    if count or not sizes:
        sizes.append(count)
    return sizes


def register_bodies(
    dataset: str,
    series: Series,
    *,
    reason: str,
    time_ms: int,
    max_tx_bytes: int,
    supersedes: str | None = None,
    first_part: int = 0,
) -> list[dict[str, Any]]:
    """The ``dataset.register`` bodies for a series, from part ``first_part`` on.

    Raises ``ValueError`` if ``max_tx_bytes`` cannot hold a part of one instance.
    """
    bare = {
        "dataset": dataset,
        "series": series.series_uid,
        "part": 0,
        "parts": 0,
        "leaves": [],
        "series_root": series.root,
        "instances": len(series.leaves),
        "summary": codec.decode(SUMMARY_SCHEMA.encode(series.summary)),
        "supersedes": supersedes,
        "reason": reason,
        "time_ms": time_ms,
    }
    # Measured: the part-0 body without leaves (the largest), plus the envelope and
    # room for the part numbers and the leaf array's own head to grow.
    overhead = len(codec.encode(bare)) + _ENVELOPE_BYTES + 32
    sizes = part_sizes(series.leaves, max_tx_bytes, overhead)
    bodies = []
    start = 0
    for part, size in enumerate(sizes):
        chunk = series.leaves[start : start + size]
        start += size
        if part < first_part:
            continue
        bodies.append(
            {
                "dataset": dataset,
                "series": series.series_uid,
                "part": part,
                "parts": len(sizes),
                "leaves": [codec.decode(leaf.encode()) for leaf in chunk],
                "series_root": series.root,
                "instances": len(series.leaves),
                "summary": codec.decode(SUMMARY_SCHEMA.encode(series.summary))
                if part == 0
                else None,
                "supersedes": supersedes if part == 0 else None,
                "reason": reason,
                "time_ms": time_ms,
            }
        )
    return bodies


class Verdict(StrEnum):
    MATCH = "match"
    PIXELS_CHANGED = "pixels changed"
    HEADER_CHANGED = "header changed"
    BOTH_CHANGED = "pixels and header changed"
    MISSING = "missing"
    NOT_REGISTERED = "not registered"
    DERIVED = "derived"


@dataclass(frozen=True, slots=True)
class Registered:
    """One registered instance: its leaf and the series it belongs to."""

    leaf: InstanceLeaf
    series: str


@dataclass(frozen=True, slots=True)
class Outcome:
    verdict: Verdict
    sop_instance_uid: str
    path: str | None
    detail: str

    @property
    def ok(self) -> bool:
        return self.verdict is Verdict.MATCH

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "sop_instance_uid": self.sop_instance_uid,
            "path": self.path,
            "detail": self.detail,
        }


def compare(instances: Iterable[Instance], registered: Sequence[Registered]) -> list[Outcome]:
    """Every file's verdict, then every registered instance no file matched (missing)."""
    by_uid = {r.leaf.sop_instance_uid: r for r in registered}
    seen: set[str] = set()
    out: list[Outcome] = []
    for instance in instances:
        fp = instance.fingerprint
        uid = fp.sop_instance_uid
        entry = by_uid.get(uid)
        if entry is None:
            sources = [s for s in instance.source_uids if s in by_uid]
            if instance.lossy and sources:
                out.append(
                    Outcome(
                        Verdict.DERIVED,
                        uid,
                        instance.path,
                        f"a lossy copy derived from registered instance {sources[0]}; "
                        "record it with dataset.derive, it is not a match",
                    )
                )
            else:
                out.append(
                    Outcome(Verdict.NOT_REGISTERED, uid, instance.path, "not in this dataset")
                )
            continue
        seen.add(uid)
        leaf = entry.leaf
        pixels_ok = leaf.pixel == fp.pixel
        meta_ok = leaf.meta == fp.meta
        if pixels_ok and meta_ok:
            detail = (
                "identical file"
                if leaf.file == fp.file
                else "same pixels and attributes (re-encoded losslessly)"
            )
            out.append(Outcome(Verdict.MATCH, uid, instance.path, detail))
        elif meta_ok:
            out.append(Outcome(Verdict.PIXELS_CHANGED, uid, instance.path, "pixel values differ"))
        elif pixels_ok:
            out.append(
                Outcome(Verdict.HEADER_CHANGED, uid, instance.path, "an attribute value differs")
            )
        else:
            out.append(
                Outcome(Verdict.BOTH_CHANGED, uid, instance.path, "pixels and attributes differ")
            )
    for uid in sorted(by_uid):
        if uid not in seen:
            out.append(
                Outcome(
                    Verdict.MISSING,
                    uid,
                    None,
                    f"registered in series {by_uid[uid].series} but no file has it",
                )
            )
    return out


def registered_from_receipt(receipt: Receipt) -> list[Registered]:
    """The leaves of the complete series a dataset receipt's registrations carry.

    A series counts only if every one of its parts is in the receipt (as the
    node's own verification counts complete series only). Registrations whose
    body is malformed (which :func:`ledger.receipt.verify` reports) are skipped.
    """
    parts: dict[str, dict[int, tuple[InstanceLeaf, ...]]] = {}
    declared: dict[str, int] = {}
    for entry in receipt.entries:
        if entry.tx.kind != REGISTER_KIND:
            continue
        try:
            found = registration(entry.tx)
        except DecodeError:
            continue
        parts.setdefault(found.series, {})[found.part] = found.leaves
        declared[found.series] = found.parts
    out: list[Registered] = []
    for series, received in parts.items():
        if len(received) != declared[series] or set(received) != set(range(len(received))):
            continue
        for part in sorted(received):
            out.extend(Registered(leaf, series) for leaf in received[part])
    return out


def summary_counts(outcomes: Sequence[Outcome]) -> dict[str, int]:
    counts = {verdict.value: 0 for verdict in Verdict}
    for outcome in outcomes:
        counts[outcome.verdict.value] += 1
    return counts


def subject_commitment(secret: bytes, pseudonym: str) -> bytes:
    """SHA-256(secret || UTF-8 pseudonym), the commitment ``subject.link`` puts on chain.

    Raises ``ValueError`` unless ``secret`` is exactly :data:`SITE_SECRET_BYTES`
    bytes: with no separator, a secret of any length would let a different
    (secret, pseudonym) pair give the same bytes (``ab`` || ``c`` = ``a`` || ``bc``).
    """
    if len(secret) != SITE_SECRET_BYTES:
        raise ValueError(
            f"holds {len(secret)} bytes; a site secret must be exactly {SITE_SECRET_BYTES} "
            f"random bytes (make one with: head -c {SITE_SECRET_BYTES} /dev/urandom > FILE)"
        )
    return hashlib.sha256(secret + pseudonym.encode("utf-8")).digest()
