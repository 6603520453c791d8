"""The canonical form of a DICOM dataset behind the ``meta`` digest.

The form is a canonical CBOR value (``ledger.codec``, RFC 8949 §4.2.1), so every
implementation that follows docs/FINGERPRINT.md produces the same bytes:

* a dataset (the top level, and every sequence item) is a map from the tag as
  8 upper-case hex digits (``"00100010"``) to the element's value;
* every value is an array (a DICOM value is a list of values; empty -> ``[]``);
* text values (AE AS CS DA DT LO LT PN SH ST TM UC UI UR UT) are text strings with
  the padding DICOM declares insignificant removed (PS3.5 §6.2): trailing spaces
  and NULs always, leading spaces too for AE AS CS DA DT LO SH TM UI;
  person names also lose trailing ``^`` and ``=`` delimiters;
* DS values are ``[mantissa, exponent]`` integer pairs with trailing zeros moved
  into the exponent (``"1.50"``, ``"+1.5"`` and ``"15E-1"`` are all ``[15, -1]``;
  zero is ``[0, 0]``); a DS that is not a decimal number stays text;
* IS, US, SS, UL, SL, UV, SV and AT values are integers;
* FL and FD values are their IEEE 754 bytes, big-endian (4 or 8 bytes);
* OB OD OF OL OV OW (and UN) are one byte string, little-endian
  (a big-endian file's words are swapped back);
* SQ values are arrays of datasets;
* private elements (odd groups) other than sequences are one byte string: the
  value as an implicit VR little endian file stores it (the stored bytes if the
  VR is unknown, the value written back little-endian if it is known), so
  implicit, explicit and big-endian files agree; an unknown private value that
  parses as a sequence is mapped as one.

Excluded, because they legitimately change with the encoding (PS3.3
C.12.1.1.3.1.1, the rule DICOM's own MACs use, plus the pixel module's encoding
descriptors): group lengths (gggg,0000); every group below 0008 (file meta
0002); Length to End (0008,0001); the whole 7FE0 group (pixel data, offset
tables); Data Set Trailing Padding (FFFC,FFFC); digital signatures (FFFA group)
and MAC Parameters (4FFE,0001); Photometric Interpretation (0028,0004) and Planar
Configuration (0028,0006), which a lossless codec may rewrite (RGB is stored as
YBR_RCT by JPEG 2000) and which the ``pixel`` digest binds in decoded form.
Item and sequence delimiters are framing, never elements, so they never appear.
"""

from __future__ import annotations

import struct
from decimal import Decimal, InvalidOperation
from typing import Any, Final

from pydicom.dataelem import DataElement, RawDataElement, convert_raw_data_element
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_data_element
from pydicom.multival import MultiValue
from pydicom.tag import BaseTag

from imaging.errors import MalformedError
from ledger import codec

_LENGTH_TO_END: Final = 0x00080001
_EXCLUDED_TAGS: Final = frozenset(
    {
        _LENGTH_TO_END,
        0x00280004,  # Photometric Interpretation
        0x00280006,  # Planar Configuration
        0x4FFE0001,  # MAC Parameters Sequence
        0xFFFCFFFC,  # Data Set Trailing Padding
    }
)
_EXCLUDED_GROUPS: Final = frozenset({0x7FE0, 0xFFFA})

_STRIP_BOTH: Final = frozenset({"AE", "AS", "CS", "DA", "DT", "LO", "SH", "TM", "UI"})
_INT_VRS: Final = frozenset({"IS", "US", "SS", "UL", "SL", "UV", "SV", "AT"})
_FLOAT_FORMATS: Final = {"FL": ">f", "FD": ">d"}
#: Binary VRs and the width of the words a big-endian file swaps.
_BINARY_WIDTH: Final = {"OB": 1, "UN": 1, "OW": 2, "OF": 4, "OL": 4, "OD": 8, "OV": 8}


def excluded(tag: int) -> bool:
    group, element = tag >> 16, tag & 0xFFFF
    return element == 0 or group < 0x0008 or group in _EXCLUDED_GROUPS or tag in _EXCLUDED_TAGS


