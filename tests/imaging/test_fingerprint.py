"""The pixel, meta and file digests: invariant under lossless re-encoding, sensitive to content.

Invariance is shown with pydicom's bundled re-encodings of the same images
(MR_small in eight encodings, the 15-frame rtdose, the RGB SC files, the 1-bit
liver masks) and with re-encodings of a synthetic CT built here; sensitivity
with one-pixel and one-attribute edits. Two digests are also rederived from the
documented algorithm with hashlib and numpy, so the code is checked against
the specification and not only against itself.
"""

from __future__ import annotations

import copy
import hashlib
from typing import Any, Final

import numpy as np
import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    HTJ2K,
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    HTJ2KLossless,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from imaging.fingerprint import (
    FILE_DOMAIN,
    PIXEL_DOMAIN,
    fingerprint_bytes,
    fingerprint_dataset,
    fingerprint_file,
    read_dataset,
)
from imaging.inspect import LOSSY_TRANSFER_SYNTAXES, inspect_bytes, is_lossy
from ledger import codec
from tests.imaging.conftest import (
    LOSSLESS_SYNTAXES,
    MR_SMALL_FAMILY,
    bundled,
    bundled_bytes,
    ct,
    ct_pixels,
    encode,
    read,
    save,
    with_pixels,
)

pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR UI")  # rtdose.dcm's UIDs

MR_SMALL_SOP = "1.3.6.1.4.1.5962.1.1.4.1.1.20040826185059.5457"
#: Regression vectors: computed by the code when the algorithm was fixed (v1).
#: If one of these changes, every fingerprint already on chain stops matching.
MR_SMALL_PIXEL = "ee549ee15ce53723a3b99fc65b7a73ce9dc03a62fdf620159b7fa1f726fb964e"
MR_SMALL_META = "30a0c6928ba0e1a35c7ddda8e14910310ab84133683e229e61f704ca2d07730f"


def _pixel(data: bytes) -> bytes:
    pixel = fingerprint_bytes(data).pixel
    assert pixel is not None
    return pixel


# --------------------------------------------------------------------------- vectors


def test_mr_small_regression_vectors() -> None:
    fp = fingerprint_file(bundled("MR_small.dcm"))
    assert fp.sop_instance_uid == MR_SMALL_SOP
    assert fp.pixel is not None
    assert fp.pixel.hex() == MR_SMALL_PIXEL
    assert fp.meta.hex() == MR_SMALL_META


def test_file_digest_is_sha256_of_the_domain_tag_and_the_exact_bytes() -> None:
    data = bundled_bytes("MR_small.dcm")
    expected = hashlib.sha256(b"radledger/dicom-file/v1\x00" + data).digest()
    assert FILE_DOMAIN == b"radledger/dicom-file/v1\x00"
    assert fingerprint_bytes(data).file == expected
    assert fingerprint_file(bundled("MR_small.dcm")).file == expected
    # Domain separated: not the plain hash of the file, not the other domains.
    assert expected != hashlib.sha256(data).digest()


def _rederived_pixel_digest(ds: Dataset, photometric: str) -> bytes:
    """The documented pixel digest, from pydicom's pixel_array, numpy and the CBOR codec."""
    frames = int(ds.get("NumberOfFrames") or 1) or 1
    bits_allocated = int(ds.BitsAllocated)
    bits_stored = int(ds.get("BitsStored") or bits_allocated)
    values = ds.pixel_array
    if frames == 1:
        values = values[np.newaxis, ...]  # (frame, row, column[, sample])
    if values.dtype.kind == "u" and bits_stored < values.dtype.itemsize * 8:
        values = values & ((1 << bits_stored) - 1)
    header = codec.encode(
        {
            "Rows": int(ds.Rows),
            "Columns": int(ds.Columns),
            "NumberOfFrames": frames,
            "SamplesPerPixel": int(ds.get("SamplesPerPixel") or 1),
            "BitsAllocated": bits_allocated,
            "BitsStored": bits_stored,
            "PixelRepresentation": int(ds.get("PixelRepresentation") or 0),
            "PhotometricInterpretation": photometric,
            "PlanarConfiguration": 0,
            "SampleBytes": values.dtype.itemsize,
            "SampleKind": values.dtype.kind,
        }
    )
    samples = np.ascontiguousarray(values.astype(values.dtype.newbyteorder("<"))).tobytes()
    return hashlib.sha256(b"radledger/dicom-pixel/v1\x00" + header + samples).digest()


