"""One parse per file: fingerprint, gate verdict and the allow-listed facts.

:func:`inspect_file` is what the command line runs on every file (in worker
processes, see :mod:`imaging.scan`). Its result is picklable and holds no
patient-identifying values: UIDs (de-identified ones, if the gate passed),
coded attributes, and digests.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydicom.dataset import Dataset

from imaging import deid
from imaging.errors import ImagingError, MalformedError
from imaging.fingerprint import (
    Fingerprint,
    describe,
    fingerprint_dataset,
    read_dataset,
    read_file,
)
from ledger.manifest import (
    CS_PATTERN,
    UID_MAX_LEN,
    UID_PATTERN,
    DeidRecord,
    Geometry,
    InstanceLeaf,
    SeriesEntry,
    SeriesSummary,
    series_root,
    sort_leaves,
)

_CS: Final = re.compile(CS_PATTERN)
#: Transfer syntaxes that can only hold lossy data (JPEG baseline and extended,
#: JPEG-LS near-lossless): such a file is lossy whatever (0028,2110) says.
LOSSY_TRANSFER_SYNTAXES: Final = frozenset(
    {"1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.81"}
)
_UID: Final = re.compile(UID_PATTERN)


@dataclass(frozen=True, slots=True)
class Instance:
    """Everything radledger keeps about one DICOM file."""

    path: str
    size: int
    fingerprint: Fingerprint
    study_uid: str
    series_uid: str
    sop_class_uid: str
    transfer_syntax: str
    modality: str
    body_part: str
    geometry: Geometry | None
    frames: int
    lossy: bool
    source_uids: tuple[str, ...]
    gate: deid.GateResult

    def to_json(self) -> dict[str, Any]:
        return {
            "path": self.path,
            **self.fingerprint.to_json(),
            "series_instance_uid": self.series_uid,
            "transfer_syntax": self.transfer_syntax,
            "lossy": self.lossy,
        }


@dataclass(frozen=True, slots=True)
class Problem:
    """A file that could not be fingerprinted, and why."""

    path: str
    code: str
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "error": self.code, "message": self.message}


def inspect_file(path: str | Path, policy: deid.GatePolicy = deid.GatePolicy()) -> Instance:  # noqa: B008
    data = read_file(path)
    return inspect_bytes(data, str(path), policy)


def inspect_bytes(
    data: bytes,
    path: str = "<memory>",
    policy: deid.GatePolicy = deid.GatePolicy(),  # noqa: B008
) -> Instance:
    ds = read_dataset(data)
    with warnings.catch_warnings():
        # pydicom warns about benign oddities (excess padding, odd VRs); the digests
        # are defined regardless, and real damage raises a typed error instead.
        warnings.simplefilter("ignore")
        fingerprint, pixels = fingerprint_dataset(ds, data)  # before anything converts values
        gate = deid.check(ds, policy)
    return Instance(
        path=path,
        size=len(data),
        fingerprint=fingerprint,
        study_uid=_uid(ds, "StudyInstanceUID"),
        series_uid=_uid(ds, "SeriesInstanceUID"),
        sop_class_uid=_uid(ds, "SOPClassUID"),
        transfer_syntax=str(ds.file_meta.TransferSyntaxUID),
        modality=_code(ds, "Modality"),
        body_part=_code(ds, "BodyPartExamined"),
        geometry=None if pixels is None else pixels.geometry,
        frames=0 if pixels is None else pixels.frames,
        lossy=_text(ds, "LossyImageCompression") == "01"
        or str(ds.file_meta.TransferSyntaxUID) in LOSSY_TRANSFER_SYNTAXES,
        source_uids=_source_uids(ds),
        gate=gate,
    )


def inspect_safely(path: str, policy: deid.GatePolicy) -> Instance | Problem:
    """:func:`inspect_file`, with every per-file failure returned rather than raised."""
    try:
        return inspect_file(path, policy)
    except ImagingError as exc:
        return Problem(path, exc.code, exc.message)
    except Exception as exc:
        return Problem(path, MalformedError.code, f"cannot read the dataset: {describe(exc)}")


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:
        return ""
    return "" if value is None else str(value).strip(" \x00")


def _uid(ds: Dataset, keyword: str) -> str:
    value = _text(ds, keyword)
    return value if len(value) <= UID_MAX_LEN and _UID.fullmatch(value) else ""


def _code(ds: Dataset, keyword: str) -> str:
    """The value if it is a DICOM code string as stored, else "" (free text never leaves).

    Nothing is normalised: upper-casing ``"John Smith"`` would make it a valid
    code string, so a value in lower or mixed case (even ``"Chest"``) is left out
    rather than guessed at. Only the padding DICOM itself allows is trimmed.
    """
    value = _text(ds, keyword)
    return value if _CS.fullmatch(value) else ""


def _source_uids(ds: Dataset) -> tuple[str, ...]:
    """SOP Instance UIDs this image says it was derived from (Source Image Sequence)."""
    out: set[str] = set()
    try:
        items = ds.get("SourceImageSequence") or []
        for item in items:
            uid = str(item.get("ReferencedSOPInstanceUID", "") or "").strip(" \x00")
            if _UID.fullmatch(uid):
                out.add(uid)
    except Exception:
        return ()
    return tuple(sorted(out))


# --------------------------------------------------------------------------- series


@dataclass(frozen=True, slots=True)
class Series:
    """The instances of one series, in manifest order, and what goes on chain."""

    series_uid: str
    instances: tuple[Instance, ...]
    leaves: tuple[InstanceLeaf, ...]
    root: bytes
    summary: SeriesSummary

    def entry(self) -> SeriesEntry:
        return SeriesEntry(self.series_uid, self.root, len(self.leaves))


def group_series(instances: Iterable[Instance]) -> list[Series]:
    """Group by Series Instance UID, sort, and build manifests and summaries.

    Raises ``ValueError`` if a series lacks a UID or repeats a SOP Instance UID.
    """
    groups: dict[str, list[Instance]] = {}
    for instance in instances:
        if not instance.series_uid:
            raise ValueError(f"{instance.path}: no valid Series Instance UID")
        groups.setdefault(instance.series_uid, []).append(instance)
    out = []
    for series_uid in sorted(groups, key=lambda u: u.encode("ascii")):
        members = sorted(groups[series_uid], key=lambda i: i.fingerprint.sop_instance_uid)
        leaves = tuple(sort_leaves(i.fingerprint.leaf() for i in members))
        out.append(
            Series(series_uid, tuple(members), leaves, series_root(leaves), summarise(members))
        )
    return out


def summarise(instances: Sequence[Instance]) -> SeriesSummary:
    """The allow-listed, de-identified summary of one series."""
    modalities = {i.modality for i in instances if i.modality}
    body_parts = {i.body_part for i in instances if i.body_part}
    geometries = sorted(
        {i.geometry for i in instances if i.geometry is not None},
        key=lambda g: (
            g.rows,
            g.columns,
            g.samples_per_pixel,
            g.bits_allocated,
            g.bits_stored,
            g.photometric,
        ),
    )
    codes = set.intersection(*(set(i.gate.codes) for i in instances)) if instances else set()
    relaxed = sorted({w.check for i in instances for w in i.gate.waived})
    return SeriesSummary(
        modality=modalities.pop() if len(modalities) == 1 else "",
        body_part=body_parts.pop() if len(body_parts) == 1 else "",
        sop_classes=tuple(sorted({i.sop_class_uid for i in instances if i.sop_class_uid}))[:8],
        instances=len(instances),
        frames=sum(i.frames for i in instances),
        geometry=tuple(geometries[:16]),
        lossy=any(i.lossy for i in instances),
        deid=DeidRecord(
            identity_removed=all(i.gate.identity_removed for i in instances),
            codes=tuple(sorted(codes)),
            relaxed=tuple(relaxed),
        ),
    )
