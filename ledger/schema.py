"""Fixed schemas for wire records on top of the canonical codec.

A record is a frozen, slotted dataclass; its :class:`Schema` lists the fields,
each with its map key on the wire and a :class:`Field` kind that knows how to
encode a Python value and how to check and convert a decoded one. The schema
pre-sorts fields into canonical key order and pre-encodes the keys, so encoding
a record is a straight walk with no sorting.

Decoding is strict: the map must have exactly the schema's keys (unknown or
missing fields are a :class:`DecodeError`), every value must have the declared
type and bounds, and the record's own ``__post_init__`` checks run; any
:class:`ValidationError` they raise becomes a ``DecodeError``.
"""

from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar, cast

from mypy_extensions import mypyc_attr

from ledger import codec
from ledger.codec import Value
from ledger.errors import DecodeError, EncodeError, ValidationError

T = TypeVar("T")


class Field(ABC):
    """How one field is put on the wire and read back."""

    __slots__ = ()

    @abstractmethod
    def encode_into(self, value: Any, out: list[bytes]) -> None:
        """Append the canonical encoding of ``value`` to ``out``."""

    @abstractmethod
    def decode(self, raw: Value, name: str) -> Any:
        """Check a decoded value and convert it; ``DecodeError`` naming ``name`` if wrong."""

    def read(self, dec: codec.Decoder, depth: int) -> Any:
        """:meth:`decode` straight from ``dec`` (the fast path of :meth:`Schema.decode`).

        Error messages here are not shown to anyone: on any error the caller
        decodes again through the reference path, which names the field.
        """
        return self.decode(dec.value(depth), "")

    def to_json(self, value: Any) -> Any:
        """The human (JSON) form of ``value``; identity unless the kind says otherwise."""
        return value

    def from_json(self, obj: Any, name: str) -> Any:
        """Read the JSON form back, with the same checks as :meth:`decode`."""
        return self.decode(obj, name)


def _read_arg(dec: codec.Decoder, major: int) -> int:
    """The argument of the head at ``dec.pos`` if it has major type ``major``."""
    pos = dec.pos
    if pos >= dec.end or dec.data[pos] >> 5 != major:
        raise DecodeError("unexpected type")
    info = dec.data[pos] & 0x1F
    if info < 24:
        dec.pos = pos + 1
        return info
    return dec.read_head()[1]  # longer heads, with the shortest-form checks


class UInt(Field):
    """Unsigned integer in ``[0, max_value]``."""

    __slots__ = ("max_value",)

    def __init__(self, max_value: int = (1 << 64) - 1) -> None:
        self.max_value = max_value

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        out.append(codec.head(0, value))

    def read(self, dec: codec.Decoder, depth: int) -> int:
        value = _read_arg(dec, 0)
        if value > self.max_value:
            raise DecodeError("too large")
        return value

    def decode(self, raw: Value, name: str) -> int:
        if not isinstance(raw, int) or isinstance(raw, bool) or raw < 0:
            raise DecodeError(f"{name}: expected an unsigned integer")
        if raw > self.max_value:
            raise DecodeError(f"{name}: {raw} exceeds the maximum {self.max_value}")
        return raw


class Bytes(Field):
    """Byte string of exactly ``size`` bytes, or of at most ``max_size``."""

    __slots__ = ("max_size", "size")

    def __init__(self, *, size: int | None = None, max_size: int | None = None) -> None:
        self.size = size
        self.max_size = max_size

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        out.append(codec.head(2, len(value)))
        out.append(value)

    def read(self, dec: codec.Decoder, depth: int) -> bytes:
        length = _read_arg(dec, 2)
        if (self.size is not None and length != self.size) or (
            self.max_size is not None and length > self.max_size
        ):
            raise DecodeError("wrong length")
        return dec.read_len(length)

    def decode(self, raw: Value, name: str) -> bytes:
        if not isinstance(raw, bytes):
            raise DecodeError(f"{name}: expected a byte string")
        if self.size is not None and len(raw) != self.size:
            raise DecodeError(f"{name}: expected {self.size} bytes, got {len(raw)}")
        if self.max_size is not None and len(raw) > self.max_size:
            raise DecodeError(f"{name}: {len(raw)} bytes exceeds the maximum {self.max_size}")
        return raw

    def to_json(self, value: Any) -> str:
        return bytes(value).hex()

    def from_json(self, obj: Any, name: str) -> bytes:
        if not isinstance(obj, str):
            raise DecodeError(f"{name}: expected a hex string")
        try:
            raw = bytes.fromhex(obj)
        except ValueError:
            raise DecodeError(f"{name}: not a valid hex string") from None
        return self.decode(raw, name)


