"""Imaging manifests: the shape in which DICOM fingerprints go on chain.

``imaging/`` computes these records from files; ``registry/`` checks them inside
transactions; receipts prove an instance's place in them. All three import
this module and nothing of each other, so the rules live once, here.

* :class:`InstanceLeaf`: one DICOM instance, keyed by its (de-identified)
  SOP Instance UID, with its three digests (``pixel`` is ``None`` for an
  instance without pixel data, e.g. a structured report).
* A *series manifest* is the RFC 6962 Merkle root over the canonical encodings
  of a series' leaves, sorted by SOP Instance UID (bytewise ASCII order, no
  duplicates): :func:`series_root`.
* A *dataset root* is the RFC 6962 Merkle root over :class:`SeriesEntry`
  records (series UID, manifest root, instance count), sorted by Series
  Instance UID: :func:`dataset_root`.
* :class:`SeriesSummary` is the *only* descriptive data about images the chain
  accepts: an allow-list of de-identified attributes (modality, body part,
  counts, frame geometry, de-identification method codes). There is no field
  for names, IDs, dates, free text or image bytes, and the patterns below
  refuse anything that is not a coded value.

docs/FINGERPRINT.md specifies every byte; ``tests/imaging/test_manifest_build.py``
pins the encodings (leaves, series entries and summaries, with the RFC 6962 roots
rederived from hashlib) and ``tests/test_fingerprint_doc.py`` checks the document's
vectors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ledger import merkle
from ledger.errors import ValidationError
from ledger.schema import Array, Bool, Bytes, FieldSpec, Nested, Optional, Schema, Text, UInt

MANIFEST_VERSION: Final = 1
DIGEST_BYTES: Final = 32

#: A DICOM UID (PS3.5 §9.1): dot-separated digit components, at most 64 characters.
UID_PATTERN: Final = r"[0-9]+(\.[0-9]+)*"
UID_MAX_LEN: Final = 64
#: A DICOM code string value (PS3.5 CS): upper case, digits, space, underscore; 16 chars.
CS_PATTERN: Final = r"[A-Z0-9_ ]{0,16}"
#: Codes of DICOM CID 7050 "De-identification Method" (113100 Basic ... 113112).
DEID_CODE_PATTERN: Final = r"1131[0-9]{2}"
#: The checks of the de-identification gate (imaging/deid.py) a policy may relax.
GATE_CHECKS: Final = (
    "identity-removed",
    "method",
    "burned-in",
    "private-tags",
    "original-attributes",
    "signatures",
    "retained-uids",
)
_CHECK_PATTERN: Final = "|".join(GATE_CHECKS)
_CS_RE: Final = re.compile(CS_PATTERN)

MAX_SERIES_LEAVES_PER_TX: Final = 4096
MAX_GEOMETRIES: Final = 16
MAX_SOP_CLASSES: Final = 8


def check_uid(what: str, uid: object) -> None:
    if (
        not isinstance(uid, str)
        or not 0 < len(uid) <= UID_MAX_LEN
        or re.fullmatch(UID_PATTERN, uid) is None
    ):
        raise ValidationError(f"{what} {uid!r} is not a DICOM UID")


def _check_code(what: str, value: object) -> None:
    """Coded values only: the summary must never carry free text from a header."""
    if not isinstance(value, str) or _CS_RE.fullmatch(value) is None:
        raise ValidationError(f"{what} {value!r} is not a DICOM code string")


def _check_digest(what: str, value: object) -> None:
    if not isinstance(value, bytes) or len(value) != DIGEST_BYTES:
        raise ValidationError(f"{what} must be a {DIGEST_BYTES}-byte digest")


# --------------------------------------------------------------------------- leaves


@dataclass(frozen=True, slots=True)
class InstanceLeaf:
    """One instance in a series manifest."""

    sop_instance_uid: str
    pixel: bytes | None
    meta: bytes
    file: bytes
    version: int = MANIFEST_VERSION
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.version != MANIFEST_VERSION:
            raise ValidationError(f"unsupported manifest version {self.version}")
        check_uid("SOP Instance UID", self.sop_instance_uid)
        if self.pixel is not None:
            _check_digest("pixel", self.pixel)
        _check_digest("meta", self.meta)
        _check_digest("file", self.file)

    def encode(self) -> bytes:
        return INSTANCE_LEAF_SCHEMA.encode_cached(self)

    @classmethod
    def decode(cls, data: bytes) -> InstanceLeaf:
        return INSTANCE_LEAF_SCHEMA.decode(data)

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.encode())

    def to_json(self) -> dict[str, Any]:
        return INSTANCE_LEAF_SCHEMA.to_json(self)


INSTANCE_LEAF_SCHEMA: Final = Schema[InstanceLeaf](
    "instance-leaf",
    InstanceLeaf,
    [
        FieldSpec("v", "version", UInt(0xFFFF)),
        FieldSpec("sop", "sop_instance_uid", Text(UID_MAX_LEN, UID_PATTERN)),
        FieldSpec("pixel", "pixel", Optional(Bytes(size=DIGEST_BYTES))),
        FieldSpec("meta", "meta", Bytes(size=DIGEST_BYTES)),
        FieldSpec("file", "file", Bytes(size=DIGEST_BYTES)),
    ],
    max_bytes=512,
    cache_attr="_encoded",
)


def sort_leaves(leaves: Iterable[InstanceLeaf]) -> list[InstanceLeaf]:
    """Leaves in manifest order; :class:`ValidationError` on a repeated SOP Instance UID."""
    ordered = sorted(leaves, key=lambda leaf: leaf.sop_instance_uid.encode("ascii"))
    check_leaf_order(ordered)
    return ordered


def check_leaf_order(leaves: Sequence[InstanceLeaf]) -> None:
    """Raise unless ``leaves`` are strictly ascending by SOP Instance UID."""
    for before, after in itertools.pairwise(leaves):
        if before.sop_instance_uid.encode("ascii") >= after.sop_instance_uid.encode("ascii"):
            if before.sop_instance_uid == after.sop_instance_uid:
                raise ValidationError(
                    f"SOP Instance UID {after.sop_instance_uid} appears twice in one series"
                )
            raise ValidationError("manifest leaves must be sorted by SOP Instance UID")


def series_root(leaves: Sequence[InstanceLeaf]) -> bytes:
    """The series manifest: RFC 6962 root over leaves already in manifest order."""
    check_leaf_order(leaves)
    return merkle.root([leaf.encode() for leaf in leaves])


def leaf_hashes_root(hashes: Sequence[bytes]) -> bytes:
    """The RFC 6962 root from precomputed leaf hashes (what a registry keeps in state)."""
    return merkle.root_from_leaf_hashes(hashes)


def instance_proof(
    leaves: Sequence[InstanceLeaf], sop_instance_uid: str
) -> tuple[int, list[bytes]]:
    """(index, audit path) of one instance in a series manifest."""
    for index, leaf in enumerate(leaves):
        if leaf.sop_instance_uid == sop_instance_uid:
            return index, merkle.inclusion_proof([lf.encode() for lf in leaves], index)
    raise KeyError(sop_instance_uid)


def verify_instance(
    leaf: InstanceLeaf, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> bool:
    return merkle.verify_inclusion(leaf.encode(), index, size, list(proof), root)


# --------------------------------------------------------------------------- series and datasets


@dataclass(frozen=True, slots=True)
class SeriesEntry:
    """One series of a dataset: what the dataset root commits to."""

    series_instance_uid: str
    root: bytes
    instances: int
    version: int = MANIFEST_VERSION

    def __post_init__(self) -> None:
        if self.version != MANIFEST_VERSION:
            raise ValidationError(f"unsupported manifest version {self.version}")
        check_uid("Series Instance UID", self.series_instance_uid)
        _check_digest("series root", self.root)
        if not isinstance(self.instances, int) or self.instances < 0:
            raise ValidationError("instance count must be a non-negative integer")

    def encode(self) -> bytes:
        return SERIES_ENTRY_SCHEMA.encode(self)


SERIES_ENTRY_SCHEMA: Final = Schema[SeriesEntry](
    "series-entry",
    SeriesEntry,
    [
        FieldSpec("v", "version", UInt(0xFFFF)),
        FieldSpec("series", "series_instance_uid", Text(UID_MAX_LEN, UID_PATTERN)),
        FieldSpec("root", "root", Bytes(size=DIGEST_BYTES)),
        FieldSpec("n", "instances", UInt()),
    ],
    max_bytes=256,
)


def dataset_root(entries: Iterable[SeriesEntry]) -> bytes:
    """RFC 6962 root over a dataset's series, sorted by Series Instance UID."""
    ordered = sorted(entries, key=lambda e: e.series_instance_uid.encode("ascii"))
    for before, after in itertools.pairwise(ordered):
        if before.series_instance_uid == after.series_instance_uid:
            raise ValidationError(f"series {after.series_instance_uid} appears twice")
    return merkle.root([e.encode() for e in ordered])


