"""Damaged and foreign input: every defect is a typed ImagingError with a stable code.

Never another exception (a crash would stop a whole scan), never a silent
success on a damaged file, and never a long stall on a huge declared length.
"""

from __future__ import annotations

import random
import struct
import tempfile
import time
from pathlib import Path
from typing import Final

import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import UID

from imaging.deid import GatePolicy
from imaging.errors import ImagingError
from imaging.fingerprint import (
    MAX_REASON_CHARS,
    describe,
    fingerprint_bytes,
    fingerprint_file,
    read_file,
)
from imaging.inspect import Problem, inspect_bytes, inspect_safely
from imaging.scan import scan
from tests.imaging.conftest import (
    LOSSLESS_SYNTAXES,
    bundled,
    bundled_bytes,
    ct,
    element_at,
    encode,
    explicit_le_elements,
    patch_u32,
    read,
    save,
)

CODES: Final = frozenset(
    {
        "not_dicom",
        "truncated",
        "malformed",
        "missing_attribute",
        "undecodable_pixels",
        "too_large",
        "unreadable",
        "worker_died",
    }
)
HUGE: Final = 0xFFFFFFF0
#: Damaged and invalid values make pydicom warn; the tests look at the errors instead.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
BITS_ALLOCATED: Final = 0x00280100


def _error(data: bytes) -> ImagingError:
    """The typed error ``data`` raises; fails the test on success or any other exception."""
    with pytest.raises(ImagingError) as caught:
        fingerprint_bytes(data)
    error = caught.value
    assert error.code in CODES
    assert error.message
    assert str(error) == error.message
    return error


def _error_with(data: bytes, *, max_pixel_bytes: int) -> ImagingError:
    with pytest.raises(ImagingError) as caught:
        fingerprint_bytes(data, max_pixel_bytes)
    assert caught.value.code in CODES
    return caught.value


def _write(data: bytes) -> str:
    path = Path(tempfile.mkdtemp()) / "instance.dcm"
    path.write_bytes(data)
    return str(path)


def _small_ct_file() -> bytes:
    return save(ct(rows=16, columns=16))


# --------------------------------------------------------------------------- not DICOM


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"hello, this is a text file\n" * 10,
        random.Random(20240601).randbytes(4096),
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 200,
        b"\x00" * 128 + b"DICX" + b"\x00" * 64,
        b"\x00" * 100,
    ],
    ids=["empty", "text", "random", "png", "wrong-magic", "short-zeros"],
)
def test_not_dicom(data: bytes) -> None:
    assert _error(data).code == "not_dicom"


def test_a_dataset_without_part_10_header_is_not_dicom() -> None:
    assert _error(bundled_bytes("no_meta.dcm")).code == "not_dicom"


def test_a_file_meta_without_transfer_syntax_is_malformed() -> None:
    assert _error(b"\x00" * 128 + b"DICM").code == "malformed"


def test_files_on_disk(tmp_path: Path) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image\n")
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    for path in (text, empty):
        with pytest.raises(ImagingError) as caught:
            fingerprint_file(path)
        assert caught.value.code == "not_dicom"


