"""docs/FINGERPRINT.md's test vectors are what the code computes, and what the
documented algorithm computes when rederived here from hashlib and numpy alone."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from imaging.canonical import canonical_meta
from imaging.fingerprint import fingerprint_file
from ledger import codec

DOC = (Path(__file__).resolve().parent.parent / "docs" / "FINGERPRINT.md").read_text()
MR_FAMILY = (
    "MR_small.dcm",
    "MR_small_implicit.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_expb.dcm",
    "MR_small_RLE.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_padded.dcm",
)


def _bundled(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert path is not None, name
    return str(path)


def _documented(label: str) -> str:
    match = re.search(rf"^{label}\s+([0-9a-f.]+)$", DOC, re.MULTILINE)
    assert match is not None, label
    return match.group(1)


def _hex_blocks() -> list[str]:
    """Every fenced block in the document that is only hex digits."""
    blocks = re.findall(r"```\n([0-9a-f\n]+)```", DOC)
    return ["".join(block.split()) for block in blocks]


def test_mr_small_family_matches_the_documented_digests() -> None:
    files = set()
    for name in MR_FAMILY:
        fp = fingerprint_file(_bundled(name))
        assert fp.sop_instance_uid == _documented("sop")
        assert fp.pixel is not None
        assert fp.pixel.hex() == _documented("pixel")
        assert fp.meta.hex() == _documented("meta")
        files.add(fp.file)
    assert len(files) == len(MR_FAMILY)
    assert fingerprint_file(_bundled("MR_small.dcm")).file.hex() in DOC


def test_file_digest_is_the_documented_shell_pipeline() -> None:
    data = Path(_bundled("MR_small.dcm")).read_bytes()
    expected = hashlib.sha256(b"radledger/dicom-file/v1\x00" + data).hexdigest()
    assert fingerprint_file(_bundled("MR_small.dcm")).file.hex() == expected


def test_pixel_digest_rederived_from_the_specification() -> None:
    ds = pydicom.dcmread(_bundled("MR_small.dcm"))
    header = codec.encode(
        {
            "Rows": int(ds.Rows),
            "Columns": int(ds.Columns),
            "NumberOfFrames": 1,
            "SamplesPerPixel": int(ds.SamplesPerPixel),
            "BitsAllocated": int(ds.BitsAllocated),
            "BitsStored": int(ds.BitsStored),
            "PixelRepresentation": int(ds.PixelRepresentation),
            "PhotometricInterpretation": "MONOCHROME2",
            "PlanarConfiguration": 0,
            "SampleBytes": 2,
            "SampleKind": "i",
        }
    )
    assert header.hex() in _hex_blocks()
    samples = np.ascontiguousarray(ds.pixel_array.astype("<i2")).tobytes()
    digest = hashlib.sha256(b"radledger/dicom-pixel/v1\x00" + header + samples).hexdigest()
    assert digest == _documented("pixel")


def test_the_small_canonical_meta_example() -> None:
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4"
    ds.Modality = "CT "
    ds.SliceThickness = "1.50"
    ds.PatientName = "DOE^JANE^^"
    ds.Rows = 2
    ds.PhotometricInterpretation = "MONOCHROME2"
    item = Dataset()
    item.CodeValue = "113100"
    item.CodingSchemeDesignator = "DCM"
    ds.DeidentificationMethodCodeSequence = Sequence([item])
    ds.set_original_encoding(False, True)
    encoded = canonical_meta(ds)
    assert encoded.hex() in _hex_blocks()
    assert codec.decode(encoded) == {
        "00080018": ["1.2.3.4"],
        "00080060": ["CT"],
        "00100010": ["DOE^JANE"],
        "00120064": [{"00080100": ["113100"], "00080102": ["DCM"]}],
        "00180050": [[15, -1]],
        "00280010": [2],
    }
    meta = hashlib.sha256(b"radledger/dicom-meta/v1\x00" + encoded).hexdigest()
    assert f"meta = {meta}" in DOC
