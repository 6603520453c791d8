"""Reading the few attributes the fingerprint, the gate and the summary need.

Every instance needs about twenty single values (Rows, BitsStored, the UIDs,
Modality, the de-identification flags). pydicom converts each one through its
generic machinery and stores the converted element back in the dataset, about
15 µs apiece, a tenth of the time one core spends on a 512 x 512 CT slice.
For the common case, an explicit-VR little-endian element of an unsigned
integer or an ASCII code/UID holding one value, the value is read here straight
from its bytes, exactly as pydicom would convert it (``tests/imaging/
test_attributes.py`` checks both routes agree on every bundled and synthetic
file); anything else (other VRs, several values, implicit VR, big endian, an
element pydicom already converted) goes through pydicom as before.
"""

from __future__ import annotations

import struct
from typing import Final

from pydicom.datadict import tag_for_keyword
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

#: Read with pydicom's default encoding (ISO 8859-1) whatever the character set,
#: padded with spaces or NULs that pydicom strips from the end (``multi_string``).
#: Not AE (pydicom strips both ends) nor DA/DT/TM (configurable conversion).
_ASCII_VRS: Final = frozenset({"AS", "CS", "UI"})
_UINT_FORMATS: Final = {("US", 2): "<H", ("UL", 4): "<I"}
#: Set to False to send every read through pydicom (the tests compare both routes).
FAST_PATH = True


def _raw(ds: Dataset, tag: int) -> tuple[str, bytes] | None:
    """(VR, value bytes) of an unconverted explicit-VR little-endian element."""
    if not FAST_PATH:
        return None
    raw: object = ds.get_item(tag)
    if (
        isinstance(raw, RawDataElement)
        and raw.is_little_endian
        and raw.VR is not None
        and isinstance(raw.value, bytes)
        and 0 < raw.length != 0xFFFFFFFF
    ):
        return raw.VR, raw.value
    return None


def ascii_value(ds: Dataset, tag: int) -> str | None:
    """A one-valued AS, CS or UI element's value as pydicom converts it, or ``None``
    when this route does not cover the element (then ask pydicom)."""
    raw = _raw(ds, tag)
    if raw is not None and raw[0] in _ASCII_VRS and b"\\" not in raw[1]:
        return raw[1].decode("latin_1").rstrip(" \x00")
    return None


def uint_value(ds: Dataset, tag: int) -> int | None:
    """A one-valued US or UL element's value, or ``None`` when this route does not
    cover the element (then ask pydicom)."""
    raw = _raw(ds, tag)
    if raw is not None:
        fmt = _UINT_FORMATS.get((raw[0], len(raw[1])))
        if fmt is not None:
            number: int = struct.unpack(fmt, raw[1])[0]
            return number
    return None


def text(ds: Dataset, keyword: str, default: object = None) -> object:
    """``ds.get(keyword, default)``, read from the bytes where :func:`ascii_value` can."""
    tag = tag_for_keyword(keyword)
    value = None if tag is None else ascii_value(ds, tag)
    return ds.get(keyword, default) if value is None else value


def uint(ds: Dataset, keyword: str, default: object = None) -> object:
    """``ds.get(keyword, default)``, read from the bytes where :func:`uint_value` can."""
    tag = tag_for_keyword(keyword)
    value = None if tag is None else uint_value(ds, tag)
    return ds.get(keyword, default) if value is None else value


__all__ = ["FAST_PATH", "ascii_value", "text", "uint", "uint_value"]