def test_mr_small_pixel_digest_rederived_from_first_principles() -> None:
    ds = pydicom.dcmread(bundled("MR_small.dcm"))
    assert (ds.BitsAllocated, ds.BitsStored, ds.PixelRepresentation) == (16, 16, 1)
    header = codec.encode(
        {
            "Rows": 64,
            "Columns": 64,
            "NumberOfFrames": 1,
            "SamplesPerPixel": 1,
            "BitsAllocated": 16,
            "BitsStored": 16,
            "PixelRepresentation": 1,
            "PhotometricInterpretation": "MONOCHROME2",
            "PlanarConfiguration": 0,
            "SampleBytes": 2,
            "SampleKind": "i",
        }
    )
    samples = np.ascontiguousarray(ds.pixel_array, dtype="<i2").tobytes()
    assert len(samples) == 64 * 64 * 2
    expected = hashlib.sha256(PIXEL_DOMAIN + header + samples).hexdigest()
    assert PIXEL_DOMAIN == b"radledger/dicom-pixel/v1\x00"
    assert expected == MR_SMALL_PIXEL
    assert _rederived_pixel_digest(ds, "MONOCHROME2").hex() == MR_SMALL_PIXEL


@pytest.mark.parametrize(
    ("name", "photometric"),
    [
        ("rtdose.dcm", "MONOCHROME2"),  # 15 frames, 32-bit
        ("SC_rgb_rle.dcm", "RGB"),  # colour, stored planar by RLE
        ("SC_rgb_rle_2frame.dcm", "RGB"),  # colour and multi-frame
        ("SC_rgb_small_odd.dcm", "RGB"),  # odd length, padded
    ],
)
def test_pixel_digest_rederived_for_multi_frame_and_colour(name: str, photometric: str) -> None:
    ds = pydicom.dcmread(bundled(name))
    assert _pixel(bundled_bytes(name)) == _rederived_pixel_digest(ds, photometric)


def test_signed_high_bits_rederived_by_sign_extension_from_the_raw_bytes() -> None:
    """BitsStored 12, signed: a sample is bits 0-11, bit 11 its sign (PS3.5 8.1.1)."""
    ds = ct()
    clean = ct_pixels(ds).view("<u2")
    dirty = (clean & 0x0FFF) | 0x5000  # stray bits above BitsStored, e.g. an old overlay
    dirty_ds = copy.deepcopy(ds)
    dirty_ds.PixelData = dirty.astype("<u2").tobytes()
    low = (dirty & 0x0FFF).astype(np.int32)
    extended = np.where(low & 0x0800, low - 0x1000, low).astype("<i2")
    header = codec.encode(
        {
            "Rows": 32,
            "Columns": 32,
            "NumberOfFrames": 1,
            "SamplesPerPixel": 1,
            "BitsAllocated": 16,
            "BitsStored": 12,
            "PixelRepresentation": 1,
            "PhotometricInterpretation": "MONOCHROME2",
            "PlanarConfiguration": 0,
            "SampleBytes": 2,
            "SampleKind": "i",
        }
    )
    expected = hashlib.sha256(PIXEL_DOMAIN + header + extended.tobytes()).digest()
    assert _pixel(save(dirty_ds)) == expected


# --------------------------------------------------------------------------- invariance


