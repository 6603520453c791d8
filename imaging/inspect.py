"""One parse per file: fingerprint, gate verdict and the allow-listed facts.

:func:`inspect_file` is what the command line runs on every file (in worker
processes, see :mod:`imaging.scan`). Its result is picklable and holds no
patient-identifying values: UIDs (de-identified ones, if the gate passed),
coded attributes, and digests.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from pydicom import uid as syntaxes
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames

from imaging import attributes, deid, jpeg2000
from imaging.errors import ImagingError, MalformedError
from imaging.fingerprint import (
    DEFAULT_MAX_PIXEL_BYTES,
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
#: JPEG XL (1.2.840.10008.1.2.4.112, lossy or lossless) and JPEG XL JPEG
#: Recompression (.111: a reversible repacking of a lossy JPEG). pydicom 3.0 has
#: no constants for them yet (nor a decoder, so such files are refused for now).
JPEG_XL: Final = "1.2.840.10008.1.2.4.112"
JPEG_XL_JPEG_RECOMPRESSION: Final = "1.2.840.10008.1.2.4.111"
#: Transfer syntaxes that can only hold lossy data (PS3.5 §8, §10, PS3.6 Table A-1):
#: every DCT-based JPEG process, retired ones included; JPEG-LS near-lossless;
#: MPEG-2, MPEG-4 AVC/H.264 and HEVC/H.265, fragmentable variants included;
#: JPEG XL JPEG Recompression. Such a file is lossy whatever (0028,2110) says.
LOSSY_TRANSFER_SYNTAXES: Final = frozenset(
    {
        syntaxes.JPEGBaseline8Bit,  # .50, process 1
        syntaxes.JPEGExtended12Bit,  # .51, processes 2 and 4
        *(f"1.2.840.10008.1.2.4.{n}" for n in (52, 53, 54, 55, 56, 59, 60, 61, 62, 63, 64)),
        syntaxes.JPEGLSNearLossless,  # .81
        syntaxes.MPEG2MPML,
        syntaxes.MPEG2MPMLF,
        syntaxes.MPEG2MPHL,
        syntaxes.MPEG2MPHLF,
        syntaxes.MPEG4HP41,
        syntaxes.MPEG4HP41F,
        syntaxes.MPEG4HP41BD,
        syntaxes.MPEG4HP41BDF,
        syntaxes.MPEG4HP422D,
        syntaxes.MPEG4HP422DF,
        syntaxes.MPEG4HP423D,
        syntaxes.MPEG4HP423DF,
        syntaxes.MPEG4HP42STEREO,
        syntaxes.MPEG4HP42STEREOF,
        syntaxes.HEVCMP51,
        syntaxes.HEVCM10P51,
        JPEG_XL_JPEG_RECOMPRESSION,
    }
)
#: "Lossy or lossless" syntaxes whose codestream names its wavelet transform:
#: without (0028,2110), an irreversible (9-7) transform, or a codestream that
#: cannot be read, makes the instance lossy (imaging/jpeg2000.py).
JPEG2000_LOSSY_OR_LOSSLESS: Final = frozenset(
    {syntaxes.JPEG2000, syntaxes.JPEG2000MC, syntaxes.HTJ2K}
)
#: Lossless-only JPEG 2000 syntaxes: an irreversible transform in one is lossy anyway.
JPEG2000_LOSSLESS_ONLY: Final = frozenset(
    {
        syntaxes.JPEG2000Lossless,
        syntaxes.JPEG2000MCLossless,
        syntaxes.HTJ2KLossless,
        syntaxes.HTJ2KLosslessRPCL,
    }
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


def inspect_file(
    path: str | Path,
    policy: deid.GatePolicy = deid.GatePolicy(),  # noqa: B008
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
) -> Instance:
    data = read_file(path)
    return inspect_bytes(data, str(path), policy, max_pixel_bytes)


def inspect_bytes(
    data: bytes,
    path: str = "<memory>",
    policy: deid.GatePolicy = deid.GatePolicy(),  # noqa: B008
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
) -> Instance:
    ds = read_dataset(data)
    with warnings.catch_warnings():
        # pydicom warns about benign oddities (excess padding, odd VRs); the digests
        # are defined regardless, and real damage raises a typed error instead.
        warnings.simplefilter("ignore")
        # Before anything converts values:
        fingerprint, pixels = fingerprint_dataset(ds, data, max_pixel_bytes)
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
        lossy=is_lossy(ds),
        source_uids=_source_uids(ds),
        gate=gate,
    )


def inspect_safely(
    path: str, policy: deid.GatePolicy, max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES
) -> Instance | Problem:
    """:func:`inspect_file`, with every per-file failure returned rather than raised."""
    try:
        return inspect_file(path, policy, max_pixel_bytes)
    except ImagingError as exc:
        return Problem(path, exc.code, exc.message)
    except Exception as exc:
        return Problem(path, MalformedError.code, f"cannot read the dataset: {describe(exc)}")


def is_lossy(ds: Dataset) -> bool:
    """Has this image been through lossy compression, as far as the file can tell?

    Yes when Lossy Image Compression (0028,2110) is ``01``; when the transfer
    syntax can only be lossy; when a JPEG 2000 or HTJ2K frame uses an
    irreversible wavelet (whatever the syntax or (0028,2110) claim); and, when
    (0028,2110) is absent, for a "lossy or lossless" syntax whose codestream
    cannot be read, and for JPEG XL (its codestream is not read here).
    """
    syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    flag = _text(ds, "LossyImageCompression")
    if flag == "01" or syntax in LOSSY_TRANSFER_SYNTAXES:
        return True
    unknown_counts_as_lossy = flag == "" and syntax in JPEG2000_LOSSY_OR_LOSSLESS
    if syntax in JPEG2000_LOSSY_OR_LOSSLESS or syntax in JPEG2000_LOSSLESS_ONLY:
        try:
            return any(jpeg2000.is_irreversible(frame) for frame in _encapsulated_frames(ds))
        except Exception:  # an unreadable codestream, or encapsulation pydicom refuses
            return unknown_counts_as_lossy
    return flag == "" and syntax == JPEG_XL


def _encapsulated_frames(ds: Dataset) -> Iterator[bytes]:
    if "PixelData" not in ds:
        return
    frames = int(ds.get("NumberOfFrames") or 1) or 1
    yield from generate_frames(ds.PixelData, number_of_frames=frames)


def _text(ds: Dataset, keyword: str) -> str:
    try:
        value = attributes.text(ds, keyword)
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