class Text(Field):
    """UTF-8 text of at most ``max_len`` bytes, optionally matching a pattern."""

    __slots__ = ("max_len", "pattern")

    def __init__(self, max_len: int, pattern: str | None = None) -> None:
        self.max_len = max_len
        self.pattern = re.compile(pattern) if pattern is not None else None

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        out.append(codec.encode_text(value))

    def read(self, dec: codec.Decoder, depth: int) -> str:
        length = _read_arg(dec, 3)
        if length > self.max_len:
            raise DecodeError("too long")
        try:
            text = dec.read_len(length).decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError("not UTF-8") from None
        if self.pattern is not None and self.pattern.fullmatch(text) is None:
            raise DecodeError("does not match")
        return text

    def decode(self, raw: Value, name: str) -> str:
        if not isinstance(raw, str):
            raise DecodeError(f"{name}: expected a text string")
        if len(raw.encode("utf-8")) > self.max_len:
            raise DecodeError(f"{name}: longer than {self.max_len} bytes")
        if self.pattern is not None and self.pattern.fullmatch(raw) is None:
            raise DecodeError(f"{name}: {raw!r} does not match {self.pattern.pattern}")
        return raw


class RawMap(Field):
    """A nested map kept as its canonical encoding (e.g. a transaction body).

    The record stores the bytes; the wire carries the map inline (not wrapped
    in a byte string), so the encoding stays readable by any CBOR tool.
    """

    __slots__ = ()

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        out.append(value)

    def read(self, dec: codec.Decoder, depth: int) -> bytes:
        start = dec.pos
        if start >= dec.end or dec.data[start] >> 5 != 5:
            raise DecodeError("expected a map")
        dec.value(depth)
        return CanonicalMap(dec.data[start : dec.pos])

    def decode(self, raw: Value, name: str) -> bytes:
        if isinstance(raw, codec.DecodedMap):
            return CanonicalMap(raw.encoded())
        if not isinstance(raw, dict):
            raise DecodeError(f"{name}: expected a map")
        return CanonicalMap(codec.encode(raw))

    def to_json(self, value: Any) -> Any:
        return value_to_json(codec.decode(value))

    def from_json(self, obj: Any, name: str) -> bytes:
        return self.decode(value_from_json(obj, name), name)


class Nested(Field, Generic[T]):
    """Another schema'd record, inline."""

    __slots__ = ("schema",)

    def __init__(self, schema: Schema[T]) -> None:
        self.schema = schema

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        self.schema.encode_into(value, out)

    def read(self, dec: codec.Decoder, depth: int) -> T:
        return self.schema.read(dec, depth)

    def decode(self, raw: Value, name: str) -> T:
        return self.schema.from_value(raw, name)

    def to_json(self, value: Any) -> Any:
        return self.schema.to_json(value)

    def from_json(self, obj: Any, name: str) -> T:
        return self.schema.from_json(obj, name)