def test_mr_small_family_has_one_pixel_and_one_meta_digest() -> None:
    prints = [fingerprint_file(bundled(name)) for name in MR_SMALL_FAMILY]
    syntaxes = {
        str(pydicom.dcmread(bundled(n)).file_meta.TransferSyntaxUID) for n in MR_SMALL_FAMILY
    }
    assert len(syntaxes) >= 6  # really different encodings, not copies
    assert {fp.sop_instance_uid for fp in prints} == {MR_SMALL_SOP}
    assert {fp.pixel for fp in prints} == {bytes.fromhex(MR_SMALL_PIXEL)}
    assert {fp.meta for fp in prints} == {bytes.fromhex(MR_SMALL_META)}
    assert len({fp.file for fp in prints}) == len(MR_SMALL_FAMILY)


@pytest.mark.parametrize("syntax", LOSSLESS_SYNTAXES)
def test_synthetic_ct_re_encoded_losslessly_keeps_pixel_and_meta(syntax: str) -> None:
    ds = ct()
    reference = fingerprint_bytes(save(ds))
    data = encode(ds, syntax)
    fp = fingerprint_bytes(data)
    assert fp.sop_instance_uid == ds.SOPInstanceUID
    assert fp.pixel == reference.pixel
    assert fp.meta == reference.meta
    assert (fp.file == reference.file) == (syntax == "explicit")
    expected_syntax = {
        "explicit": "1.2.840.10008.1.2.1",
        "implicit": "1.2.840.10008.1.2",
        "big-endian": "1.2.840.10008.1.2.2",
        "deflated": "1.2.840.10008.1.2.1.99",
        "rle": "1.2.840.10008.1.2.5",
        "jpeg2000": "1.2.840.10008.1.2.4.90",
        "padded": "1.2.840.10008.1.2.1",
    }[syntax]
    assert read(data).file_meta.TransferSyntaxUID == expected_syntax


def test_re_encodings_have_distinct_file_digests() -> None:
    ds = ct()
    files = {fingerprint_bytes(encode(ds, s)).file for s in LOSSLESS_SYNTAXES if s != "jpeg2000"}
    assert len(files) == len(LOSSLESS_SYNTAXES) - 1


def test_bundled_deflated_file_matches_its_explicit_re_encoding() -> None:
    data = bundled_bytes("image_dfl.dcm")
    ds = read(data)
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.1.99"
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    original, plain = fingerprint_bytes(data), fingerprint_bytes(save(ds))
    assert (plain.pixel, plain.meta) == (original.pixel, original.meta)
    assert plain.file != original.file


@pytest.mark.parametrize(
    "family",
    [
        ("rtdose.dcm", "rtdose_expb.dcm", "rtdose_rle.dcm"),
        ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm"),
        ("SC_rgb_rle.dcm", "SC_rgb_jpeg_gdcm.dcm"),  # RLE vs lossless JPEG
        ("liver_1frame.dcm", "liver_expb_1frame.dcm"),  # 1-bit masks
    ],
    ids=["rtdose-15-frames", "rgb-odd", "rgb-rle-vs-jpeg-lossless", "1-bit"],
)
def test_bundled_multi_frame_colour_and_1_bit_families(family: tuple[str, ...]) -> None:
    prints = [fingerprint_bytes(bundled_bytes(name)) for name in family]
    assert len({fp.pixel for fp in prints}) == 1
    assert prints[0].pixel is not None
    assert len({fp.meta for fp in prints}) == 1
    assert len({fp.file for fp in prints}) == len(family)


def test_multi_frame_digest_binds_every_frame() -> None:
    data = bundled_bytes("rtdose.dcm")
    fp, info = fingerprint_dataset(read_dataset(data), data)
    assert info is not None
    assert info.frames == 15
    assert (info.geometry.rows, info.geometry.columns) == (10, 10)
    assert fp.pixel is not None


