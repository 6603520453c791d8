"""Canonical encoding: a strict subset of deterministic CBOR (RFC 8949 §4.2.1).

Everything radledger hashes or signs is encoded here, and nowhere else. The data
model is deliberately small:

* unsigned and negative integers in [-2**64, 2**64 - 1] (major types 0, 1);
* byte strings (major 2) and UTF-8 text strings (major 3);
* arrays (major 4);
* maps whose keys are text strings (major 5);
* ``false``, ``true`` and ``null`` (major 7, simple values 20, 21, 22).

Floats, tags, undefined, other simple values and indefinite lengths are not part
of the model. The encoder always produces the core deterministic form: every
head in its shortest form, definite lengths, map keys sorted by the bytewise
order of their encodings (for text keys: shorter first, then lexicographic by
UTF-8 bytes). The decoder accepts exactly that form and nothing else, so every
value has one encoding and one hash. ``docs/PROTOCOL.md`` restates these rules
byte for byte.

The encoder is written by hand because the generic canonical mode of a library
is several times slower for our small, fixed-shape records (see
``bench/codec_bench.py``); ``cbor2`` stays as an independent cross-check in
the tests.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeAlias

from mypy_extensions import mypyc_attr

from ledger.errors import DecodeError, EncodeError

# A decoded value. Arrays decode to lists, maps to dicts with str keys.
Value: TypeAlias = (
    int | bytes | str | bool | list["Value"] | tuple["Value", ...] | dict[str, "Value"] | None
)

#: Default upper bound on one encoded object, in bytes (16 MiB). Callers that
#: know their object pass a tighter ``max_bytes``.
DEFAULT_MAX_BYTES = 16 * 1024 * 1024
#: Deepest nesting the decoder follows; our schemas need fewer than 8 levels.
MAX_DEPTH = 32

_UINT_LIMIT = 1 << 64
_MAJOR_UINT = 0
_MAJOR_NINT = 1
_MAJOR_BYTES = 2
_MAJOR_TEXT = 3
_MAJOR_ARRAY = 4
_MAJOR_MAP = 5
_MAJOR_TAG = 6
_MAJOR_SIMPLE = 7

_FALSE = b"\xf4"
_TRUE = b"\xf5"
_NULL = b"\xf6"

# Heads for small arguments are precomputed: most of our heads are tiny.
_SMALL_HEADS: tuple[tuple[bytes, ...], ...] = tuple(
    tuple(bytes((major << 5 | n,)) if n < 24 else bytes((major << 5 | 24, n)) for n in range(256))
    for major in range(8)
)


def head(major: int, arg: int) -> bytes:
    """The shortest head for major type ``major`` with argument ``arg``."""
    if arg < 256:
        return _SMALL_HEADS[major][arg]
    if arg < 0x10000:
        return bytes((major << 5 | 25,)) + arg.to_bytes(2, "big")
    if arg < 0x100000000:
        return bytes((major << 5 | 26,)) + arg.to_bytes(4, "big")
    if arg < _UINT_LIMIT:
        return bytes((major << 5 | 27,)) + arg.to_bytes(8, "big")
    raise EncodeError(f"integer argument {arg} does not fit in 64 bits")


def encode_int(value: int) -> bytes:
    if value >= 0:
        return head(_MAJOR_UINT, value)
    return head(_MAJOR_NINT, -1 - value)


def encode_bytes(value: bytes) -> bytes:
    return head(_MAJOR_BYTES, len(value)) + value


def encode_text(value: str) -> bytes:
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as exc:  # lone surrogates
        raise EncodeError(f"text is not valid Unicode: {exc}") from None
    return head(_MAJOR_TEXT, len(raw)) + raw


def array_head(length: int) -> bytes:
    return head(_MAJOR_ARRAY, length)


def map_head(length: int) -> bytes:
    return head(_MAJOR_MAP, length)


def _encode_into(value: object, out: list[bytes], depth: int) -> None:
    if depth > MAX_DEPTH:
        raise EncodeError(f"value nested deeper than {MAX_DEPTH} levels")
    # bool before int: bool is a subclass of int.
    if value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif value is None:
        out.append(_NULL)
    elif isinstance(value, int):
        if not -_UINT_LIMIT <= value < _UINT_LIMIT:
            raise EncodeError(f"integer {value} is outside [-2**64, 2**64-1]")
        out.append(encode_int(value))
    elif isinstance(value, bytes):
        out.append(head(_MAJOR_BYTES, len(value)))
        out.append(value)
    elif isinstance(value, str):
        out.append(encode_text(value))
    elif isinstance(value, list | tuple):
        out.append(head(_MAJOR_ARRAY, len(value)))
        for item in value:
            _encode_into(item, out, depth + 1)
    elif isinstance(value, Mapping):
        pairs: list[tuple[bytes, object]] = []
        for key, item in value.items():
            if not isinstance(key, str):
                raise EncodeError(f"map key {key!r} is not a text string")
            pairs.append((encode_text(key), item))
        pairs.sort(key=lambda pair: pair[0])
        out.append(head(_MAJOR_MAP, len(pairs)))
        for key_bytes, item in pairs:
            out.append(key_bytes)
            _encode_into(item, out, depth + 1)
    else:
        raise EncodeError(f"type {type(value).__name__} is not in the canonical data model")


def encode(value: object) -> bytes:
    """Canonical encoding of ``value`` (see the module docstring for the model)."""
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


@mypyc_attr(native_class=False)  # a dict subclass (see setup.py: compiled builds)
class DecodedMap(dict[str, "Value"]):
    """A decoded map that remembers where its canonical encoding lies in the input.

    Lets a caller keep a nested map as bytes (e.g. a transaction body) without
    re-encoding it: the input was verified canonical, so the slice is the
    canonical encoding.
    """

    __slots__ = ("_end", "_source", "_start")

    _source: bytes
    _start: int
    _end: int

    def encoded(self) -> bytes:
        return self._source[self._start : self._end]


class Decoder:
    """A cursor over canonical input: ``value`` reads one item and checks it is canonical.

    Record schemas (``ledger.schema``) read their fields straight from a decoder
    instead of building a generic value first; ``known`` (optional) maps the
    SHA-256 of an encoded record to an already decoded, already validated one,
    so a block's transactions that this node holds need not be decoded again.
    """

    __slots__ = ("data", "end", "known", "pos")

    def __init__(self, data: bytes, known: Callable[[bytes], object | None] | None = None) -> None:
        self.data = data
        self.pos = 0
        self.end = len(data)
        self.known = known

    def fail(self, message: str) -> DecodeError:
        return DecodeError(f"{message} (at byte {self.pos})")

    def read_head(self) -> tuple[int, int]:
        data = self.data
        if self.pos >= self.end:
            raise self.fail("unexpected end of input")
        initial = data[self.pos]
        major = initial >> 5
        info = initial & 0x1F
        self.pos += 1
        if info < 24:
            return major, info
        if info > 27:
            if info == 31:
                raise self.fail("indefinite-length items are not canonical")
            raise self.fail(f"reserved additional information {info}")
        if major == _MAJOR_SIMPLE:
            raise self.fail("floats and extended simple values are not in the data model")
        width = 1 << (info - 24)
        if self.pos + width > self.end:
            raise self.fail("unexpected end of input in a head")
        arg = int.from_bytes(data[self.pos : self.pos + width], "big")
        self.pos += width
        minimum = 24 if width == 1 else 1 << (4 * width)
        if arg < minimum:
            raise self.fail("integer or length not in its shortest form")
        return major, arg

    def read_len(self, length: int) -> bytes:
        if length > self.end - self.pos:
            raise self.fail(f"length {length} runs past the end of input")
        chunk = self.data[self.pos : self.pos + length]
        self.pos += length
        return chunk

    def skip(self, pos: int, depth: int = 0) -> int:
        """Where the item starting at ``pos`` ends, following heads only.

        No canonical checks: for finding a span whose hash is then looked up.
        Raises :class:`DecodeError` on input that runs out or nests too deep.
        """
        data = self.data
        end = self.end
        stack: list[int] = []  # items left in each enclosing array or map
        remaining = 1
        while True:
            if remaining == 0:
                if not stack:
                    if pos > end:
                        raise self.fail("item runs past the end of input")
                    return pos
                remaining = stack.pop()
                continue
            remaining -= 1
            if pos >= end:
                raise self.fail("unexpected end of input")
            initial = data[pos]
            major = initial >> 5
            arg = initial & 0x1F
            pos += 1
            if arg >= 24:
                if arg > 27:
                    raise self.fail("not a definite-length item")
                width = 1 << (arg - 24)
                arg = int.from_bytes(data[pos : pos + width], "big")
                pos += width
            if major in (_MAJOR_BYTES, _MAJOR_TEXT):
                pos += arg
            elif major in (_MAJOR_ARRAY, _MAJOR_MAP):
                if arg > end - pos:
                    raise self.fail("container cannot fit in the input")
                if len(stack) + depth >= MAX_DEPTH:
                    raise self.fail(f"nesting deeper than {MAX_DEPTH} levels")
                stack.append(remaining)
                remaining = arg if major == _MAJOR_ARRAY else 2 * arg
            elif major == _MAJOR_TAG:
                raise self.fail("tags are not in the data model")

    def value(self, depth: int) -> Value:
        if depth > MAX_DEPTH:
            raise self.fail(f"nesting deeper than {MAX_DEPTH} levels")
        start = self.pos
        if start < self.end and (self.data[start] & 0x1F) < 24:  # fast path: one-byte head
            initial = self.data[start]
            major, arg = initial >> 5, initial & 0x1F
            self.pos = start + 1
        else:
            major, arg = self.read_head()
        if major == _MAJOR_UINT:
            return arg
        if major == _MAJOR_NINT:
            return -1 - arg
        if major == _MAJOR_BYTES:
            return self.read_len(arg)
        if major == _MAJOR_TEXT:
            raw = self.read_len(arg)
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                raise self.fail("text string is not valid UTF-8") from None
        if major == _MAJOR_ARRAY:
            if arg > self.end - self.pos:  # every item takes at least one byte
                raise self.fail(f"array of {arg} items cannot fit in the input")
            return [self.value(depth + 1) for _ in range(arg)]
        if major == _MAJOR_MAP:
            if arg > (self.end - self.pos) // 2:
                raise self.fail(f"map of {arg} pairs cannot fit in the input")
            result = DecodedMap()
            previous = b""
            data = self.data
            for _ in range(arg):
                key_start = self.pos
                if key_start < self.end and 0x60 <= data[key_start] < 0x78:
                    # fast path: a text key shorter than 24 bytes
                    key_end = key_start + 1 + (data[key_start] - 0x60)
                    if key_end > self.end:
                        raise self.fail("map key runs past the end of input")
                    raw_key = data[key_start + 1 : key_end]
                    self.pos = key_end
                else:
                    key_major, key_len = self.read_head()
                    if key_major != _MAJOR_TEXT:
                        raise self.fail("map key is not a text string")
                    raw_key = self.read_len(key_len)
                encoded_key = data[key_start : self.pos]
                if encoded_key <= previous:
                    raise self.fail("map keys are duplicated or not in canonical order")
                previous = encoded_key
                try:
                    key = raw_key.decode("utf-8")
                except UnicodeDecodeError:
                    raise self.fail("map key is not valid UTF-8") from None
                result[key] = self.value(depth + 1)
            result._source = self.data
            result._start = start
            result._end = self.pos
            return result
        if major == _MAJOR_TAG:
            raise self.fail("tags are not in the data model")
        # Major 7 with a one-byte head: simple values 0..23.
        if arg == 20:
            return False
        if arg == 21:
            return True
        if arg == 22:
            return None
        raise self.fail(f"simple value {arg} is not in the data model")


def decode(data: object, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Value:
    """Decode one canonical item that spans all of ``data``.

    Raises :class:`DecodeError` (and nothing else) for any input that is not
    exactly the canonical encoding of a value of the data model.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeError(f"input of {len(data)} bytes exceeds the limit of {max_bytes}")
    decoder = Decoder(bytes(data))
    try:
        value = decoder.value(0)
    except RecursionError:
        raise DecodeError("input nested too deeply") from None
    if decoder.pos != decoder.end:
        raise DecodeError(f"{decoder.end - decoder.pos} trailing bytes after the item")
    return value


def is_canonical(data: bytes) -> bool:
    """True when ``data`` is exactly one canonical item of the data model."""
    try:
        decode(data)
    except DecodeError:
        return False
    return True