@pytest.mark.parametrize("kind", ["directory", "missing"])
def test_unreadable_paths(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "folder" if kind == "directory" else tmp_path / "nowhere.dcm"
    if kind == "directory":
        path.mkdir()
    for call in (read_file, fingerprint_file):
        with pytest.raises(ImagingError) as caught:
            call(path)
        assert caught.value.code == "unreadable"
    problem = inspect_safely(str(path), policy=GatePolicy())
    assert isinstance(problem, Problem)
    assert problem.code == "unreadable"
    assert problem.to_json() == {
        "path": str(path),
        "error": "unreadable",
        "message": problem.message,
    }


# --------------------------------------------------------------------------- truncation


def test_bundled_truncated_file() -> None:
    error = _error(bundled_bytes("MR_truncated.dcm"))
    assert error.code == "truncated"
    assert "(7FE0,0010)" in error.message


@pytest.mark.parametrize("syntax", LOSSLESS_SYNTAXES)
def test_no_prefix_raises_anything_but_an_imaging_error(syntax: str) -> None:
    """Every cut point of a small file, in every encoding: a typed error or a value."""
    ds = ct() if syntax == "jpeg2000" else ct(rows=16, columns=16)
    data = encode(ds, syntax)
    codes = set()
    for cut in range(len(data)):
        try:
            fingerprint_bytes(data[:cut])
        except ImagingError as exc:
            codes.add(exc.code)
        except Exception as exc:
            pytest.fail(f"cut at {cut} of {len(data)} ({syntax}): {type(exc).__name__}: {exc}")
    assert codes <= CODES
    assert "truncated" in codes or syntax == "deflated"  # see test_truncation_is_reported_...


def test_a_cut_inside_any_element_value_is_refused() -> None:
    data = _small_ct_file()
    sop_end = sum(element_at(data, 0x00080018))  # offset + header + length
    for tag, offset, header, length in explicit_le_elements(data):
        start = offset + header
        for cut in range(start + 1, start + length):
            error = _error(data[:cut])
            if start > sop_end:  # once the SOP Instance UID is read, the cut itself is named
                assert error.code == "truncated", f"({tag >> 16:04X},{tag & 0xFFFF:04X}) {cut}"


def test_a_cut_anywhere_after_bits_allocated_is_refused() -> None:
    data = _small_ct_file()
    offset, header, length = element_at(data, BITS_ALLOCATED)
    for cut in range(offset + header + length, len(data)):
        _error(data[:cut])


def test_a_cut_in_the_preamble_or_file_meta_is_refused() -> None:
    data = _small_ct_file()
    (meta_length,) = struct.unpack_from("<I", data, 140)
    for cut in range(144 + meta_length):
        _error(data[:cut])


def test_a_cut_inside_an_element_header_is_refused() -> None:
    data = _small_ct_file()
    offset, _, _ = element_at(data, 0x00080020)  # Study Date
    assert _error(data[: offset + 4]).code == "truncated"


@pytest.mark.parametrize("where", ["length-field", "deflated"])
def test_truncation_is_reported_as_truncated_not_malformed(where: str) -> None:
    if where == "length-field":
        data = _small_ct_file()
        offset, header, _ = element_at(data, 0x7FE00010)
        assert header == 12
        cuts = range(offset + 8, offset + 12)
    else:
        data = encode(ct(rows=16, columns=16), "deflated")
        (meta_length,) = struct.unpack_from("<I", data, 140)
        cuts = range(144 + meta_length + 1, len(data), 7)
    codes = {_error(data[:cut]).code for cut in cuts}
    assert "malformed" not in codes


def test_a_cut_between_the_image_attributes_is_refused() -> None:
    data = _small_ct_file()
    offset, _, _ = element_at(data, BITS_ALLOCATED)
    assert _error(data[:offset]).code == "truncated"


def test_every_strict_prefix_of_an_image_is_refused() -> None:
    data = _small_ct_file()
    accepted = []
    for cut in range(len(data)):
        try:
            fingerprint_bytes(data[:cut])
        except ImagingError:
            continue
        accepted.append(cut)
    assert accepted == []


# --------------------------------------------------------------------------- huge lengths


def _implicit_length_at(data: bytes, tag: int) -> int:
    """Offset of the 4-byte length of a top-level element in an implicit VR file."""
    marker = struct.pack("<HH", tag >> 16, tag & 0xFFFF)
    return data.index(marker, 132 + 12) + 4


def _huge(kind: str) -> bytes:
    if kind.startswith("implicit"):
        data = encode(ct(rows=16, columns=16), "implicit")
        tag = {
            "implicit-patient-name": 0x00100010,
            "implicit-sop-uid": 0x00080018,
            "implicit-sequence": 0x00120064,
            "implicit-pixel-data": 0x7FE00010,
        }[kind]
        return patch_u32(data, _implicit_length_at(data, tag), HUGE)
    data = _small_ct_file()
    tag = {"pixel-data": 0x7FE00010, "sequence": 0x00120064}[kind]
    offset, _, _ = element_at(data, tag)
    return patch_u32(data, offset + 8, HUGE)


@pytest.mark.parametrize(
    "kind",
    [
        "pixel-data",
        "sequence",
        "implicit-patient-name",
        "implicit-sop-uid",
        "implicit-sequence",
        "implicit-pixel-data",
    ],
)
def test_a_huge_declared_length_is_a_quick_typed_error(kind: str) -> None:
    data = _huge(kind)
    started = time.perf_counter()
    error = _error(data)
    assert time.perf_counter() - started < 2.0
    assert error.code == "truncated"
    assert str(HUGE) in error.message


def _first_item(data: bytes, after: int) -> int:
    return data.index(b"\xfe\xff\x00\xe0", after)


def test_a_huge_basic_offset_table_length_is_a_typed_error() -> None:
    data = bundled_bytes("MR_small_jp2klossless.dcm")
    table = _first_item(data, data.index(b"\xe0\x7f\x10\x00"))
    started = time.perf_counter()
    error = _error(patch_u32(data, table + 4, HUGE))
    assert time.perf_counter() - started < 2.0
    assert error.code in {"undecodable_pixels", "truncated", "malformed"}


@pytest.mark.parametrize("kind", ["explicit-sequence-item", "implicit-sequence-item", "fragment"])
def test_a_huge_item_length_is_a_typed_error(kind: str) -> None:
    if kind == "fragment":
        data = bundled_bytes("MR_small_jp2klossless.dcm")
        table = _first_item(data, data.index(b"\xe0\x7f\x10\x00"))
        fragment = _first_item(data, table + 8)
        patched = patch_u32(data, fragment + 4, HUGE)
    elif kind == "explicit-sequence-item":
        data = _small_ct_file()
        offset, header, _ = element_at(data, 0x00120064)
        patched = patch_u32(data, offset + header + 4, HUGE)
    else:
        data = encode(ct(rows=16, columns=16), "implicit")
        patched = patch_u32(data, _implicit_length_at(data, 0x00120064) + 8, HUGE)
    assert patched != data
    _error(patched)


# --------------------------------------------------------------------------- pixel data


@pytest.mark.parametrize(("at", "size"), [(0, 4), (60, 100)], ids=["marker", "header"])
def test_a_corrupt_jpeg_2000_codestream_is_undecodable(at: int, size: int) -> None:
    data = bytearray(bundled_bytes("MR_small_jp2klossless.dcm"))
    start = data.index(b"\xff\x4f\xff\x51")  # SOC, SIZ: the codestream's main header
    for index in range(start + at, start + at + size):
        data[index] ^= 0x5A
    assert _error(bytes(data)).code in {"undecodable_pixels", "truncated"}


def test_a_decoder_failure_keeps_the_decoders_reason_on_one_line() -> None:
    """pydicom puts the reason on the lines after "...raised by all available plugins:"."""
    data = bytearray(bundled_bytes("MR_small_jp2klossless.dcm"))
    start = data.index(b"\xff\x4f\xff\x51")
    for index in range(start, start + 4):
        data[index] ^= 0x5A
    error = _error(bytes(data))
    assert error.code == "undecodable_pixels"
    assert "all available plugins: pylibjpeg: " in error.message
    assert not error.message.rstrip().endswith(":")
    assert "\n" not in error.message


def test_an_error_description_is_one_bounded_printable_line() -> None:
    many = RuntimeError("first line:\n  plugin a: bad\r\n\tplugin b:\x1b[31m worse\n\n")
    assert describe(many) == "RuntimeError: first line: plugin a: bad plugin b: [31m worse"
    long = describe(ValueError("x" * 10_000))
    assert len(long) == MAX_REASON_CHARS
    assert long.startswith("ValueError: xxx")
    assert long.endswith("...")
    assert describe(KeyError()) == "KeyError"


def test_a_transfer_syntax_without_decoder_is_undecodable() -> None:
    error = _error(bundled_bytes("JPEG-lossy.dcm"))  # 12-bit JPEG extended: no decoder here
    assert error.code == "undecodable_pixels"


def _encapsulated_as(syntax: str) -> bytes:
    """A small CT whose file meta names ``syntax`` over one encapsulated fragment.

    Written as HTJ2K lossless (a UID of the same padded length), then relabelled in
    place, since pydicom refuses to write a transfer syntax it does not know."""
    carrier = "1.2.840.10008.1.2.4.201"
    ds = ct()
    ds.file_meta.TransferSyntaxUID = UID(carrier)
    ds.PixelData = encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    data = save(ds)
    old, new = carrier.encode() + b"\0", syntax.encode().ljust(24, b"\0")
    assert len(old) == len(new) == 24
    assert data.count(old) == 1
    return data.replace(old, new)


@pytest.mark.parametrize(
    ("syntax", "code"),
    [
        ("1.2.840.10008.1.2.4.100", "undecodable_pixels"),  # MPEG2 MP@ML
        ("1.2.840.10008.1.2.4.102", "undecodable_pixels"),  # MPEG-4 AVC/H.264
        ("1.2.840.10008.1.2.4.107", "undecodable_pixels"),  # HEVC/H.265 Main
        ("1.2.840.10008.1.2.4.108", "undecodable_pixels"),  # HEVC/H.265 Main 10
        ("1.2.840.10008.1.2.4.110", "malformed"),  # JPEG XL Lossless: unknown to pydicom
        ("1.2.840.10008.1.2.4.111", "malformed"),  # JPEG XL JPEG Recompression
        ("1.2.840.10008.1.2.4.112", "malformed"),  # JPEG XL
    ],
)
def test_video_and_jpeg_xl_files_are_refused_per_file(syntax: str, code: str) -> None:
    """pydicom has no decoder for these, so there is no pixel digest to give."""
    error = _error(_encapsulated_as(syntax))
    assert error.code == code
    assert syntax in error.message


@pytest.mark.parametrize("syntax", ["explicit", "big-endian"])
def test_pixel_data_shorter_than_the_image_is_truncated(syntax: str) -> None:
    ds = ct(rows=16, columns=16)
    ds.Rows = 20
    error = _error(encode(ds, syntax))
    assert error.code == "truncated"
    assert "less than expected" in error.message


def _claiming(syntax: str, *, rows: int = 65535, samples: int = 1, frames: int = 1) -> bytes:
    """A small image re-encoded in ``syntax``, then made to claim a huge geometry."""
    ds = ct()  # 32 x 32: the least pydicom's JPEG 2000 encoder takes
    if samples == 3:
        ds.SamplesPerPixel = 3
        ds.PhotometricInterpretation = "RGB"
        ds.PlanarConfiguration = 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = bytes(range(256)) * 12
    d = read(encode(ds, syntax))
    d.Rows = d.Columns = rows
    if frames > 1:
        d.NumberOfFrames = frames
    return save(d, little=d.file_meta.TransferSyntaxUID.is_little_endian)


@pytest.mark.parametrize("samples", [1, 3], ids=["grey", "rgb"])
@pytest.mark.parametrize("syntax", ["rle", "jpeg2000", "explicit", "big-endian"])
def test_a_huge_declared_image_is_refused_before_decoding(syntax: str, samples: int) -> None:
    """7.8 KB of RLE claiming 65535 x 65535 once made pydicom allocate 8 GB (23 s)."""
    data = _claiming(syntax, samples=samples)
    assert len(data) < 16_000
    started = time.perf_counter()
    error = _error(data)
    assert time.perf_counter() - started < 1.0
    assert error.code == "too_large"
    assert "65535 x 65535" in error.message
    assert "limit of 2.0 GiB" in error.message


def test_frames_multiply_the_declared_size() -> None:
    error = _error(_claiming("rle", rows=4096, frames=100_000))
    assert error.code == "too_large"
    assert "100000 frame(s)" in error.message


def test_the_limit_is_a_parameter() -> None:
    data = _small_ct_file()  # 16 x 16 x 2 bytes = 512 decoded
    assert fingerprint_bytes(data, max_pixel_bytes=512).pixel is not None
    error = _error_with(data, max_pixel_bytes=511)
    assert error.code == "too_large"
    assert "limit of 511 bytes" in error.message
    problem = inspect_safely(_write(data), GatePolicy(), max_pixel_bytes=511)
    assert isinstance(problem, Problem)
    assert problem.code == "too_large"


def test_rle_data_cannot_claim_more_than_64_times_its_length() -> None:
    """Under the limit, but more than PackBits can expand to: refused without decoding."""
    error = _error(_claiming("rle", rows=4000))
    assert error.code == "too_large"
    assert "bytes of RLE data can hold at most" in error.message


@pytest.mark.parametrize("syntax", ["explicit", "big-endian", "deflated"])
def test_native_pixel_data_shorter_than_the_declared_image_is_truncated_at_once(
    syntax: str,
) -> None:
    error = _error(_claiming(syntax, rows=20_000))  # 800 MB declared, under the limit
    assert error.code == "truncated"
    assert "less than expected (800000000)" in error.message


def test_frames_missing_from_a_multi_frame_image_are_truncated() -> None:
    ds = ct(rows=16, columns=16)
    ds.NumberOfFrames = 2
    assert _error(save(ds)).code == "truncated"


def test_image_attributes_without_pixel_data_are_truncated() -> None:
    ds = ct(rows=16, columns=16)
    del ds.PixelData
    error = _error(save(ds))
    assert error.code == "truncated"
    assert "pixel data is missing" in error.message


# --------------------------------------------------------------------------- attributes


@pytest.mark.parametrize(
    "uid", [None, "1.2.abc", "1." + "2" * 70, "1..2"], ids=["absent", "letters", "long", "empty"]
)
def test_a_missing_or_invalid_sop_instance_uid(uid: str | None) -> None:
    ds = ct(rows=16, columns=16)
    if uid is None:
        del ds.SOPInstanceUID
    else:
        ds.SOPInstanceUID = uid
    error = _error(save(ds))
    assert error.code == "missing_attribute"


def test_bundled_files_without_sop_instance_uid() -> None:
    assert _error(bundled_bytes("priv_SQ.dcm")).code == "missing_attribute"


def test_a_missing_pixel_attribute() -> None:
    ds = ct(rows=16, columns=16)
    del ds.Rows
    error = _error(save(ds))
    assert error.code == "missing_attribute"
    assert "Rows" in error.message


# --------------------------------------------------------------------------- fuzz


@pytest.mark.parametrize("syntax", ["explicit", "implicit", "big-endian", "deflated", "rle"])
def test_random_byte_corruption_never_escapes_as_another_exception(syntax: str) -> None:
    seed = 0x5EED + LOSSLESS_SYNTAXES.index(syntax)
    rng = random.Random(seed)
    data = encode(ct(rows=16, columns=16), syntax)
    for case in range(150):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(132, len(mutated))] = rng.randrange(256)
        try:
            fingerprint_bytes(bytes(mutated))
        except ImagingError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} (reproduce with seed={seed}, case={case})")