class Array(Field):
    """Array of at most ``max_items`` items of one kind, kept as a tuple."""

    __slots__ = ("item", "max_items")

    def __init__(self, item: Field, max_items: int) -> None:
        self.item = item
        self.max_items = max_items

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        out.append(codec.array_head(len(value)))
        for element in value:
            self.item.encode_into(element, out)

    def read(self, dec: codec.Decoder, depth: int) -> tuple[Any, ...]:
        if depth > codec.MAX_DEPTH:
            raise DecodeError("nesting too deep")
        major, count = dec.read_head()
        if major != 4 or count > self.max_items or count > dec.end - dec.pos:
            raise DecodeError("expected an array within its bounds")
        item = self.item
        schema = item.schema if isinstance(item, Nested) else None
        if schema is not None and schema.hash_attr is not None and dec.known is not None:
            return tuple(schema.read_known(dec, depth + 1) for _ in range(count))
        return tuple(item.read(dec, depth + 1) for _ in range(count))

    def decode(self, raw: Value, name: str) -> tuple[Any, ...]:
        if not isinstance(raw, list):
            raise DecodeError(f"{name}: expected an array")
        if len(raw) > self.max_items:
            raise DecodeError(f"{name}: {len(raw)} items exceeds the maximum {self.max_items}")
        return tuple(self.item.decode(element, f"{name}[{i}]") for i, element in enumerate(raw))

    def to_json(self, value: Any) -> list[Any]:
        return [self.item.to_json(element) for element in value]

    def from_json(self, obj: Any, name: str) -> tuple[Any, ...]:
        if not isinstance(obj, list):
            raise DecodeError(f"{name}: expected an array")
        if len(obj) > self.max_items:
            raise DecodeError(f"{name}: {len(obj)} items exceeds the maximum {self.max_items}")
        return tuple(self.item.from_json(element, f"{name}[{i}]") for i, element in enumerate(obj))


class Bool(Field):
    """CBOR ``true`` / ``false``."""

    __slots__ = ()

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        out.append(b"\xf5" if value else b"\xf4")

    def read(self, dec: codec.Decoder, depth: int) -> bool:
        pos = dec.pos
        if pos < dec.end and dec.data[pos] in (0xF4, 0xF5):
            dec.pos = pos + 1
            return dec.data[pos] == 0xF5
        raise DecodeError("expected true or false")

    def decode(self, raw: Value, name: str) -> bool:
        if not isinstance(raw, bool):
            raise DecodeError(f"{name}: expected true or false")
        return raw


class Optional(Field):
    """Either ``null`` (``None``) or a value of another kind."""

    __slots__ = ("inner",)

    def __init__(self, inner: Field) -> None:
        self.inner = inner

    def encode_into(self, value: Any, out: list[bytes]) -> None:
        if value is None:
            out.append(b"\xf6")
        else:
            self.inner.encode_into(value, out)

    def read(self, dec: codec.Decoder, depth: int) -> Any:
        pos = dec.pos
        if pos < dec.end and dec.data[pos] == 0xF6:
            dec.pos = pos + 1
            return None
        return self.inner.read(dec, depth)

    def decode(self, raw: Value, name: str) -> Any:
        return None if raw is None else self.inner.decode(raw, name)

    def to_json(self, value: Any) -> Any:
        return None if value is None else self.inner.to_json(value)

    def from_json(self, obj: Any, name: str) -> Any:
        return None if obj is None else self.inner.from_json(obj, name)


@dataclass(frozen=True, slots=True)
class FieldSpec:
    key: str  # key on the wire
    attr: str  # attribute of the record
    kind: Field


