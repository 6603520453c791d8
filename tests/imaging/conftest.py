"""Fixtures and helpers for the imaging tests.

Only two sources of DICOM data are used: the files pydicom bundles (always
looked up with ``download=False``, so no test ever touches the network) and the
synthetic CT instances of :mod:`imaging.synthetic`, re-encoded here with pydicom
into the transfer syntaxes the fingerprint must be invariant under.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)

from imaging import synthetic
from imaging.deid import Failure, GateResult
from imaging.fingerprint import Fingerprint
from imaging.inspect import Instance
from ledger.manifest import Geometry

#: The lossless re-encodings built with pydicom from one synthetic instance.
LOSSLESS_SYNTAXES: Final = (
    "explicit",
    "implicit",
    "big-endian",
    "deflated",
    "rle",
    "jpeg2000",
    "padded",
)

#: pydicom's MR_small.dcm in every lossless encoding pydicom bundles.
MR_SMALL_FAMILY: Final = (
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
)

CT_GEOMETRY: Final = Geometry(16, 16, 1, 16, 12, "MONOCHROME2")
SMALL_CT: Final = synthetic.StudySpec(rows=32, columns=32)


def bundled(name: str) -> Path:
    """A file pydicom ships with; never downloads (``download=False``)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.fail(f"pydicom's bundled test file {name} is missing from this install")
    return Path(str(path))


def bundled_bytes(name: str) -> bytes:
    return bundled(name).read_bytes()


def read(data: bytes) -> Dataset:
    """pydicom's own parse of ``data`` (for building variants, not for the code under test)."""
    return pydicom.dcmread(io.BytesIO(data))


def ct(**changes: Any) -> Dataset:
    """One small synthetic CT instance: 32 x 32 (the least pydicom's JPEG 2000 encoder
    takes with its default resolution levels), int16 with 12 bits stored, de-identified.

    ``changes`` override fields of :class:`imaging.synthetic.StudySpec`.
    """
    return synthetic.instance(dataclasses.replace(SMALL_CT, **changes), 0, 0)


def save(ds: Dataset, *, implicit: bool = False, little: bool = True) -> bytes:
    """``ds`` as a Part 10 file, in the encoding its file meta already names."""
    buffer = io.BytesIO()
    ds.save_as(buffer, implicit_vr=implicit, little_endian=little, enforce_file_format=True)
    return buffer.getvalue()


def swap_words(data: bytes, width: int) -> bytes:
    """``data`` with every ``width``-byte word byte-swapped (pydicom writes OW as given)."""
    if width == 1:
        return data
    return np.frombuffer(data, dtype=f"<u{width}").byteswap().tobytes()


def encode(ds: Dataset, syntax: str) -> bytes:
    """A deep copy of ``ds`` re-encoded losslessly in ``syntax`` (see LOSSLESS_SYNTAXES)."""
    d = copy.deepcopy(ds)  # Dataset.copy() is shallow: never mutate the caller's dataset
    if syntax == "explicit":
        d.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        return save(d)
    if syntax == "implicit":
        d.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        return save(d, implicit=True)
    if syntax == "big-endian":
        d.file_meta.TransferSyntaxUID = ExplicitVRBigEndian
        width = int(d.BitsAllocated) // 8 if int(d.BitsAllocated) in (16, 32) else 1
        d.PixelData = swap_words(d.PixelData, width)
        return save(d, little=False)
    if syntax == "deflated":
        d.file_meta.TransferSyntaxUID = DeflatedExplicitVRLittleEndian
        return save(d)
    if syntax == "rle":
        d.compress(RLELossless, generate_instance_uid=False)
        return save(d)
    if syntax == "jpeg2000":
        try:
            d.compress(JPEG2000Lossless, generate_instance_uid=False)
        except Exception as exc:  # the encoder plugin is optional
            pytest.skip(f"pydicom cannot encode JPEG 2000 lossless here: {exc}")
        return save(d)
    if syntax == "padded":
        d.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        d.add_new(0xFFFCFFFC, "OB", b"\x00" * 64)  # Data Set Trailing Padding
        return save(d)
    raise AssertionError(f"unknown syntax {syntax}")


