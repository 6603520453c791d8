"""The registry's key layout, and a write-collecting view over committed state.

Keys are ASCII paths under ``reg/`` (plus the node's ``acct/<signer>/nonce``).
Path components are ids that match patterns without ``/`` (dataset, trial,
project and site ids, DICOM UIDs), 64-digit lower-case hex for keys and grant
ids, or 20-digit zero-padded decimal indices of append-only lists; so every
``<prefix>/`` scan returns exactly one record's children, in index order.
docs/REGISTRY.md tabulates every key and the encoding of its value.

Execution reads only single keys (``get``); list counters live in the owning
record. Queries may also scan prefixes (``items``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final, TypeVar, cast

from ledger import codec
from ledger.errors import DecodeError
from ledger.schema import Schema

T = TypeVar("T")

StateReader = Callable[[bytes], bytes | None]
Writes = dict[bytes, bytes | None]

NONCE_PREFIX: Final = b"acct/"
PREFIX: Final = b"reg/"
INDEX_DIGITS: Final = 20  # enough for any 64-bit count


def _idx(n: int) -> bytes:
    return b"%0*d" % (INDEX_DIGITS, n)


def _hex(key: bytes) -> bytes:
    return key.hex().encode("ascii")


def _id(text: str) -> bytes:
    return text.encode("ascii")


# --------------------------------------------------------------------------- keys


def nonce_key(signer: bytes) -> bytes:
    """Exactly the node's key (node/app.py): raw 32-byte signer, 8-byte big-endian value."""
    return NONCE_PREFIX + signer + b"/nonce"


def member_key(member: bytes) -> bytes:
    return b"reg/mem/" + _hex(member)


def member_event_prefix(member: bytes) -> bytes:
    return b"reg/mem/" + _hex(member) + b"/ev/"


def member_event_key(member: bytes, n: int) -> bytes:
    return member_event_prefix(member) + _idx(n)


def history_count_key(actor: bytes) -> bytes:
    return b"reg/hist/" + _hex(actor) + b"/n"


def history_prefix(actor: bytes) -> bytes:
    return b"reg/hist/" + _hex(actor) + b"/e/"


def history_key(actor: bytes, n: int) -> bytes:
    return history_prefix(actor) + _idx(n)


def dataset_key(dataset: str) -> bytes:
    return b"reg/ds/" + _id(dataset)


def series_prefix(dataset: str) -> bytes:
    return dataset_key(dataset) + b"/series/"


def series_key(dataset: str, series: str) -> bytes:
    return series_prefix(dataset) + _id(series)


def leaf_prefix(dataset: str, series: str) -> bytes:
    return dataset_key(dataset) + b"/leaf/" + _id(series) + b"/"


def leaf_key(dataset: str, series: str, n: int) -> bytes:
    return leaf_prefix(dataset, series) + _idx(n)


def part_prefix(dataset: str, series: str) -> bytes:
    return dataset_key(dataset) + b"/part/" + _id(series) + b"/"


def part_key(dataset: str, series: str, n: int) -> bytes:
    return part_prefix(dataset, series) + _idx(n)


def dataset_instance_key(dataset: str, sop: str) -> bytes:
    return dataset_key(dataset) + b"/inst/" + _id(sop)


def sop_prefix(sop: str) -> bytes:
    return b"reg/sop/" + _id(sop) + b"/"


def sop_key(sop: str, dataset: str) -> bytes:
    return sop_prefix(sop) + _id(dataset)


def access_prefix(dataset: str) -> bytes:
    return dataset_key(dataset) + b"/acc/"


def access_key(dataset: str, n: int) -> bytes:
    return access_prefix(dataset) + _idx(n)


def child_prefix(parent: str) -> bytes:
    return dataset_key(parent) + b"/child/"


def child_key(parent: str, child: str) -> bytes:
    return child_prefix(parent) + _id(child)


def dataset_trial_prefix(dataset: str) -> bytes:
    return dataset_key(dataset) + b"/trial/"


def dataset_trial_key(dataset: str, n: int) -> bytes:
    return dataset_trial_prefix(dataset) + _idx(n)


def dataset_subject_prefix(dataset: str) -> bytes:
    return dataset_key(dataset) + b"/subj/"


def dataset_subject_key(dataset: str, subject: bytes) -> bytes:
    return dataset_subject_prefix(dataset) + _hex(subject)


def subject_key(site: str, subject: bytes) -> bytes:
    return b"reg/subj/" + _id(site) + b"/" + _hex(subject)


def subject_dataset_prefix(site: str, subject: bytes) -> bytes:
    return subject_key(site, subject) + b"/ds/"


def subject_dataset_key(site: str, subject: bytes, dataset: str) -> bytes:
    return subject_dataset_prefix(site, subject) + _id(dataset)