class Schema(Generic[T]):
    """Canonical encoder/decoder for one record type."""

    __slots__ = (
        "_fields",
        "_key_set",
        "_map_head",
        "build",
        "cache_attr",
        "hash_attr",
        "max_bytes",
        "name",
    )

    def __init__(
        self,
        name: str,
        build: Callable[..., T],
        fields: Sequence[FieldSpec],
        *,
        max_bytes: int = codec.DEFAULT_MAX_BYTES,
        cache_attr: str | None = None,
        hash_attr: str | None = None,
    ) -> None:
        """``cache_attr`` names a slot of the record that caches its encoding: decoding
        fills it with the (verified canonical) input bytes, so hashing a decoded record
        never re-encodes it. ``hash_attr`` names a slot caching the record's identity,
        the SHA-256 of its encoding: such records are interned, i.e. a decoder given
        ``known`` records reuses one instead of decoding the same bytes again (a
        block's transactions), and fills the slot of those it decodes."""
        if hash_attr is not None and cache_attr is None:
            raise ValueError(f"{name}: an interned record caches its encoding")
        self.name = name
        self.hash_attr = hash_attr
        self.build = build
        self.max_bytes = max_bytes
        self.cache_attr = cache_attr
        keyed = sorted(((codec.encode_text(f.key), f) for f in fields), key=lambda kf: kf[0])
        if len({k for k, _ in keyed}) != len(keyed):
            raise ValueError(f"{name}: duplicate wire keys")
        self._fields: tuple[tuple[bytes, FieldSpec], ...] = tuple(keyed)
        self._key_set = frozenset(f.key for f in fields)
        self._map_head = codec.map_head(len(keyed))

    def without(self, *keys: str) -> Schema[T]:
        """The same schema minus some fields: used for the bytes a signature covers."""
        return Schema(
            self.name + "-unsigned",
            self.build,
            [spec for _, spec in self._fields if spec.key not in keys],
            max_bytes=self.max_bytes,
        )  # no cache_attr: the cached encoding is the full record's

    def encode_into(self, record: T, out: list[bytes]) -> None:
        out.append(self._map_head)
        for key_bytes, spec in self._fields:
            out.append(key_bytes)
            spec.kind.encode_into(getattr(record, spec.attr), out)

    def encode(self, record: T) -> bytes:
        out: list[bytes] = []
        try:
            self.encode_into(record, out)
        except (TypeError, AttributeError, OverflowError) as exc:
            raise EncodeError(f"{self.name}: cannot encode: {exc}") from None
        return b"".join(out)

    def _check_keys(self, raw: object, where: str) -> dict[str, Any]:
        if not isinstance(raw, dict):
            raise DecodeError(f"{where}: expected a map")
        if raw.keys() != self._key_set:
            unknown = sorted(str(k) for k in set(raw) - self._key_set)
            missing = sorted(self._key_set - set(raw))
            parts = []
            if unknown:
                parts.append(f"unknown fields {unknown}")
            if missing:
                parts.append(f"missing fields {missing}")
            raise DecodeError(f"{where}: " + ", ".join(parts))
        return raw

    def _build(self, kwargs: dict[str, Any], where: str) -> T:
        try:
            return self.build(**kwargs)
        except ValidationError as exc:
            raise DecodeError(f"{where}: {exc}") from None

    def encode_cached(self, record: T) -> bytes:
        """:meth:`encode`, kept in the record's ``cache_attr`` slot after the first call."""
        assert self.cache_attr is not None
        cached: bytes | None = getattr(record, self.cache_attr)
        if cached is None:
            cached = self.encode(record)
            object.__setattr__(record, self.cache_attr, cached)
        return cached

    def from_value(self, raw: Value, name: str | None = None) -> T:
        where = name or self.name
        fields = self._check_keys(raw, where)
        kwargs = {
            spec.attr: spec.kind.decode(fields[spec.key], f"{where}.{spec.key}")
            for _, spec in self._fields
        }
        record = self._build(kwargs, where)
        if self.cache_attr is not None and isinstance(raw, codec.DecodedMap):
            object.__setattr__(record, self.cache_attr, raw.encoded())
        return record

    def to_json(self, record: T) -> dict[str, Any]:
        """Human form for the RPC edge and files: bytes as hex, same keys as the wire."""
        return {spec.key: spec.kind.to_json(getattr(record, spec.attr)) for _, spec in self._fields}

    def from_json(self, obj: Any, name: str | None = None) -> T:
        """Read the JSON form with the same strictness as :meth:`decode`."""
        where = name or self.name
        fields = self._check_keys(obj, where)
        kwargs = {
            spec.attr: spec.kind.from_json(fields[spec.key], f"{where}.{spec.key}")
            for _, spec in self._fields
        }
        return self._build(kwargs, where)

    def read(self, dec: codec.Decoder, depth: int) -> T:
        """Read one record straight from ``dec`` (no generic value, no field names).

        Accepts exactly what :meth:`from_value` of ``dec.value`` would: the map
        must hold the schema's keys, each in its canonical encoding and order,
        and every value passes its field's checks.
        """
        if depth > codec.MAX_DEPTH:
            raise DecodeError("nesting too deep")
        data = dec.data
        start = dec.pos
        head = self._map_head
        if not data.startswith(head, start):
            raise DecodeError(f"{self.name}: not a map of its fields")
        pos = start + len(head)
        kwargs = {}
        for key_bytes, spec in self._fields:
            if not data.startswith(key_bytes, pos):
                raise DecodeError(f"{self.name}: fields differ from the schema")
            dec.pos = pos + len(key_bytes)
            kwargs[spec.attr] = spec.kind.read(dec, depth + 1)
            pos = dec.pos
        try:
            record = self.build(**kwargs)
        except ValidationError as exc:
            raise DecodeError(f"{self.name}: {exc}") from None
        if self.cache_attr is not None:
            object.__setattr__(record, self.cache_attr, data[start:pos])
        return record

    def read_known(self, dec: codec.Decoder, depth: int) -> T:
        """:meth:`read`, or the record ``dec.known`` holds for these exact bytes."""
        assert dec.known is not None
        start = dec.pos
        end = dec.skip(start, depth)
        span = dec.data[start:end]
        digest = hashlib.sha256(span).digest()
        known = dec.known(digest)
        if known is not None and isinstance(known, self.build):  # type: ignore[arg-type]
            record = cast(T, known)
            if self.encode_cached(record) == span:
                dec.pos = end
                return record
        record = self.read(dec, depth)
        if dec.pos == end:  # the span was the record: its hash is known now
            object.__setattr__(record, cast(str, self.hash_attr), digest)
        return record

    def decode(
        self,
        data: bytes,
        *,
        max_bytes: int | None = None,
        known: Callable[[bytes], object | None] | None = None,
    ) -> T:
        """Decode canonical bytes into a record; :class:`DecodeError` on any defect.

        The fast path reads fields straight from the bytes; if it finds any
        defect, the input is decoded again through the reference path (generic
        value, then :meth:`from_value`), which raises the error that names the
        field. Both accept exactly the same inputs (tests/test_schema_fast.py).
        ``known`` (hash of an encoded record -> that record) lets interned nested
        records be reused, see :class:`codec.Decoder`.
        """
        limit = self.max_bytes if max_bytes is None else max_bytes
        if isinstance(data, bytes) and len(data) <= limit:
            dec = codec.Decoder(data, known)
            try:
                record = self.read(dec, 0)
            except (DecodeError, RecursionError):
                pass
            else:
                if dec.pos == dec.end:
                    return record
        return self.from_value(codec.decode(data, max_bytes=limit))


