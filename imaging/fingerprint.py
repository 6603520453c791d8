"""Encoding-invariant DICOM fingerprints: ``pixel``, ``meta`` and ``file`` digests.

Each digest is SHA-256 over a domain tag (ASCII, NUL-terminated, versioned) and
then the bytes it covers, so a digest of one kind can never be passed off as
another and a future v2 cannot collide with v1:

* ``file  = SHA-256("radledger/dicom-file/v1\\0"  || exact file bytes)``
* ``meta  = SHA-256("radledger/dicom-meta/v1\\0"  || canonical_meta(dataset))``
  (:mod:`imaging.canonical`)
* ``pixel = SHA-256("radledger/dicom-pixel/v1\\0" || header || samples)`` where
  ``header`` is the canonical CBOR map of the attributes that define the decoded
  frames and ``samples`` are the decoded frames in (frame, row, column, sample)
  order, each sample little-endian, with the bits above BitsStored cleared
  (unsigned) or sign-extended (signed). Instances without pixel data have no
  pixel digest (``None``).

The same image stored in any lossless transfer syntax gives the same ``pixel``
and ``meta``; only ``file`` changes. docs/FINGERPRINT.md is the specification.
"""

from __future__ import annotations

import hashlib
import io
import re
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import numpy as np
import pydicom
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels.decoders.base import get_decoder
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    RLELossless,
)

from imaging import attributes
from imaging.canonical import canonical_meta
from imaging.errors import (
    ImagingError,
    MalformedError,
    MissingAttributeError,
    NotDicomError,
    TooLargeError,
    TruncatedError,
    UndecodablePixelsError,
    UnreadableFileError,
)
from ledger import codec
from ledger.errors import ValidationError
from ledger.manifest import Geometry, InstanceLeaf, check_uid

FILE_DOMAIN: Final = b"radledger/dicom-file/v1\x00"
META_DOMAIN: Final = b"radledger/dicom-meta/v1\x00"
PIXEL_DOMAIN: Final = b"radledger/dicom-pixel/v1\x00"

#: What a cut file makes pydicom (struct, zlib) say.
_TRUNCATION_HINTS: Final = (
    "unpack requires a buffer",
    "incomplete or truncated stream",
    "Error -5 while decompressing",
    "end of file",
)
_PIXEL_TAGS: Final = (0x7FE00010, 0x7FE00008, 0x7FE00009)  # (Float/Double Float) Pixel Data
#: The most decoded pixel bytes one instance may declare (all frames together),
#: checked before decoding: 2 GiB, above any CT, MR, mammography or tomosynthesis
#: instance, and a bound on what one worker process allocates for one frame.
DEFAULT_MAX_PIXEL_BYTES: Final = 2 * 1024**3
#: RLE (PS3.5 G.3.1) turns at best 2 bytes into 128 (a replicate run), so the
#: decoded frames can never be more than 64 times the encoded pixel data.
RLE_MAX_RATIO: Final = 64
_UNDEFINED_LENGTH: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class Fingerprint:
    """The three digests of one instance, keyed by its SOP Instance UID."""

    sop_instance_uid: str
    pixel: bytes | None
    meta: bytes
    file: bytes

    def leaf(self) -> InstanceLeaf:
        return InstanceLeaf(self.sop_instance_uid, self.pixel, self.meta, self.file)

    def to_json(self) -> dict[str, Any]:
        return {
            "sop_instance_uid": self.sop_instance_uid,
            "pixel": None if self.pixel is None else self.pixel.hex(),
            "meta": self.meta.hex(),
            "file": self.file.hex(),
        }


@dataclass(frozen=True, slots=True)
class PixelInfo:
    """What the pixel digest bound: the decoded frames' layout."""

    geometry: Geometry
    frames: int


def file_digest(data: bytes) -> bytes:
    digest = hashlib.sha256(FILE_DOMAIN)
    digest.update(data)  # no concatenated copy of a large file
    return digest.digest()


def meta_digest(ds: Dataset) -> bytes:
    return hashlib.sha256(META_DOMAIN + canonical_meta(ds)).digest()