def canonical_meta(ds: Dataset) -> bytes:
    """The canonical CBOR encoding of ``ds`` minus the excluded elements."""
    little_endian = _little_endian(ds)
    return codec.encode(_dataset(ds, little_endian, depth=0))


def _little_endian(ds: Dataset) -> bool:
    encoding = getattr(ds, "original_encoding", (None, None))
    return encoding[1] is not False


def _dataset(ds: Dataset, little_endian: bool, depth: int) -> dict[str, codec.Value]:
    if depth > 16:
        raise MalformedError("sequences are nested more than 16 deep")
    out: dict[str, codec.Value] = {}
    encoding = ds._character_set
    for tag_int in sorted(int(tag) for tag in ds.keys()):  # noqa: SIM118  (iterating a Dataset yields elements)
        if excluded(tag_int):
            continue
        out[f"{tag_int:08X}"] = _element(ds, BaseTag(tag_int), encoding, little_endian, depth)
    return out


def _converted(ds: Dataset, tag: BaseTag, encoding: str | list[str]) -> DataElement:
    """The element with its value converted, without storing it back in ``ds``.

    Same conversion as ``ds[tag]`` (character set, VR from the dictionary), minus
    pydicom's bookkeeping; ambiguous VRs (``US or SS``) still go through ``ds[tag]``,
    which resolves them from the pixel module.
    """
    raw: object = ds.get_item(tag)
    if isinstance(raw, RawDataElement):
        elem = convert_raw_data_element(raw, encoding=encoding, ds=ds)
        if " or " not in elem.VR:
            return elem
    return ds[tag]


def _element(
    ds: Dataset, tag: BaseTag, encoding: str | list[str], little_endian: bool, depth: int
) -> codec.Value:
    if FAST_PATH and not tag.is_private:
        raw: object = ds.get_item(tag)
        if isinstance(raw, RawDataElement):
            quick = _fast(raw, encoding)
            if quick is not None:
                return quick
    elem = _converted(ds, tag, encoding)
    vr = elem.VR
    value = elem.value
    if tag.is_private and vr != "SQ":
        items = _private_sequence(ds, elem, encoding)
        if items is None:
            return [_private_bytes(elem, encoding)]
        value, vr = items, "SQ"
    if vr == "SQ":
        return [_dataset(item, little_endian, depth + 1) for item in (value or ())]
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        return [_binary(bytes(value), vr, little_endian)]
    values: list[Any] = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    return [_scalar(v, vr) for v in values]


_ITEM_TAG_LE: Final = b"\xfe\xff\x00\xe0"

#: Read the common explicit-VR-little-endian elements straight from their bytes, the
#: way pydicom would convert them; ``tests/imaging/test_canonical_fast.py`` checks
#: both routes give the same bytes on every bundled and synthetic file.
FAST_PATH = True
#: Decoded as ASCII-compatible single bytes by pydicom whatever the character set.
_FAST_DEFAULT: Final = frozenset({"AE", "AS", "CS", "DA", "DT", "TM", "UI"})
#: Decoded with the dataset's character set.
_FAST_CHARSET: Final = frozenset({"SH", "LO", "UC"})
_FAST_SINGLE: Final = frozenset({"ST", "LT", "UT"})
#: Character sets decoded by a plain codec (no ISO 2022 escapes).
_PLAIN_CODECS: Final = {"iso8859": "latin_1", "latin_1": "latin_1", "UTF8": "utf_8"}
_FAST_NUMBERS: Final = {"US": "H", "SS": "h", "UL": "I", "SL": "i", "FL": "f", "FD": "d"}