@mypyc_attr(native_class=False)  # a bytes subclass (see setup.py: compiled builds)
class CanonicalMap(bytes):
    """Bytes known to be the canonical encoding of a map (skips re-validation)."""

    __slots__ = ()


_HEX_TAG = "$hex"


def value_to_json(value: Value) -> Any:
    """JSON form of a generic value: byte strings become ``{"$hex": "..."}``."""
    if isinstance(value, bytes):
        return {_HEX_TAG: value.hex()}
    if isinstance(value, list | tuple):
        return [value_to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: value_to_json(v) for k, v in value.items()}
    return value


def value_from_json(obj: Any, name: str) -> Value:
    """Inverse of :func:`value_to_json`; floats and non-text keys are rejected."""
    if isinstance(obj, dict):
        if set(obj) == {_HEX_TAG}:
            hex_text = obj[_HEX_TAG]
            if not isinstance(hex_text, str):
                raise DecodeError(f"{name}: {_HEX_TAG} must be a hex string")
            try:
                return bytes.fromhex(hex_text)
            except ValueError:
                raise DecodeError(f"{name}: not a valid hex string") from None
        return {str(k): value_from_json(v, f"{name}.{k}") for k, v in obj.items()}
    if isinstance(obj, list):
        return [value_from_json(v, f"{name}[{i}]") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | str):
        return obj
    raise DecodeError(f"{name}: {type(obj).__name__} values are not in the data model")
