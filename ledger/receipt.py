"""Offline-verifiable receipts: proof that a dataset (or one instance) was registered.

A receipt carries everything needed to check, with nothing but the network's
genesis file, that transactions were committed by a quorum of the network's
validators, and optionally that one DICOM instance is in a registered series:

* per transaction (:class:`TxProof`): the signed transaction, its RFC 6962
  inclusion proof in the block's ``tx_root``, the block header, and the commit
  certificate (2f+1 validator signatures over that header's hash);
* for an instance (:class:`InstanceProof`): its leaf and RFC 6962 inclusion
  proof in the series manifest root that a committed ``dataset.register``
  transaction declared, and the transaction that completed that series.

:func:`verify` runs every step and reports each one, so a failing receipt says
exactly which step failed. It never raises for a receipt that decoded: the
transaction bodies are checked (:func:`registration`) before any field is used,
and a malformed one fails its ``body`` step. Malformed files fail in
:func:`Receipt.from_json` with a ``DecodeError``.
docs/RECEIPTS.md is the format's specification.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from ledger import merkle
from ledger.errors import DecodeError, LedgerError, ValidationError
from ledger.genesis import Genesis
from ledger.manifest import (
    INSTANCE_LEAF_SCHEMA,
    MAX_SERIES_LEAVES_PER_TX,
    UID_MAX_LEN,
    UID_PATTERN,
    InstanceLeaf,
    verify_instance,
)
from ledger.schema import (
    Array,
    Bytes,
    Field,
    FieldSpec,
    Nested,
    Optional,
    Schema,
    Text,
    UInt,
)
from ledger.types import (
    CERT_SCHEMA,
    CHAIN_ID_PATTERN,
    HEADER_SCHEMA,
    TX_SCHEMA,
    BlockHeader,
    CommitCertificate,
    Tx,
)

RECEIPT_FORMAT: Final = "radledger-receipt"
RECEIPT_VERSION: Final = 1
REGISTER_KIND: Final = "dataset.register"
DERIVE_KIND: Final = "dataset.derive"
MAX_ENTRIES: Final = 4096
_HASH = Bytes(size=32)
_PATH = Array(Bytes(size=32), 64)


@dataclass(frozen=True, slots=True)
class TxProof:
    """One committed transaction and the chain of evidence up to the validators."""

    tx: Tx
    index: int
    count: int
    path: tuple[bytes, ...]
    header: BlockHeader
    cert: CommitCertificate


TX_PROOF_SCHEMA: Final = Schema[TxProof](
    "tx-proof",
    TxProof,
    [
        FieldSpec("tx", "tx", Nested(TX_SCHEMA)),
        FieldSpec("index", "index", UInt()),
        FieldSpec("count", "count", UInt()),
        FieldSpec("path", "path", _PATH),
        FieldSpec("header", "header", Nested(HEADER_SCHEMA)),
        FieldSpec("cert", "cert", Nested(CERT_SCHEMA)),
    ],
)


@dataclass(frozen=True, slots=True)
class InstanceProof:
    """One instance's place in a registered series manifest."""

    leaf: InstanceLeaf
    series: str
    index: int
    size: int
    path: tuple[bytes, ...]


INSTANCE_PROOF_SCHEMA: Final = Schema[InstanceProof](
    "instance-proof",
    InstanceProof,
    [
        FieldSpec("leaf", "leaf", Nested(INSTANCE_LEAF_SCHEMA)),
        FieldSpec("series", "series", Text(64)),
        FieldSpec("index", "index", UInt()),
        FieldSpec("size", "size", UInt()),
        FieldSpec("path", "path", _PATH),
    ],
)


@dataclass(frozen=True, slots=True)
class Receipt:
    """Proof that ``dataset``'s registration (and ``instance``, if any) was committed."""

    format: str
    version: int
    chain_id: str
    genesis_hash: bytes
    dataset: str
    entries: tuple[TxProof, ...]
    instance: InstanceProof | None

    def __post_init__(self) -> None:
        if self.format != RECEIPT_FORMAT:
            raise ValidationError(f"not a radledger receipt (format {self.format!r})")
        if self.version != RECEIPT_VERSION:
            raise ValidationError(f"unsupported receipt version {self.version}")
        if not self.entries:
            raise ValidationError("a receipt needs at least one transaction")

    def to_json(self) -> dict[str, Any]:
        return RECEIPT_SCHEMA.to_json(self)

    @classmethod
    def from_json(cls, obj: Any) -> Receipt:
        return RECEIPT_SCHEMA.from_json(obj, "receipt")

    def encode(self) -> bytes:
        return RECEIPT_SCHEMA.encode(self)