def read_dataset(data: bytes) -> Dataset:
    """Parse a DICOM Part 10 file held in memory; typed errors for every defect."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            ds = pydicom.dcmread(io.BytesIO(data), force=False)
        except InvalidDicomError:
            raise NotDicomError(
                "not a DICOM file: no 128-byte preamble and 'DICM' prefix"
            ) from None
        except EOFError as exc:
            raise TruncatedError(f"the file ends early: {exc}") from None
        except Exception as exc:
            text = describe(exc)
            if any(hint in text for hint in _TRUNCATION_HINTS):
                raise TruncatedError(f"the file ends early: {text}") from None
            raise MalformedError(f"cannot parse the dataset: {text}") from None
    for warning in caught:
        text = str(warning.message).lower()
        if "end of file" in text:
            raise TruncatedError("the file ends inside a data element")
    try:
        if "TransferSyntaxUID" not in ds.file_meta:
            raise MalformedError("the file meta information has no Transfer Syntax UID")
        syntax = ds.file_meta.TransferSyntaxUID
        if not isinstance(syntax, UID) or not syntax.is_transfer_syntax:
            raise MalformedError(f"unknown transfer syntax {str(syntax)[:64]!r}")
        _check_structure(ds, data)
    except ImagingError:
        raise
    except Exception as exc:  # pydicom converts lazily and raises many types on damage
        raise MalformedError(f"cannot parse the dataset: {describe(exc)}") from None
    return ds


def _check_structure(ds: Dataset, data: bytes) -> None:
    """Catch what pydicom reads silently: a cut file, lengths larger than their container.

    pydicom clamps a value to the bytes that remain and stops quietly at a
    partial element header; both mean the file was cut or its lengths are wrong.
    """
    deflated = ds.file_meta.TransferSyntaxUID.is_deflated
    keys = list(ds.keys())
    last: object = ds.get_item(keys[-1]) if keys else None
    if isinstance(last, RawDataElement):
        _check_end(last, data, deflated)
    _check_items(ds, 0)


def _check_end(last: RawDataElement, data: bytes, deflated: bool) -> None:
    if last.length == _UNDEFINED_LENGTH:
        if not deflated and not data.endswith(_SEQUENCE_END[last.is_little_endian]):
            raise TruncatedError(f"the file ends before the end of element {last.tag}")
        return
    if isinstance(last.value, bytes) and len(last.value) < last.length:
        raise TruncatedError(
            f"element {last.tag} declares {last.length} bytes but the file holds {len(last.value)}"
        )
    if deflated:
        return
    end = last.value_tell + last.length
    if end < len(data):
        left = len(data) - end
        if left < 12:  # less than the longest element header: a header cut short
            raise TruncatedError(f"the file ends inside a data element ({left} bytes left)")
        raise MalformedError(f"{left} bytes after the last element cannot be read")


_SEQUENCE_END: Final = {
    True: b"\xfe\xff\xdd\xe0\x00\x00\x00\x00",
    False: b"\xff\xfe\xe0\xdd\x00\x00\x00\x00",
}
_ITEM: Final = {True: b"\xfe\xff\x00\xe0", False: b"\xff\xfe\xe0\x00"}


def _check_items(ds: Dataset, depth: int) -> None:
    """Every item (sequence items, pixel data fragments) must fit in what holds it."""
    if depth > 16:
        raise MalformedError("sequences are nested more than 16 deep")
    for tag in list(ds.keys()):
        raw: object = ds.get_item(tag)
        if not isinstance(raw, RawDataElement) or not isinstance(raw.value, bytes):
            continue
        value, little = raw.value, raw.is_little_endian
        if raw.VR not in ("SQ", None, "UN", "OB", "OW") or not value.startswith(_ITEM[little]):
            continue
        _check_item_lengths(raw.tag, value, little)


def _check_item_lengths(tag: int, value: bytes, little: bool) -> None:
    order: Literal["little", "big"] = "little" if little else "big"
    position = 0
    while position + 8 <= len(value):
        if value[position : position + 4] != _ITEM[little]:
            return  # not (or no longer) a run of items: nothing more to check here
        length = int.from_bytes(value[position + 4 : position + 8], order)
        if length == _UNDEFINED_LENGTH:
            return  # an undefined-length item is delimited, not counted
        if length > len(value) - position - 8:
            raise MalformedError(
                f"an item in element {BaseTag(tag)} declares {length} bytes, more than the "
                f"{len(value) - position - 8} that remain"
            )
        position += 8 + length


def sop_instance_uid(ds: Dataset) -> str:
    uid = str(_get(ds, "SOPInstanceUID", "", attributes.text)).strip(" \x00")
    try:
        check_uid("SOP Instance UID", uid)
    except ValidationError as exc:
        raise MissingAttributeError(str(exc) if uid else "no SOP Instance UID") from None
    return uid


#: Rows, Columns, Bits Allocated: present only with pixel data.
_IMAGE_PIXEL_TAGS: Final = (0x00280010, 0x00280011, 0x00280100)


def _is_image_class(ds: Dataset) -> bool:
    """Does the SOP class (from the file meta) require pixel data?"""
    uid = ds.file_meta.get("MediaStorageSOPClassUID")
    return isinstance(uid, UID) and "Image Storage" in uid.name


def has_pixels(ds: Dataset) -> bool:
    return any(tag in ds for tag in _PIXEL_TAGS)


def pixel_digest(
    ds: Dataset, max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES
) -> tuple[bytes, PixelInfo] | None:
    """The pixel digest and the layout it binds, or ``None`` without pixel data.

    Raises :class:`TooLargeError`, before decoding anything, if the declared
    frames need more than ``max_pixel_bytes`` decoded (see :func:`check_size`).
    """
    if not has_pixels(ds):
        if any(tag in ds for tag in _IMAGE_PIXEL_TAGS) or _is_image_class(ds):
            raise TruncatedError("this is an image but its pixel data is missing")
        return None
    rows = _uint(ds, "Rows")
    columns = _uint(ds, "Columns")
    samples = _uint(ds, "SamplesPerPixel", 1)
    bits_allocated = _uint(ds, "BitsAllocated")
    bits_stored = _uint(ds, "BitsStored", bits_allocated)
    representation = _uint(ds, "PixelRepresentation", 0)
    frames = _uint(ds, "NumberOfFrames", 1) or 1
    transfer_syntax = ds.file_meta.TransferSyntaxUID
    check_size(ds, (rows, columns, samples, frames), bits_allocated, max_pixel_bytes)
    digest = hashlib.sha256(PIXEL_DOMAIN)
    photometric = ""
    expected = rows * columns * samples
    decoded_frames = 0
    try:
        for frame, frame_photometric in _frames(ds, transfer_syntax, rows * columns, samples):
            if decoded_frames == 0:
                photometric = frame_photometric
                digest.update(
                    codec.encode(
                        {
                            "BitsAllocated": bits_allocated,
                            "BitsStored": bits_stored,
                            "Columns": columns,
                            "NumberOfFrames": frames,
                            "PhotometricInterpretation": photometric,
                            "PixelRepresentation": representation,
                            "PlanarConfiguration": 0,
                            "Rows": rows,
                            "SampleBytes": frame.dtype.itemsize,
                            "SampleKind": frame.dtype.kind,
                            "SamplesPerPixel": samples,
                        }
                    )
                )
            if frame.size != expected:
                raise UndecodablePixelsError(
                    f"frame {decoded_frames} decodes to {frame.size} samples, expected {expected}"
                )
            digest.update(_canonical_samples(frame, bits_stored, bits_allocated))
            decoded_frames += 1
    except ImagingError:
        raise
    except Exception as exc:
        text = describe(exc)
        if "less than expected" in text or "end of file" in text.lower():
            raise TruncatedError(f"the pixel data is shorter than declared: {text}") from None
        raise UndecodablePixelsError(f"the pixel data cannot be decoded: {text}") from None
    if decoded_frames != frames:
        raise UndecodablePixelsError(f"decoded {decoded_frames} frames, expected {frames}")
    geometry = Geometry(rows, columns, samples, bits_allocated, bits_stored, photometric)
    return digest.digest(), PixelInfo(geometry, frames)


def check_size(
    ds: Dataset, shape: tuple[int, int, int, int], bits_allocated: int, max_pixel_bytes: int
) -> None:
    """Refuse, before any decoding, an image whose declared size cannot be right or is too big.

    The decoded size is Rows x Columns x Samples per Pixel x Number of Frames
    samples of Bits Allocated / 8 bytes (one byte per pixel for 1-bit data, which
    is unpacked). It must not exceed ``max_pixel_bytes``; native (uncompressed)
    pixel data must hold at least the bytes the frames need as stored; RLE data
    cannot decode to more than :data:`RLE_MAX_RATIO` times its own length.
    """
    rows, columns, samples, frames = shape
    sample_bytes = max(1, -(-bits_allocated // 8))
    decoded = rows * columns * samples * frames * sample_bytes
    declared = (
        f"{rows} x {columns} x {samples} sample(s) x {frames} frame(s) x {sample_bytes} byte(s)"
    )
    if decoded > max_pixel_bytes:
        raise TooLargeError(
            f"the image declares {declared} = {_size(decoded)} decoded, more than the limit of "
            f"{_size(max_pixel_bytes)} per instance (--max-pixel-bytes)"
        )
    syntax = ds.file_meta.TransferSyntaxUID
    tag = next(t for t in _PIXEL_TAGS if t in ds)
    stored = _stored_length(ds, tag)
    if stored is None:
        return
    if not syntax.is_encapsulated:
        needed = -(-rows * columns * samples * frames * bits_allocated // 8)
        if stored < needed:
            raise TruncatedError(
                f"the pixel data holds {stored} bytes, less than expected ({needed}) "
                f"for {rows} x {columns} x {samples} sample(s) x {frames} frame(s) "
                f"of {bits_allocated} bits"
            )
    elif syntax == RLELossless and decoded > RLE_MAX_RATIO * stored:
        raise TooLargeError(
            f"the image declares {declared} = {_size(decoded)} decoded, but {stored} bytes of RLE "
            f"data can hold at most {_size(RLE_MAX_RATIO * stored)}"
        )


def _stored_length(ds: Dataset, tag: int) -> int | None:
    """The pixel data's length in the file, without converting the element."""
    raw: object = ds.get_item(tag)
    value = raw.value if isinstance(raw, RawDataElement) else getattr(raw, "value", None)
    return len(value) if isinstance(value, bytes | bytearray | memoryview) else None