def test_swapping_two_frames_changes_the_pixel_digest_only() -> None:
    data = bundled_bytes("rtdose.dcm")
    ds = read(data)
    frame_bytes = int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated) // 8
    pixels = bytearray(ds.PixelData)
    first, second = pixels[:frame_bytes], pixels[frame_bytes : 2 * frame_bytes]
    assert first != second
    pixels[:frame_bytes], pixels[frame_bytes : 2 * frame_bytes] = second, first
    ds.PixelData = bytes(pixels)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    before, after = fingerprint_bytes(data), fingerprint_bytes(save(ds, implicit=True))
    assert after.pixel != before.pixel
    assert after.meta == before.meta


def test_colour_planar_configuration_does_not_change_the_digests() -> None:
    data = bundled_bytes("SC_rgb_small_odd.dcm")
    ds = read(data)
    assert (ds.SamplesPerPixel, ds.PlanarConfiguration, ds.BitsAllocated) == (3, 0, 8)
    rows, columns = int(ds.Rows), int(ds.Columns)
    interleaved = np.frombuffer(ds.PixelData, np.uint8)[: rows * columns * 3]
    planar = interleaved.reshape(rows, columns, 3).transpose(2, 0, 1).tobytes()
    ds.PixelData = planar + b"\x00" * (len(planar) % 2)
    ds.PlanarConfiguration = 1
    before, after = fingerprint_bytes(data), fingerprint_bytes(save(ds))
    assert (after.pixel, after.meta) == (before.pixel, before.meta)


def test_colour_multi_frame_rle_matches_its_decompressed_copy() -> None:
    data = bundled_bytes("SC_rgb_rle_2frame.dcm")
    ds = read(data)
    ds.decompress(generate_instance_uid=False)
    before, after = fingerprint_bytes(data), fingerprint_bytes(save(ds))
    assert (after.pixel, after.meta) == (before.pixel, before.meta)


@pytest.mark.parametrize("syntax", ["rle", "jpeg2000"])
def test_colour_re_encoded_by_pydicom_keeps_pixel_and_meta(syntax: str) -> None:
    """JPEG 2000 stores RGB with the reversible colour transform; the digests do not see it."""
    ds = read(bundled_bytes("SC_rgb_rle.dcm"))
    ds.decompress(generate_instance_uid=False)
    native = fingerprint_bytes(save(ds))
    again = fingerprint_bytes(encode(ds, syntax))
    assert (again.pixel, again.meta) == (native.pixel, native.meta)
    assert native.pixel == fingerprint_bytes(bundled_bytes("SC_rgb_rle.dcm")).pixel


def test_bits_above_bits_stored_are_ignored_signed() -> None:
    ds = ct()
    clean = ct_pixels(ds).view("<u2")
    dirty = copy.deepcopy(ds)
    dirty.PixelData = ((clean & 0x0FFF) | 0xA000).astype("<u2").tobytes()
    assert dirty.PixelData != ds.PixelData
    assert _pixel(save(dirty)) == _pixel(save(ds)) == _pixel(encode(ds, "rle"))


def test_bits_above_bits_stored_are_ignored_unsigned() -> None:
    ds = ct()
    ds.PixelRepresentation = 0
    unsigned = (ct_pixels(ds).astype(np.int32) + 1024).astype("<u2")
    assert int(unsigned.max()) < 1 << 12
    ds.PixelData = unsigned.tobytes()
    dirty = copy.deepcopy(ds)
    dirty.PixelData = (unsigned | 0xF000).astype("<u2").tobytes()
    assert _pixel(save(dirty)) == _pixel(save(ds))


def test_identical_synthetic_instances_fingerprint_identically() -> None:
    assert fingerprint_bytes(save(ct())) == fingerprint_bytes(save(ct()))
    assert fingerprint_bytes(save(ct())) != fingerprint_bytes(save(ct(seed=2)))


# --------------------------------------------------------------------------- sensitivity