RECEIPT_SCHEMA: Final = Schema[Receipt](
    "receipt",
    Receipt,
    [
        FieldSpec("format", "format", Text(32)),
        FieldSpec("v", "version", UInt(0xFFFF)),
        FieldSpec("chain", "chain_id", Text(64, CHAIN_ID_PATTERN)),
        FieldSpec("genesis", "genesis_hash", _HASH),
        FieldSpec("dataset", "dataset", Text(64)),
        FieldSpec("entries", "entries", Array(Nested(TX_PROOF_SCHEMA), MAX_ENTRIES)),
        FieldSpec("instance", "instance", Optional(Nested(INSTANCE_PROOF_SCHEMA))),
    ],
    max_bytes=256 * 1024 * 1024,
)


# --------------------------------------------------------------------------- bodies


@dataclass(frozen=True, slots=True)
class Registration:
    """The fields of a ``dataset.register`` body a receipt relies on, type-checked.

    The rest of the body (summary, reason, ...) is bound by the signature and
    was checked by the registry when it committed; a receipt proves nothing
    with it, so it is not read.
    """

    dataset: str
    series: str
    part: int
    parts: int
    leaves: tuple[InstanceLeaf, ...]
    series_root: bytes
    instances: int

    def __post_init__(self) -> None:
        if self.parts < 1:
            raise ValidationError("parts must be at least 1")
        if self.part >= self.parts:
            raise ValidationError(f"part {self.part} is not below parts {self.parts}")
        if not 1 <= len(self.leaves) <= self.instances:
            raise ValidationError(
                f"{len(self.leaves)} leaves for a series of {self.instances} instances"
            )


_DATASET_ID = Text(64)
_REGISTRATION_FIELDS: Final[tuple[tuple[str, Field], ...]] = (
    ("dataset", _DATASET_ID),
    ("series", Text(UID_MAX_LEN, UID_PATTERN)),
    ("part", UInt()),
    ("parts", UInt()),
    ("leaves", Array(Nested(INSTANCE_LEAF_SCHEMA), MAX_SERIES_LEAVES_PER_TX)),
    ("series_root", _HASH),
    ("instances", UInt()),
)


def _fields(tx: Tx, wanted: Sequence[tuple[str, Field]]) -> dict[str, Any]:
    try:
        body = tx.body_value()
    except DecodeError as exc:  # pragma: no cover - a Tx always holds a canonical map
        raise DecodeError(f"{tx.kind} body: {exc}") from None
    out: dict[str, Any] = {}
    for name, kind in wanted:
        if name not in body:
            raise DecodeError(f"{tx.kind} body: missing field {name!r}")
        out[name] = kind.decode(body[name], f"{tx.kind} body.{name}")
    return out


def registration(tx: Tx) -> Registration:
    """The checked fields of a ``dataset.register`` transaction's body.

    Raises :class:`DecodeError` naming the field if the transaction is of
    another kind or a field is missing or has the wrong type or bounds.
    """
    if tx.kind != REGISTER_KIND:
        raise DecodeError(f"a {tx.kind} transaction is not a {REGISTER_KIND}")
    fields = _fields(tx, _REGISTRATION_FIELDS)
    try:
        return Registration(**fields)
    except ValidationError as exc:
        raise DecodeError(f"{tx.kind} body: {exc}") from None


def registered_dataset(tx: Tx) -> str:
    """The dataset id a ``dataset.register`` or ``dataset.derive`` transaction writes.

    Raises :class:`DecodeError` for another kind or a malformed body (for a
    registration, every field :func:`registration` checks).
    """
    if tx.kind == REGISTER_KIND:
        return registration(tx).dataset
    if tx.kind == DERIVE_KIND:
        dataset: str = _fields(tx, (("dataset", _DATASET_ID),))["dataset"]
        return dataset
    raise DecodeError(
        f"a receipt proves only {REGISTER_KIND} and {DERIVE_KIND} transactions, not {tx.kind}"
    )


# --------------------------------------------------------------------------- verification


@dataclass(frozen=True, slots=True)
class Step:
    """One verification step: what was checked, and whether it held."""

    name: str
    ok: bool
    detail: str


_Check = Callable[[str, bool, str, str], bool]


def verify(receipt: Receipt, genesis: Genesis) -> list[Step]:
    """Check every step of ``receipt`` against ``genesis``; the receipt holds iff all pass.

    Never raises for a receipt that decoded: every value it reads is checked
    first, and a malformed one fails the step that reads it.
    """
    steps: list[Step] = []

    def step(name: str, ok: bool, good: str, bad: str) -> bool:
        steps.append(Step(name, ok, good if ok else bad))
        return ok

    step(
        "genesis",
        receipt.chain_id == genesis.chain_id and receipt.genesis_hash == genesis.hash,
        f"receipt is for chain {genesis.chain_id} (genesis {genesis.hash.hex()[:16]}...)",
        f"receipt names chain {receipt.chain_id!r} and genesis "
        f"{receipt.genesis_hash.hex()[:16]}..., the genesis file is {genesis.chain_id!r} "
        f"{genesis.hash.hex()[:16]}...",
    )
    registrations: list[Registration] = []
    for number, entry in enumerate(receipt.entries):
        found = _verify_entry(number, entry, receipt, genesis, step)
        if found is not None:
            registrations.append(found)
    _verify_series(registrations, step)
    if receipt.instance is not None:
        _verify_instance(receipt.instance, registrations, step)
    return steps