def _size(count: int) -> str:
    for unit, scale in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if count >= scale:
            return f"{count / scale:.1f} {unit}"
    return f"{count} bytes"


_NATIVE_LE_SYNTAXES: Final = frozenset(
    {ImplicitVRLittleEndian, ExplicitVRLittleEndian, DeflatedExplicitVRLittleEndian}
)
_NATIVE_DTYPES: Final = {
    (8, 0): "<u1",
    (16, 0): "<u2",
    (16, 1): "<i2",
    (32, 0): "<u4",
    (32, 1): "<i4",
}
_PASS_THROUGH_PHOTOMETRIC: Final = frozenset({"MONOCHROME1", "MONOCHROME2", "PALETTE COLOR"})


def _frames(
    ds: Dataset, transfer_syntax: UID, pixels_per_frame: int, samples: int
) -> Iterator[tuple[np.ndarray[Any, Any], str]]:
    """Each decoded frame with the photometric interpretation of the decoded values.

    Single-sample little-endian native data is read in place (a view, no copy):
    for it, pydicom's decoder would only copy the same samples. Everything else
    (compressed, big endian, colour, 1-bit, float) goes through pydicom's decoders.
    """
    photometric = str(attributes.text(ds, "PhotometricInterpretation", "") or "").strip()
    dtype = _NATIVE_DTYPES.get(
        (
            _uint(ds, "BitsAllocated", 0),
            _uint(ds, "PixelRepresentation", 0),
        )
    )
    if (
        transfer_syntax in _NATIVE_LE_SYNTAXES
        and samples == 1
        and dtype is not None
        and photometric in _PASS_THROUGH_PHOTOMETRIC
        and 0x7FE00010 in ds
    ):
        data = ds.PixelData
        frames = int(ds.get("NumberOfFrames") or 1) or 1
        frame_bytes = pixels_per_frame * np.dtype(dtype).itemsize
        if len(data) < frame_bytes * frames:
            raise TruncatedError(
                f"the pixel data holds {len(data)} bytes, less than expected "
                f"({frame_bytes * frames})"
            )
        flat = np.frombuffer(data, dtype=dtype, count=pixels_per_frame * frames)
        for index in range(frames):
            yield flat[index * pixels_per_frame : (index + 1) * pixels_per_frame], photometric
        return
    try:
        decoder = get_decoder(transfer_syntax)
    except NotImplementedError:
        raise UndecodablePixelsError(
            f"no decoder for transfer syntax {transfer_syntax} ({transfer_syntax.name})"
        ) from None
    if not decoder.is_available:
        raise UndecodablePixelsError(f"the decoder for {transfer_syntax.name} is not installed")
    for frame, meta in decoder.iter_array(ds, as_rgb=False):
        yield frame, str(meta.get("photometric_interpretation") or "")


