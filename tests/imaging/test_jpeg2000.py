"""imaging.jpeg2000: the wavelet transform named in a codestream's COD and COC segments.

The codestreams here are built byte by byte from ISO/IEC 15444-1 Annex A (SIZ,
COD, COC, SOT, SOD), so each rule is checked on exactly the shape it is about:
the main header, a COC override, tile-part headers reached through Psot, and
coded data that happens to hold marker-like bytes.
"""

from __future__ import annotations

import struct

import pytest

from imaging.jpeg2000 import CodestreamError, is_irreversible, wavelet_transforms

REVERSIBLE = 1
IRREVERSIBLE = 0


def _segment(code: int, body: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, code, len(body) + 2) + body


def siz(components: int = 1) -> bytes:
    body = struct.pack(">H8IH", 0, 64, 64, 0, 0, 64, 64, 0, 0, components)
    return _segment(0x51, body + b"\x0f\x01\x01" * components)


def cod(transform: int) -> bytes:
    # Scod, progression, layers, MCT, then levels, code-block width, height, style, transform.
    return _segment(0x52, struct.pack(">BBHBBBBBB", 0, 0, 1, 0, 5, 4, 4, 0, transform))


def coc(transform: int, component: int = 0, components: int = 1) -> bytes:
    index = struct.pack(">H" if components >= 257 else ">B", component)
    return _segment(0x53, index + struct.pack(">BBBBBB", 0, 5, 4, 4, 0, transform))


def tile_part(header: bytes, data: bytes, *, index: int = 0, last_to_eoc: bool = False) -> bytes:
    """SOT, ``header`` segments, SOD, ``data``; Psot 0 means "to the end of the codestream"."""
    psot = 0 if last_to_eoc else 12 + len(header) + 2 + len(data)
    sot = _segment(0x90, struct.pack(">HIBB", index, psot, 0, 1))
    return sot + header + b"\xff\x93" + data


def codestream(main: bytes, *tiles: bytes, components: int = 1) -> bytes:
    return b"\xff\x4f" + siz(components) + main + b"".join(tiles) + b"\xff\xd9"


def test_the_main_header_cod_names_the_transform() -> None:
    assert wavelet_transforms(codestream(cod(REVERSIBLE))) == {REVERSIBLE}
    assert not is_irreversible(codestream(cod(REVERSIBLE), tile_part(b"", b"\x00" * 8)))
    assert is_irreversible(codestream(cod(IRREVERSIBLE), tile_part(b"", b"\x00" * 8)))


def test_a_coc_for_one_component_makes_it_irreversible() -> None:
    assert is_irreversible(codestream(cod(REVERSIBLE) + coc(IRREVERSIBLE)))
    # With 257 components or more the component index takes two bytes (A.6.2).
    many = codestream(cod(REVERSIBLE) + coc(IRREVERSIBLE, 300, 300), components=300)
    assert wavelet_transforms(many) == {REVERSIBLE, IRREVERSIBLE}


def test_a_part_2_kernel_is_not_the_reversible_5_3() -> None:
    assert is_irreversible(codestream(cod(2)))


def test_tile_part_headers_are_read_through_psot() -> None:
    first = tile_part(b"", b"\x12" * 20)
    second = tile_part(coc(IRREVERSIBLE), b"\x34" * 20, index=1, last_to_eoc=True)
    assert is_irreversible(codestream(cod(REVERSIBLE), first, second))
    again = tile_part(cod(IRREVERSIBLE), b"\x56" * 4, index=1)
    assert is_irreversible(codestream(cod(REVERSIBLE), first, again))


def test_marker_like_bytes_in_coded_data_are_not_read_as_markers() -> None:
    fake = cod(IRREVERSIBLE) + coc(IRREVERSIBLE)  # inside a tile's data, not a header
    stream = codestream(cod(REVERSIBLE), tile_part(b"", fake), tile_part(b"", fake, index=1))
    assert wavelet_transforms(stream) == {REVERSIBLE}


def test_a_jp2_wrapper_around_the_codestream_is_looked_through() -> None:
    jp2 = b"\x00\x00\x00\x0cjP  \r\n\x87\n" + b"\x00\x00\x00\x08jp2c"
    assert is_irreversible(jp2 + codestream(cod(IRREVERSIBLE)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00" * 64,
        b"\xff\x4f\xff\x51\x00",  # SIZ cut inside its length
        codestream(cod(REVERSIBLE))[:-8],  # COD cut short
        b"\xff\x4f" + siz() + b"\xff\x52\x00\x01",  # a length below 2
        b"\xff\x4f" + siz() + b"\x00\x00" + cod(REVERSIBLE),  # not a marker
        codestream(b""),  # no COD at all
        b"\xff\x4f" + siz() + _segment(0x52, b"\x00\x00\x00"),  # a COD too short to hold it
    ],
    ids=["empty", "zeros", "cut-siz", "cut-cod", "short-length", "no-marker", "no-cod", "tiny-cod"],
)
def test_a_codestream_that_cannot_be_read_is_an_error(data: bytes) -> None:
    with pytest.raises(CodestreamError):
        wavelet_transforms(data)


def test_a_tile_part_shorter_than_its_header_is_an_error() -> None:
    bad = _segment(0x90, struct.pack(">HIBB", 0, 4, 0, 1)) + b"\xff\x93"
    with pytest.raises(CodestreamError):
        wavelet_transforms(codestream(cod(REVERSIBLE), bad))