# --------------------------------------------------------------------------- summaries


@dataclass(frozen=True, slots=True)
class Geometry:
    """How one kind of frame in a series is laid out (no pixel values)."""

    rows: int
    columns: int
    samples_per_pixel: int
    bits_allocated: int
    bits_stored: int
    photometric: str

    def __post_init__(self) -> None:
        _check_code("photometric interpretation", self.photometric)


GEOMETRY_SCHEMA: Final = Schema[Geometry](
    "geometry",
    Geometry,
    [
        FieldSpec("rows", "rows", UInt(0xFFFF)),
        FieldSpec("cols", "columns", UInt(0xFFFF)),
        FieldSpec("spp", "samples_per_pixel", UInt(0xFFFF)),
        FieldSpec("ba", "bits_allocated", UInt(64)),
        FieldSpec("bs", "bits_stored", UInt(64)),
        FieldSpec("pi", "photometric", Text(16, CS_PATTERN)),
    ],
)


@dataclass(frozen=True, slots=True)
class DeidRecord:
    """How a series was de-identified, as the gate saw it.

    ``codes`` are CID 7050 code values from (0012,0064); ``relaxed`` names the
    gate checks a site's policy waived for this registration (on chain, so an
    auditor sees every exception).
    """

    identity_removed: bool
    codes: tuple[str, ...]
    relaxed: tuple[str, ...]

    def __post_init__(self) -> None:
        for what, values in (("method codes", self.codes), ("relaxed checks", self.relaxed)):
            if list(values) != sorted(set(values)):
                raise ValidationError(f"{what} must be sorted and distinct")
        unknown = set(self.relaxed) - set(GATE_CHECKS)
        if unknown:
            raise ValidationError(f"unknown gate checks {sorted(unknown)}")