def _verify_entry(
    number: int, entry: TxProof, receipt: Receipt, genesis: Genesis, step: _Check
) -> Registration | None:
    """The entry's steps; its checked registration, if it is a well-formed one."""
    tx, header, cert = entry.tx, entry.header, entry.cert
    label = f"tx {number} ({tx.kind}, block {header.height})"
    step(
        f"{label}: signature",
        tx.chain_id == genesis.chain_id and tx.verify_signature(),
        f"signed by {tx.signer.hex()[:16]}...",
        "the transaction's signature does not verify (or it is for another chain)",
    )
    dataset: str | None = None
    found: Registration | None = None
    problem = ""
    try:
        if tx.kind == REGISTER_KIND:
            found = registration(tx)
            dataset = found.dataset
        else:
            dataset = registered_dataset(tx)
    except DecodeError as exc:
        problem = str(exc)
    step(
        f"{label}: body",
        dataset is not None,
        f"a well-formed {tx.kind} body",
        f"the body cannot be read: {problem}",
    )
    step(
        f"{label}: subject",
        dataset == receipt.dataset,
        f"registers dataset {receipt.dataset}",
        f"the transaction does not register dataset {receipt.dataset!r}",
    )
    step(
        f"{label}: inclusion in block",
        merkle.verify_inclusion(
            tx.hash, entry.index, entry.count, list(entry.path), header.tx_root
        ),
        f"transaction {entry.index + 1} of {entry.count} under tx_root "
        f"{header.tx_root.hex()[:16]}...",
        "the inclusion proof does not lead to the header's tx_root",
    )
    cert_ok = cert.block_hash == header.hash and cert.height == header.height
    detail = "the commit certificate is for another block"
    if cert_ok:
        try:
            cert.verify(genesis.chain_id, genesis.validator_keys)
        except LedgerError as exc:
            cert_ok, detail = False, f"the commit certificate does not verify: {exc}"
    step(
        f"{label}: commit certificate",
        cert_ok,
        f"{len(cert.signatures)} of {len(genesis.validators)} validators signed block "
        f"{header.height} ({header.hash.hex()[:16]}...)",
        detail,
    )
    return found


def _all_parts(parts: Sequence[Registration]) -> int | None:
    """The part count if ``parts`` are every part of one series once, with one declaration."""
    declared = {(p.parts, p.series_root, p.instances) for p in parts}
    if len(declared) != 1:
        return None
    count = parts[0].parts
    # Compare lengths first: a tampered count may be huge, never build range(count).
    if len(parts) != count or sorted(p.part for p in parts) != list(range(count)):
        return None
    return count


def _verify_series(registrations: Sequence[Registration], step: _Check) -> None:
    """Every series the receipt registers is whole: all its parts, one root, one count."""
    by_series: dict[str, list[Registration]] = {}
    for found in registrations:
        by_series.setdefault(found.series, []).append(found)
    for series, parts in sorted(by_series.items()):
        count = _all_parts(parts)
        leaves = sum(len(p.leaves) for p in parts)
        step(
            f"series {series}: complete",
            count is not None,
            f"{count} part(s) with {leaves} instances, one manifest root",
            "the receipt does not hold every part of this series, once, with one manifest root",
        )


def _verify_instance(
    proof: InstanceProof, registrations: Sequence[Registration], step: _Check
) -> None:
    label = f"instance {proof.leaf.sop_instance_uid}"
    parts = [r for r in registrations if r.series == proof.series]
    roots = {r.series_root for r in parts}
    sizes = {r.instances for r in parts}
    root = next(iter(roots)) if len(roots) == 1 else None
    if not step(
        f"{label}: series registered",
        root is not None and sizes == {proof.size},
        f"series {proof.series} of {proof.size} instances, manifest root "
        f"{root.hex()[:16] if root is not None else '?'}...",
        f"the receipt holds no consistent registration of series {proof.series}",
    ):
        return
    assert root is not None
    total = _all_parts(parts)
    step(
        f"{label}: series complete",
        total is not None,
        f"all {total} part(s) of the series were committed",
        "the receipt does not show every part of the series committed",
    )
    step(
        f"{label}: inclusion in series manifest",
        verify_instance(proof.leaf, proof.index, proof.size, proof.path, root),
        f"leaf {proof.index + 1} of {proof.size} (pixel "
        f"{proof.leaf.pixel.hex()[:16] if proof.leaf.pixel else '-'}..., "
        f"meta {proof.leaf.meta.hex()[:16]}...)",
        "the instance's inclusion proof does not lead to the registered manifest root",
    )


def all_passed(steps: Sequence[Step]) -> bool:
    return bool(steps) and all(s.ok for s in steps)