def grant_key(grant: bytes) -> bytes:
    return b"reg/grant/" + _hex(grant)


def grantee_prefix(kind: str, ident: str) -> bytes:
    return b"reg/grantee/" + _id(kind) + b"/" + _id(ident) + b"/"


def grantee_key(kind: str, ident: str, grant: bytes) -> bytes:
    return grantee_prefix(kind, ident) + _hex(grant)


def trial_key(trial: str) -> bytes:
    return b"reg/trial/" + _id(trial)


def trial_dataset_prefix(trial: str) -> bytes:
    return trial_key(trial) + b"/ds/"


def trial_dataset_key(trial: str, dataset: str) -> bytes:
    return trial_dataset_prefix(trial) + _id(dataset)


def trial_investigator_prefix(trial: str) -> bytes:
    return trial_key(trial) + b"/inv/"


def trial_investigator_key(trial: str, investigator: bytes) -> bytes:
    return trial_investigator_prefix(trial) + _hex(investigator)


def trial_event_prefix(trial: str) -> bytes:
    return trial_key(trial) + b"/ev/"


def trial_event_key(trial: str, n: int) -> bytes:
    return trial_event_prefix(trial) + _idx(n)


# --------------------------------------------------------------------------- values


def decode_uint(raw: bytes) -> int:
    value = codec.decode(raw)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DecodeError("expected an unsigned integer")
    return value


def decode_text(raw: bytes) -> str:
    value = codec.decode(raw)
    if not isinstance(value, str):
        raise DecodeError("expected a text string")
    return value


class State:
    """Reads through to ``base``; collects this layer's writes (never deletes).

    The state machine stacks two: one per block over committed state, and one
    per transaction over the block's, merged into it only if the transaction
    is accepted. So a refused transaction writes nothing, and later
    transactions see the writes of earlier accepted ones.

    A record written with :meth:`store` is encoded only when its bytes are read
    (``get``) or the write set is taken (``writes``): a block of 500 accesses to
    one dataset rewrites its record 500 times and encodes it once.
    """

    __slots__ = ("_base", "_lazy", "_parent", "_raw", "_records")

    def __init__(self, base: StateReader, parent: State | None = None) -> None:
        """Over ``parent`` (a block's layer), decoded records are shared with it."""
        self._base = base if parent is None else parent.get
        self._parent = parent
        self._raw: dict[bytes, bytes] = {}  # written bytes
        self._lazy: dict[bytes, Schema[object]] = {}  # written records, not encoded yet
        # Decoded records of this layer (written or read), so a block of 50 accesses
        # to one dataset decodes its record once. Records are frozen: sharing is safe.
        self._records: dict[bytes, object] = {}

    @property
    def writes(self) -> dict[bytes, bytes]:
        """Every key this layer wrote, with its encoded value."""
        for key, schema in self._lazy.items():
            self._raw[key] = schema.encode(self._records[key])
        self._lazy.clear()
        return self._raw

    def get(self, key: bytes) -> bytes | None:
        value = self._raw.get(key)
        if value is not None:
            return value
        schema = self._lazy.pop(key, None)
        if schema is not None:
            value = self._raw[key] = schema.encode(self._records[key])
            return value
        return self._base(key)

    def put(self, key: bytes, value: bytes) -> None:
        self._raw[key] = value
        self._lazy.pop(key, None)
        self._records.pop(key, None)

    def load(self, schema: Schema[T], key: bytes) -> T | None:
        cached = self._records.get(key)
        if cached is not None:
            return cast(T, cached)
        if key not in self._raw and self._parent is not None:
            return self._parent.load(schema, key)
        raw = self.get(key)
        if raw is None:
            return None
        record = schema.decode(raw)
        self._records[key] = record
        return record

    def store(self, schema: Schema[T], key: bytes, record: T) -> None:
        self._records[key] = record
        self._lazy[key] = cast(Schema[object], schema)
        self._raw.pop(key, None)

    def merge(self, layer: State) -> None:
        """Take an accepted transaction's writes (and its decoded records)."""
        for key, value in layer._raw.items():
            self._raw[key] = value
            self._lazy.pop(key, None)
            if key not in layer._records:
                self._records.pop(key, None)  # written as bytes: any decoded copy is stale
        for key, schema in layer._lazy.items():
            self._lazy[key] = schema
            self._raw.pop(key, None)
        self._records.update(layer._records)

    def has(self, key: bytes) -> bool:
        return key in self._lazy or self.get(key) is not None

    def load_uint(self, key: bytes) -> int:
        raw = self.get(key)
        return 0 if raw is None else decode_uint(raw)

    def put_value(self, key: bytes, value: object) -> None:
        self.put(key, codec.encode(value))