DEID_SCHEMA: Final = Schema[DeidRecord](
    "deid",
    DeidRecord,
    [
        FieldSpec("removed", "identity_removed", Bool()),
        FieldSpec("codes", "codes", Array(Text(6, DEID_CODE_PATTERN), 13)),
        FieldSpec("relaxed", "relaxed", Array(Text(32, _CHECK_PATTERN), len(GATE_CHECKS))),
    ],
)


@dataclass(frozen=True, slots=True)
class SeriesSummary:
    """The de-identified description of a series: the allow-list, and nothing else."""

    modality: str
    body_part: str
    sop_classes: tuple[str, ...]
    instances: int
    frames: int
    geometry: tuple[Geometry, ...]
    lossy: bool
    deid: DeidRecord

    def __post_init__(self) -> None:
        _check_code("modality", self.modality)
        _check_code("body part", self.body_part)
        for uid in self.sop_classes:
            check_uid("SOP Class UID", uid)
        if list(self.sop_classes) != sorted(set(self.sop_classes)):
            raise ValidationError("SOP classes must be sorted and distinct")

    def to_json(self) -> dict[str, Any]:
        return SUMMARY_SCHEMA.to_json(self)


SUMMARY_SCHEMA: Final = Schema[SeriesSummary](
    "series-summary",
    SeriesSummary,
    [
        FieldSpec("modality", "modality", Text(16, CS_PATTERN)),
        FieldSpec("body_part", "body_part", Text(16, CS_PATTERN)),
        FieldSpec(
            "sop_classes", "sop_classes", Array(Text(UID_MAX_LEN, UID_PATTERN), MAX_SOP_CLASSES)
        ),
        FieldSpec("instances", "instances", UInt()),
        FieldSpec("frames", "frames", UInt()),
        FieldSpec("geometry", "geometry", Array(Nested(GEOMETRY_SCHEMA), MAX_GEOMETRIES)),
        FieldSpec("lossy", "lossy", Bool()),
        FieldSpec("deid", "deid", Nested(DEID_SCHEMA)),
    ],
    max_bytes=4096,
)

__all__ = [
    "CS_PATTERN",
    "DEID_CODE_PATTERN",
    "DEID_SCHEMA",
    "GATE_CHECKS",
    "GEOMETRY_SCHEMA",
    "INSTANCE_LEAF_SCHEMA",
    "MANIFEST_VERSION",
    "SERIES_ENTRY_SCHEMA",
    "SUMMARY_SCHEMA",
    "UID_PATTERN",
    "DeidRecord",
    "Geometry",
    "InstanceLeaf",
    "SeriesEntry",
    "SeriesSummary",
    "check_leaf_order",
    "check_uid",
    "dataset_root",
    "instance_proof",
    "series_root",
    "sort_leaves",
    "verify_instance",
]