def with_pixels(ds: Dataset, values: np.ndarray[tuple[int, ...], np.dtype[np.int16]]) -> Dataset:
    d = copy.deepcopy(ds)
    d.PixelData = values.astype("<i2").tobytes()
    return d


def ct_pixels(ds: Dataset) -> np.ndarray[tuple[int, ...], np.dtype[np.int16]]:
    values: np.ndarray[tuple[int, ...], np.dtype[np.int16]] = np.frombuffer(
        ds.PixelData, dtype="<i2"
    ).copy()
    return values


# --------------------------------------------------------------------------- byte surgery


def explicit_le_elements(data: bytes) -> Iterator[tuple[int, int, int, int]]:
    """(tag, offset, header bytes, value bytes) of each top-level dataset element.

    A minimal walker for explicit VR little endian files with defined lengths,
    the shape :func:`save` produces for the synthetic instances; the tests use
    it to cut and patch files at known places.
    """
    (meta_length,) = struct.unpack_from("<I", data, 140)
    offset = 144 + meta_length
    long_vrs = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR"}
    long_vrs |= {b"UT", b"UV"}
    while offset < len(data):
        group, element = struct.unpack_from("<HH", data, offset)
        vr = data[offset + 4 : offset + 6]
        if vr in long_vrs:
            (length,) = struct.unpack_from("<I", data, offset + 8)
            header = 12
        else:
            (length,) = struct.unpack_from("<H", data, offset + 6)
            header = 8
        assert length != 0xFFFFFFFF, "the walker handles defined lengths only"
        yield (group << 16) | element, offset, header, length
        offset += header + length


def element_at(data: bytes, tag: int) -> tuple[int, int, int]:
    """(offset, header bytes, value bytes) of a top-level element of an explicit LE file."""
    for found, offset, header, length in explicit_le_elements(data):
        if found == tag:
            return offset, header, length
    raise AssertionError(f"({tag >> 16:04X},{tag & 0xFFFF:04X}) is not in the file")


def patch_u32(data: bytes, offset: int, value: int) -> bytes:
    return data[:offset] + struct.pack("<I", value) + data[offset + 4 :]


# --------------------------------------------------------------------------- records


def digest(*parts: object) -> bytes:
    return hashlib.sha256("/".join(map(str, parts)).encode()).digest()


def make_instance(
    sop_uid: str,
    series_uid: str,
    *,
    geometry: Geometry | None = CT_GEOMETRY,
    codes: tuple[str, ...] = ("113100",),
    waived: tuple[str, ...] = (),
    lossy: bool = False,
    modality: str = "CT",
    body_part: str = "CHEST",
    frames: int = 1,
    sop_class_uid: str = "1.2.840.10008.5.1.4.1.1.2",
) -> Instance:
    """An :class:`Instance` as inspect would return it, without a file behind it."""
    return Instance(
        path=f"/data/{sop_uid}.dcm",
        size=1024,
        fingerprint=Fingerprint(
            sop_uid, digest("pixel", sop_uid), digest("meta", sop_uid), digest("file", sop_uid)
        ),
        study_uid="1.2.3",
        series_uid=series_uid,
        sop_class_uid=sop_class_uid,
        transfer_syntax=str(ExplicitVRLittleEndian),
        modality=modality,
        body_part=body_part,
        geometry=geometry,
        frames=frames,
        lossy=lossy,
        source_uids=(),
        gate=GateResult(
            identity_removed=True,
            codes=codes,
            waived=tuple(Failure(check, "waived by the test") for check in waived),
        ),
    )


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def study(tmp_path: Path) -> list[Path]:
    """A synthetic de-identified study on disk: 2 series of 3 small CT instances."""
    spec = synthetic.StudySpec(seed=7, series=2, instances=3, rows=16, columns=16)
    return synthetic.write_study(tmp_path / "study", spec)