@pytest.mark.parametrize("syntax", ["explicit", "big-endian", "rle", "jpeg2000"])
def test_one_pixel_change_changes_the_pixel_digest_only(syntax: str) -> None:
    ds = ct()
    values = ct_pixels(ds)
    values[7 * 32 + 9] += 1
    changed = with_pixels(ds, values)
    before, after = fingerprint_bytes(save(ds)), fingerprint_bytes(encode(changed, syntax))
    assert after.pixel != before.pixel
    assert after.meta == before.meta
    # The change is the same change in every encoding.
    assert after.pixel == fingerprint_bytes(save(changed)).pixel


@settings(max_examples=25)
@given(index=st.integers(0, 32 * 32 - 1), delta=st.integers(-100, 100).filter(bool))
def test_any_single_sample_change_is_detected(index: int, delta: int) -> None:
    ds = ct()
    values = ct_pixels(ds)
    old = int(values[index])
    new = max(-2048, min(2047, old + delta))
    if new == old:
        new = old - delta if -2048 <= old - delta <= 2047 else old
    assert new != old
    values[index] = new
    assert _pixel(save(with_pixels(ds, values))) != _pixel(save(ds))


def _edit(kind: str, ds: Dataset) -> None:
    if kind == "slice-thickness":
        ds.SliceThickness = "1.3"
    elif kind == "ds-in-multi-value":
        ds.PixelSpacing = ["0.625", "0.626"]
    elif kind == "patient-name":
        ds.PatientName = "SYNTHETIC^0002"
    elif kind == "nested-item":
        ds.DeidentificationMethodCodeSequence[0].CodeMeaning = "Another meaning"
    elif kind == "added":
        ds.SeriesDescription = "AXIAL"
    elif kind == "removed":
        del ds.StudyDate
    elif kind == "empty-value":
        ds.StudyDate = ""
    else:
        raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    [
        "slice-thickness",
        "ds-in-multi-value",
        "patient-name",
        "nested-item",
        "added",
        "removed",
        "empty-value",
    ],
)
def test_one_attribute_change_changes_the_meta_digest_only(kind: str) -> None:
    ds = ct()
    changed = copy.deepcopy(ds)
    _edit(kind, changed)
    before, after = fingerprint_bytes(save(ds)), fingerprint_bytes(save(changed))
    assert after.meta != before.meta
    assert after.pixel == before.pixel
    # ... and it is the same change in another encoding.
    assert fingerprint_bytes(encode(changed, "implicit")).meta == after.meta


# --------------------------------------------------------------------------- lossy copies


def test_bundled_lossy_and_lossless_pair_are_different_images() -> None:
    lossless = inspect_bytes(bundled_bytes("SC_rgb_jpeg_gdcm.dcm"))
    lossy = inspect_bytes(bundled_bytes("SC_rgb_jpeg_lossy_gdcm.dcm"))
    assert lossless.geometry is not None
    assert lossy.geometry is not None
    assert (lossless.geometry.rows, lossless.geometry.columns) == (100, 100)
    assert (lossy.geometry.rows, lossy.geometry.columns) == (100, 100)
    assert lossless.fingerprint.pixel != lossy.fingerprint.pixel
    assert lossless.fingerprint.sop_instance_uid != lossy.fingerprint.sop_instance_uid
    assert (lossless.lossy, lossy.lossy) == (False, True)


def test_lossy_copy_of_the_same_instance_is_recorded_as_lossy_not_as_a_match() -> None:
    ds = ct(rows=64, columns=64)
    lossy = copy.deepcopy(ds)
    compress: Any = lossy.compress
    try:
        compress(JPEG2000, generate_instance_uid=False, j2k_cr=[40])
    except Exception as exc:
        pytest.skip(f"pydicom cannot encode lossy JPEG 2000 here: {exc}")
    lossy.LossyImageCompression = "01"  # PS3.3 C.7.6.1.1.5, as a conformant encoder sets it
    original = inspect_bytes(save(ds))
    derived = inspect_bytes(save(lossy))
    assert derived.fingerprint.pixel != original.fingerprint.pixel
    assert (original.lossy, derived.lossy) == (False, True)
    assert _pixel(encode(ds, "jpeg2000")) == original.fingerprint.pixel  # lossless does match


