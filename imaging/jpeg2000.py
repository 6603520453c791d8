"""What a JPEG 2000 (or HTJ2K) codestream says about its own wavelet transform.

The "lossy or lossless" transfer syntaxes (JPEG 2000 .91, Part 2 .93, HTJ2K
.203) do not say which one a file is, and older archives often omit Lossy
Image Compression (0028,2110). The codestream does: every COD and COC marker
segment (ISO/IEC 15444-1 A.6.1, A.6.2) names the wavelet transformation,
``0`` for the 9-7 irreversible filter (always lossy) and ``1`` for the 5-3
reversible one (Part 2 adds arbitrary kernels, numbered from ``2``). Only the
marker segments are read (the main header and every tile-part header, A.4),
never the coded data, so this costs microseconds per frame.

A reversible transform is necessary for lossless coding, not sufficient: an
encoder may still drop quality layers (pydicom's ``693_J2KI.dcm`` does, and
says so with (0028,2110) = ``01``). So only the irreversible answer is proof.
"""

from __future__ import annotations

from typing import Final

#: The 5-3 reversible wavelet; any other value is irreversible (0) or a Part 2 kernel.
REVERSIBLE_5_3: Final = 1

_SOC_SIZ: Final = b"\xff\x4f\xff\x51"
_SIZ: Final = 0x51
_COD: Final = 0x52
_COC: Final = 0x53
_SOT: Final = 0x90
_SOD: Final = 0x93
_EOC: Final = 0xD9
#: The SOT marker segment: marker, Lsot (10), Isot, Psot, TPsot, TNsot.
_SOT_BYTES: Final = 12
#: Bytes of the COD segment (after Lsot) before the transformation: Scod, SGcod (4),
#: then SPcod's decomposition levels, code-block width, height and style.
_COD_TRANSFORM_AT: Final = 9


class CodestreamError(ValueError):
    """The bytes are not a JPEG 2000 codestream whose headers can be read."""


def wavelet_transforms(data: bytes) -> frozenset[int]:
    """Every wavelet transformation value the COD and COC segments of ``data`` name.

    ``data`` is one frame: a raw codestream (what DICOM stores), or a JP2 file
    around one. Raises :class:`CodestreamError` if no SOC and SIZ marker is found,
    a marker segment runs past the end, or no COD segment is found.
    """
    start = data.find(_SOC_SIZ)
    if start < 0:
        raise CodestreamError("no JPEG 2000 codestream (SOC and SIZ markers) in the frame")
    view = memoryview(data)
    position = start + 2
    components = 0
    found: set[int] = set()
    seen_cod = False
    in_tile_header = False
    tile_start = 0
    tile_length = 0
    while position + 2 <= len(view):
        if view[position] != 0xFF:
            raise CodestreamError(f"no marker at byte {position} of the codestream")
        code = view[position + 1]
        if code == _EOC:
            break
        if code == _SOD:
            if not in_tile_header or tile_length == 0:
                break  # the last tile-part runs to the end: no more headers
            position = tile_start + tile_length
            in_tile_header = False
            continue
        if position + 4 > len(view):
            raise CodestreamError("a marker segment is cut short")
        length = int.from_bytes(view[position + 2 : position + 4], "big")
        end = position + 2 + length
        if length < 2 or end > len(view):
            raise CodestreamError(
                f"marker FF{code:02X} declares {length} bytes, more than the frame holds"
            )
        segment = view[position + 4 : end]
        if code == _SOT:
            if length + 2 != _SOT_BYTES:
                raise CodestreamError("a tile-part (SOT) marker segment has the wrong length")
            tile_start = position
            tile_length = int.from_bytes(segment[2:6], "big")
            if tile_length and tile_length < _SOT_BYTES + 2:
                raise CodestreamError("a tile-part is shorter than its own header")
            in_tile_header = True
        elif code == _SIZ and len(segment) >= 36:
            components = int.from_bytes(segment[34:36], "big")
        elif code == _COD:
            found.add(_byte(segment, _COD_TRANSFORM_AT, "COD"))
            seen_cod = True
        elif code == _COC:
            index_bytes = 2 if components >= 257 else 1
            # Ccoc, Scoc, then SPcoc: levels, width, height, style, transformation.
            found.add(_byte(segment, index_bytes + 5, "COC"))
        position = end
    if not seen_cod:
        raise CodestreamError("the codestream has no COD marker segment")
    return frozenset(found)


def is_irreversible(data: bytes) -> bool:
    """Does the frame's codestream use any transform other than the 5-3 reversible one?"""
    return wavelet_transforms(data) != {REVERSIBLE_5_3}


def _byte(segment: memoryview, index: int, what: str) -> int:
    if index >= len(segment):
        raise CodestreamError(f"the {what} marker segment is too short")
    return int(segment[index])