def _canonical_samples(frame: np.ndarray[Any, Any], bits_stored: int, bits_allocated: int) -> Any:
    """Little-endian, C-contiguous samples with the unused high bits normalised."""
    array = frame
    width = array.dtype.itemsize * 8
    if array.dtype.kind in "ui" and bits_allocated > 1 and 0 < bits_stored < width:
        signed = array.dtype.kind == "i"
        low = -(1 << (bits_stored - 1)) if signed else 0
        high = (1 << (bits_stored - 1)) - 1 if signed else (1 << bits_stored) - 1
        # Usually the high bits are already clean: two reductions, no copy.
        if array.size and (int(array.min()) < low or int(array.max()) > high):
            if signed:
                shift = width - bits_stored
                array = (array << shift) >> shift
            else:
                array = array & array.dtype.type(high)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not _NATIVE_LE):
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).view(np.uint8).reshape(-1).data


_NATIVE_LE: Final = np.little_endian


def _uint(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = _get(ds, keyword, default, attributes.uint)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise MissingAttributeError(f"{keyword} is missing or not a number") from None
    if number < 0:
        raise MalformedError(f"{keyword} is negative")
    return number


def _get(
    ds: Dataset, keyword: str, default: Any = None, read: Callable[..., Any] | None = None
) -> Any:
    """``ds.get`` (or ``read``, one of :mod:`imaging.attributes`' readers) that turns a
    value pydicom cannot convert into a typed error."""
    try:
        value = read(ds, keyword, default) if read else ds.get(keyword, default)
    except Exception as exc:
        raise MalformedError(f"{keyword} cannot be read: {describe(exc)}") from None
    return default if value is None or value == "" else value


#: The longest reason an error message carries (a decoder may explain at length).
MAX_REASON_CHARS: Final = 400


def describe(exc: BaseException) -> str:
    """``Type: message`` on one line, at most :data:`MAX_REASON_CHARS` characters.

    Every line is kept: pydicom puts the reason on the lines after the first
    ("Unable to decode as exceptions were raised by all available plugins:" then
    one line per plugin). Runs of whitespace and control characters become one
    space, so a message is always a single printable line.
    """
    text = " ".join(_CONTROL.sub(" ", str(exc)).split())
    out = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    if len(out) > MAX_REASON_CHARS:
        out = out[: MAX_REASON_CHARS - 3].rstrip() + "..."
    return out


_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def read_file(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except IsADirectoryError:
        raise UnreadableFileError("is a directory") from None
    except OSError as exc:
        raise UnreadableFileError(f"cannot read: {exc.strerror or exc}") from None


def fingerprint_bytes(data: bytes, max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES) -> Fingerprint:
    """The three digests of a file held in memory."""
    ds = read_dataset(data)
    return fingerprint_dataset(ds, data, max_pixel_bytes)[0]


def fingerprint_dataset(
    ds: Dataset, data: bytes, max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES
) -> tuple[Fingerprint, PixelInfo | None]:
    try:
        uid = sop_instance_uid(ds)
        meta = meta_digest(ds)
        pixels = pixel_digest(ds, max_pixel_bytes)
    except ImagingError:
        raise
    except Exception as exc:  # value conversion of damaged elements
        raise MalformedError(f"an attribute cannot be read: {describe(exc)}") from None
    pixel, info = (None, None) if pixels is None else pixels
    return Fingerprint(uid, pixel, meta, file_digest(data)), info


def fingerprint_file(
    path: str | Path, max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES
) -> Fingerprint:
    return fingerprint_bytes(read_file(path), max_pixel_bytes)