def test_a_lossy_only_transfer_syntax_is_lossy_even_without_the_attribute() -> None:
    ds = read(bundled_bytes("SC_rgb_jpeg_dcmtk.dcm"))
    assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    assert inspect_bytes(save(ds)).lossy
    del ds.LossyImageCompression
    assert inspect_bytes(save(ds)).lossy


#: Every transfer syntax PS3.6 Table A-1 lists that can only hold lossy data, written
#: out here from the standard (not from the code's table).
ALWAYS_LOSSY: Final = (
    *(f"1.2.840.10008.1.2.4.{n}" for n in (50, 51, 52, 53, 54, 55, 56, 59, 60, 61, 62, 63, 64)),
    "1.2.840.10008.1.2.4.81",  # JPEG-LS near-lossless
    "1.2.840.10008.1.2.4.100",  # MPEG2 MP@ML
    "1.2.840.10008.1.2.4.100.1",
    "1.2.840.10008.1.2.4.101",  # MPEG2 MP@HL
    "1.2.840.10008.1.2.4.101.1",
    *(f"1.2.840.10008.1.2.4.{n}{f}" for n in range(102, 107) for f in ("", ".1")),  # H.264
    "1.2.840.10008.1.2.4.107",  # HEVC/H.265 Main
    "1.2.840.10008.1.2.4.108",  # HEVC/H.265 Main 10
    "1.2.840.10008.1.2.4.111",  # JPEG XL JPEG Recompression (of a lossy JPEG)
)
#: Syntaxes that are, or may be, lossless: never lossy by their UID alone.
NOT_LOSSY_BY_UID: Final = (
    "1.2.840.10008.1.2",
    "1.2.840.10008.1.2.1",
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.2",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.110",
    "1.2.840.10008.1.2.4.201",
    "1.2.840.10008.1.2.4.203",
    "1.2.840.10008.1.2.5",
)