def _fast(raw: RawDataElement, encoding: str | list[str]) -> codec.Value:
    """The canonical value straight from an explicit little-endian element, or ``None``."""
    vr, value = raw.VR, raw.value
    if (
        vr is None
        or not isinstance(value, bytes)
        or not raw.is_little_endian
        or raw.length == 0xFFFFFFFF
    ):
        return None
    if vr in _FAST_NUMBERS:
        code = _FAST_NUMBERS[vr]
        size = struct.calcsize(code)
        if len(value) % size:
            return None
        numbers = struct.unpack(f"<{len(value) // size}{code}", value)
        if vr in _FLOAT_FORMATS:
            return [struct.pack(_FLOAT_FORMATS[vr], n) for n in numbers]
        return list(numbers)
    if vr in _FAST_DEFAULT:
        codec_name = "latin_1"
    elif vr in _FAST_CHARSET or vr in _FAST_SINGLE:
        names = [encoding] if isinstance(encoding, str) else list(encoding)
        if len(names) != 1 or names[0] not in _PLAIN_CODECS or b"\x1b" in value:
            return None
        codec_name = _PLAIN_CODECS[names[0]]
    else:
        return None
    try:
        text = value.decode(codec_name)
    except UnicodeDecodeError:
        return None
    parts = [text] if vr in _FAST_SINGLE else text.split("\\")
    return [_text(part, vr) for part in parts]


def _private_sequence(ds: Dataset, elem: DataElement, encoding: str | list[str]) -> Any:
    """The items of a private sequence a reader could not type (VR UN), else ``None``.

    An implicit VR file does not say that an unknown private element is a
    sequence; an explicit one does. Values of unknown VR that start with an item
    tag are read as a sequence (implicit VR little endian, as PS3.5 §6.2.2 says
    UN content is encoded), so both files give the same canonical form.
    """
    if elem.VR != "UN" or not isinstance(elem.value, bytes):
        return None
    if not elem.value.startswith(_ITEM_TAG_LE):
        return None
    raw = RawDataElement(BaseTag(elem.tag), "SQ", len(elem.value), elem.value, 0, True, True)
    try:
        return convert_raw_data_element(raw, encoding=encoding, ds=ds).value
    except Exception:
        return None


def _private_bytes(elem: DataElement, encoding: str | list[str]) -> bytes:
    """A private value as little-endian bytes, the same whether or not its VR is known.

    Unknown VR (UN): the stored bytes. Known VR: the value written the way an
    implicit VR little endian file stores it, so a big-endian file, an explicit
    file and an implicit one agree, and so does a dataset whose elements were
    already read.
    """
    if elem.VR == "UN" and isinstance(elem.value, bytes):
        return elem.value
    out = DicomBytesIO()
    out.is_little_endian = True
    out.is_implicit_VR = True
    try:
        write_data_element(out, elem, encoding)
    except Exception as exc:
        raise MalformedError(f"private element {elem.tag} cannot be normalised: {exc}") from None
    return out.getvalue()[8:]  # after the implicit VR header: tag (4) and length (4)


def _binary(value: bytes, vr: str, little_endian: bool) -> bytes:
    width = _BINARY_WIDTH.get(vr, 1)
    if little_endian or width == 1:
        return value
    if len(value) % width:
        raise MalformedError(f"a {vr} value of {len(value)} bytes is not whole words")
    swapped = bytearray(len(value))
    for i in range(width):
        swapped[i::width] = value[width - 1 - i :: width]
    return bytes(swapped)


def _scalar(value: Any, vr: str) -> codec.Value:
    if vr == "DS":
        return _decimal(str(getattr(value, "original_string", None) or value))
    if vr in _INT_VRS:
        try:
            return int(value)
        except (TypeError, ValueError):
            return _text(str(value), vr)
    if vr in _FLOAT_FORMATS:
        return struct.pack(_FLOAT_FORMATS[vr], float(value))
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    return _text(str(value), vr)


def _text(value: str, vr: str) -> str:
    if vr in _STRIP_BOTH:
        return value.strip(" \x00")
    text = value.rstrip(" \x00")
    if vr == "PN":
        groups = [group.rstrip("^") for group in text.split("=")]
        while groups and not groups[-1]:
            groups.pop()
        return "=".join(groups)
    return text


def _decimal(text: str) -> codec.Value:
    stripped = text.strip(" \x00")
    try:
        number = Decimal(stripped)
    except InvalidOperation:
        return stripped
    if not number.is_finite():
        return stripped
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    mantissa = int("".join(map(str, digits)) or "0")
    if mantissa == 0:
        return [0, 0]
    while mantissa % 10 == 0:
        mantissa //= 10
        exponent += 1
    return [-mantissa if sign else mantissa, exponent]