def test_random_corruption_through_inspect_and_scan(tmp_path: Path) -> None:
    """The whole per-file path (fingerprint, gate, summary facts) on damaged files."""
    seed = 0xC0FFEE
    rng = random.Random(seed)
    data = _small_ct_file()
    paths = []
    for case in range(60):
        mutated = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(132, len(mutated))] = rng.randrange(256)
        try:
            inspect_bytes(bytes(mutated))
        except ImagingError:
            pass
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__}: {exc} (reproduce with seed={seed}, case={case})")
        path = tmp_path / f"case{case:02d}.dcm"
        path.write_bytes(bytes(mutated))
        paths.append(str(path))
    results = list(scan(paths, jobs=1))
    assert [r.path for r in results] == paths
    assert all(r.code in CODES for r in results if isinstance(r, Problem))


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("nested_priv_SQ.dcm", "missing_attribute"),
        ("test-SR.dcm", None),
        ("rtplan.dcm", None),
        ("JPEG2000.dcm", None),
        ("SC_rgb_gdcm_KY.dcm", None),
    ],
)
def test_other_bundled_files_fingerprint_or_fail_typed(name: str, code: str | None) -> None:
    if code is None:
        fingerprint_file(bundled(name))
    else:
        with pytest.raises(ImagingError) as caught:
            fingerprint_file(bundled(name))
        assert caught.value.code == code