def _labelled(syntax: str, flag: str | None) -> Dataset:
    """A dataset with only a transfer syntax and, unless ``None``, (0028,2110)."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = UID(syntax)
    if flag is not None:
        ds.LossyImageCompression = flag
    return ds


@pytest.mark.parametrize("syntax", ALWAYS_LOSSY)
def test_every_lossy_only_transfer_syntax_is_lossy_whatever_the_attribute_says(
    syntax: str,
) -> None:
    assert syntax in LOSSY_TRANSFER_SYNTAXES
    for flag in (None, "", "00", "01"):
        assert is_lossy(_labelled(syntax, flag)), flag


@pytest.mark.parametrize("syntax", NOT_LOSSY_BY_UID)
def test_a_syntax_that_may_be_lossless_follows_the_attribute(syntax: str) -> None:
    assert syntax not in LOSSY_TRANSFER_SYNTAXES
    assert is_lossy(_labelled(syntax, "01"))
    assert not is_lossy(_labelled(syntax, "00"))


def test_jpeg_xl_without_the_attribute_counts_as_lossy() -> None:
    """Its codestream is not read here, so "may be lossy" and unstated is lossy."""
    assert is_lossy(_labelled("1.2.840.10008.1.2.4.112", None))
    assert not is_lossy(_labelled("1.2.840.10008.1.2.4.112", "00"))
    assert not is_lossy(_labelled("1.2.840.10008.1.2.4.110", None))  # JPEG XL Lossless


def _without_flag(name: str) -> bytes:
    ds = read(bundled_bytes(name))
    if "LossyImageCompression" in ds:
        del ds.LossyImageCompression
    return save(ds)


@pytest.mark.parametrize(
    ("name", "lossy"),
    [
        ("JPEG2000.dcm", True),  # .91, 9-7 irreversible
        ("SC_rgb_gdcm_KY.dcm", False),  # .91, 5-3 reversible
        ("MR_small_jp2klossless.dcm", False),  # .90
        ("examples_jpeg2k.dcm", False),  # .90
    ],
)
def test_bundled_jpeg_2000_without_the_attribute_is_judged_by_its_codestream(
    name: str, lossy: bool
) -> None:
    assert inspect_bytes(_without_flag(name)).lossy is lossy


def test_the_attribute_saying_lossy_wins_over_a_reversible_codestream() -> None:
    """693_J2KI.dcm is 5-3 reversible with layers dropped: only (0028,2110) = 01 tells."""
    ds = read(bundled_bytes("693_J2KI.dcm"))
    assert ds.LossyImageCompression == "01"
    assert inspect_bytes(bundled_bytes("693_J2KI.dcm")).lossy


def _lossy_jpeg_2000(ds: Dataset) -> Dataset:
    lossy = copy.deepcopy(ds)
    compress: Any = lossy.compress
    try:
        compress(JPEG2000, generate_instance_uid=False, j2k_cr=[40])
    except Exception as exc:
        pytest.skip(f"pydicom cannot encode lossy JPEG 2000 here: {exc}")
    assert "LossyImageCompression" not in lossy  # pydicom does not set it: the case at hand
    return lossy


@pytest.mark.parametrize("syntax", [JPEG2000, HTJ2K, JPEG2000Lossless, HTJ2KLossless])
def test_an_irreversible_codestream_is_lossy_in_any_jpeg_2000_syntax(syntax: str) -> None:
    lossy = _lossy_jpeg_2000(ct(rows=64, columns=64))
    lossy.file_meta.TransferSyntaxUID = UID(syntax)
    assert inspect_bytes(save(lossy)).lossy
    lossy.LossyImageCompression = "00"  # a wrong attribute does not hide it
    assert inspect_bytes(save(lossy)).lossy


@pytest.mark.parametrize("syntax", [JPEG2000, HTJ2K])
def test_a_reversible_codestream_in_a_lossy_or_lossless_syntax_is_lossless(syntax: str) -> None:
    ds = ct(rows=64, columns=64)
    lossless = read(encode(ds, "jpeg2000"))
    lossless.file_meta.TransferSyntaxUID = UID(syntax)
    instance = inspect_bytes(save(lossless))
    assert not instance.lossy
    assert instance.fingerprint.pixel == _pixel(save(ds))


def test_an_unreadable_codestream_in_a_lossy_or_lossless_syntax_counts_as_lossy() -> None:
    ds = _labelled(str(JPEG2000), None)
    ds.NumberOfFrames = 1
    ds.PixelData = encapsulate([b"\x00" * 64])
    assert is_lossy(ds)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless  # lossless only: trusted
    assert not is_lossy(ds)


# --------------------------------------------------------------------------- records


@pytest.mark.parametrize("name", ["rtplan.dcm", "test-SR.dcm"])
def test_instances_without_pixel_data_have_no_pixel_digest(name: str) -> None:
    fp = fingerprint_bytes(bundled_bytes(name))
    assert fp.pixel is None
    assert fp.to_json()["pixel"] is None
    assert fp.leaf().pixel is None
    assert fp.leaf().encode()  # a valid leaf without pixel digest


def test_fingerprint_json_and_leaf() -> None:
    fp = fingerprint_bytes(bundled_bytes("MR_small.dcm"))
    assert fp.to_json() == {
        "sop_instance_uid": MR_SMALL_SOP,
        "pixel": MR_SMALL_PIXEL,
        "meta": MR_SMALL_META,
        "file": fp.file.hex(),
    }
    leaf = fp.leaf()
    assert (leaf.sop_instance_uid, leaf.pixel, leaf.meta, leaf.file) == (
        fp.sop_instance_uid,
        fp.pixel,
        fp.meta,
        fp.file,
    )
    assert len({fp.pixel, fp.meta, fp.file}) == 3
