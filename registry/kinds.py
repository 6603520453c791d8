"""The registry's transaction kinds: one strict body schema per kind.

Every body is a canonical CBOR map (``Tx.body``) decoded with a
:class:`ledger.schema.Schema`: unknown fields (``patient_name``) and missing
fields are refused, every value has a type and a bound, and identifiers match
fixed patterns, so no field can carry a name, a patient id, a date of birth,
free DICOM header text or image bytes. The only free text is ``reason``.

Every body carries ``reason`` (why, 1..512 UTF-8 bytes, not blank, no control
characters but newline and tab) and ``time_ms`` (when the client says it acted;
the block's time bounds it, see :func:`check_claimed_time`).

docs/REGISTRY.md lists every field, bound and rule.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

from ledger.errors import DecodeError, ValidationError
from ledger.genesis import NAME_PATTERN
from ledger.keys import PUBLIC_KEY_BYTES
from ledger.manifest import (
    DIGEST_BYTES,
    INSTANCE_LEAF_SCHEMA,
    MAX_SERIES_LEAVES_PER_TX,
    SUMMARY_SCHEMA,
    UID_MAX_LEN,
    UID_PATTERN,
    InstanceLeaf,
    SeriesSummary,
)
from ledger.schema import Array, Bytes, FieldSpec, Nested, Optional, Schema, Text, UInt
from ledger.types import Tx
from registry.errors import Rejected

# --------------------------------------------------------------------------- identifiers and codes

#: Dataset, trial and project ids.
ID_PATTERN: Final = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
#: Site ids (as in genesis).
SITE_PATTERN: Final = NAME_PATTERN
#: An ed25519 public key written as lower-case hex (a member grantee id).
KEY_HEX_PATTERN: Final = r"[0-9a-f]{64}"
#: Public trial-registry numbers: NCT01234567, ISRCTN12345678, EUCT2023-501234-12-00.
REGISTRY_ID_PATTERN: Final = r"[A-Z]{2,8}[0-9-]{4,24}"

#: Why data is used. ``audit`` is the only purpose an auditor may log.
PURPOSES: Final = (
    "research",
    "quality-assurance",
    "audit",
    "ai-training",
    "clinical-trial",
    "teaching",
)
#: How a derived dataset was produced from its parents.
TRANSFORMATIONS: Final = (
    "lossy-compression",
    "format-conversion",
    "segmentation",
    "annotation",
    "ai-output",
    "de-identification",
    "other",
)
#: Roles of enrolled members. Site admins (genesis) are not enrolled: role ``admin``.
ROLES: Final = ("researcher", "auditor")
ROLE_ADMIN: Final = "admin"
#: Who a consent grant is for.
GRANTEE_KINDS: Final = ("member", "site", "project")
AUDIT_PURPOSE: Final = "audit"

MAX_REASON_BYTES: Final = 512
MAX_PARENTS: Final = 16
MAX_LINK_DATASETS: Final = 64
MAX_SCOPE_DATASETS: Final = 64
MAX_TRIAL_DATASETS: Final = 64
MAX_REGISTRY_IDS: Final = 8
MAX_INVESTIGATORS: Final = 64
MAX_LEAVES_PER_TX: Final = MAX_SERIES_LEAVES_PER_TX
#: A claimed time may be at most this far after the block's time (clock skew) ...
MAX_CLAIM_AHEAD_MS: Final = 2 * 60 * 1000
#: ... and at most this far before it (a transaction signed offline, then sent).
MAX_CLAIM_BEHIND_MS: Final = 24 * 60 * 60 * 1000

_ID_RE: Final = re.compile(ID_PATTERN)
_SITE_RE: Final = re.compile(SITE_PATTERN)
_KEY_HEX_RE: Final = re.compile(KEY_HEX_PATTERN)


def _one_of(codes: Sequence[str]) -> str:
    return "|".join(re.escape(code) for code in codes)


_ID: Final = Text(64, ID_PATTERN)
_SITE: Final = Text(64, SITE_PATTERN)
_KEY: Final = Bytes(size=PUBLIC_KEY_BYTES)
_DIGEST: Final = Bytes(size=DIGEST_BYTES)
_REASON: Final = Text(MAX_REASON_BYTES)
_TIME: Final = UInt()
_PURPOSE: Final = Text(32, _one_of(PURPOSES))


def is_id(value: str) -> bool:
    return _ID_RE.fullmatch(value) is not None


def is_site_id(value: str) -> bool:
    return _SITE_RE.fullmatch(value) is not None


def is_key_hex(value: str) -> bool:
    return _KEY_HEX_RE.fullmatch(value) is not None


_GRANTEE_ID_CHECKS: Final = {"member": is_key_hex, "site": is_site_id, "project": is_id}


def is_grantee_id(kind: str, ident: str) -> bool:
    """Whether ``ident`` is a well-formed id for grantee ``kind`` (unknown kinds: False)."""
    valid = _GRANTEE_ID_CHECKS.get(kind)
    return valid is not None and isinstance(ident, str) and valid(ident)


#: Unicode category Cc (C0 and C1 controls, DEL) except tab and newline.
_CONTROL: Final = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _check_reason(reason: str) -> None:
    if not reason.strip():
        raise ValidationError("reason must not be blank")
    if _CONTROL.search(reason) is not None:
        raise ValidationError("reason must not contain control characters")


def _check_count(what: str, items: Sequence[Any], low: int, high: int) -> None:
    if not low <= len(items) <= high:
        raise ValidationError(f"{what} must have {low}..{high} items, got {len(items)}")


def _check_distinct(what: str, items: Sequence[Any]) -> None:
    if len(set(items)) != len(items):
        raise ValidationError(f"{what} must not repeat an item")


# --------------------------------------------------------------------------- members


@dataclass(frozen=True, slots=True)
class MemberEnroll:
    member: bytes
    site: str
    role: str
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)


@dataclass(frozen=True, slots=True)
class MemberRevoke:
    member: bytes
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True, slots=True)
class DatasetRegister:
    dataset: str
    series: str
    part: int
    parts: int
    leaves: tuple[InstanceLeaf, ...]
    series_root: bytes
    instances: int
    summary: SeriesSummary | None
    supersedes: str | None
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        if self.parts < 1:
            raise ValidationError("parts must be at least 1")
        if self.part >= self.parts:
            raise ValidationError(f"part {self.part} is not below parts {self.parts}")
        _check_count("leaves", self.leaves, 1, MAX_LEAVES_PER_TX)
        if len(self.leaves) > self.instances:
            raise ValidationError(
                f"{len(self.leaves)} leaves exceed the series' {self.instances} instances"
            )
        if self.part == 0:
            if self.summary is None:
                raise ValidationError("part 0 must carry the series summary")
            if self.summary.instances != self.instances:
                raise ValidationError(
                    f"summary counts {self.summary.instances} instances, "
                    f"the series {self.instances}"
                )
        elif self.summary is not None:
            raise ValidationError("only part 0 carries the series summary (null here)")


@dataclass(frozen=True, slots=True)
class DatasetDerive:
    dataset: str
    parents: tuple[str, ...]
    transformation: str
    code_version: bytes
    output: bytes
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        _check_count("parents", self.parents, 1, MAX_PARENTS)
        _check_distinct("parents", self.parents)


@dataclass(frozen=True, slots=True)
class AccessLog:
    dataset: str
    purpose: str
    consent: bytes | None
    trial: str | None
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)


# --------------------------------------------------------------------------- subjects and consent


@dataclass(frozen=True, slots=True)
class SubjectLink:
    subject: bytes
    site: str
    commitment: bytes
    datasets: tuple[str, ...]
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        _check_count("datasets", self.datasets, 1, MAX_LINK_DATASETS)
        _check_distinct("datasets", self.datasets)


@dataclass(frozen=True, slots=True)
class Grantee:
    """Who a grant is for: a member (``id`` = hex key), a site, or a project."""

    kind: str
    id: str

    def __post_init__(self) -> None:
        if not is_grantee_id(self.kind, self.id):
            raise ValidationError(f"{self.id!r} is not a valid {self.kind} grantee id")


@dataclass(frozen=True, slots=True)
class Scope:
    """Which of a subject's data at one site: listed datasets, or all (``None``)."""

    site: str
    datasets: tuple[str, ...] | None

    def __post_init__(self) -> None:
        if self.datasets is not None:
            _check_count("scope datasets", self.datasets, 1, MAX_SCOPE_DATASETS)
            _check_distinct("scope datasets", self.datasets)


@dataclass(frozen=True, slots=True)
class ConsentGrant:
    grantee: Grantee
    scope: Scope
    purpose: str
    expires_ms: int | None
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)


@dataclass(frozen=True, slots=True)
class ConsentRevoke:
    grant: bytes
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True, slots=True)
class TrialRegister:
    trial: str
    registry_ids: tuple[str, ...]
    protocol: bytes
    endpoints: bytes
    datasets: tuple[str, ...]
    investigators: tuple[bytes, ...]  # besides the signer, who always is one
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        _check_distinct("registry_ids", self.registry_ids)
        _check_distinct("datasets", self.datasets)
        _check_distinct("investigators", self.investigators)


@dataclass(frozen=True, slots=True)
class TrialAmend:
    trial: str
    protocol: bytes | None
    endpoints: bytes | None
    datasets_added: tuple[str, ...]
    investigators_added: tuple[bytes, ...]
    investigators_removed: tuple[bytes, ...]
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        _check_distinct("datasets_added", self.datasets_added)
        _check_distinct("investigators_added", self.investigators_added)
        _check_distinct("investigators_removed", self.investigators_removed)
        if set(self.investigators_added) & set(self.investigators_removed):
            raise ValidationError("a key cannot be both added and removed as an investigator")
        if (
            self.protocol is None
            and self.endpoints is None
            and not self.datasets_added
            and not self.investigators_added
            and not self.investigators_removed
        ):
            raise ValidationError(
                "an amendment must change the protocol, endpoints, datasets or investigators"
            )


@dataclass(frozen=True, slots=True)
class TrialResult:
    trial: str
    results: bytes
    datasets: tuple[str, ...]
    reason: str
    time_ms: int

    def __post_init__(self) -> None:
        _check_reason(self.reason)
        _check_distinct("datasets", self.datasets)


Body: TypeAlias = (
    MemberEnroll
    | MemberRevoke
    | DatasetRegister
    | DatasetDerive
    | AccessLog
    | SubjectLink
    | ConsentGrant
    | ConsentRevoke
    | TrialRegister
    | TrialAmend
    | TrialResult
)


# --------------------------------------------------------------------------- schemas


def _common() -> list[FieldSpec]:
    return [FieldSpec("reason", "reason", _REASON), FieldSpec("time_ms", "time_ms", _TIME)]


def _schema(kind: str, build: Any, fields: list[FieldSpec]) -> Schema[Any]:
    return Schema(kind, build, [*fields, *_common()])


GRANTEE_SCHEMA: Final = Schema[Grantee](
    "grantee",
    Grantee,
    [
        FieldSpec("kind", "kind", Text(16, _one_of(GRANTEE_KINDS))),
        FieldSpec("id", "id", Text(64)),
    ],
)
SCOPE_SCHEMA: Final = Schema[Scope](
    "scope",
    Scope,
    [
        FieldSpec("site", "site", _SITE),
        FieldSpec("datasets", "datasets", Optional(Array(_ID, MAX_SCOPE_DATASETS))),
    ],
)

BODY_SCHEMAS: Final[dict[str, Schema[Any]]] = {
    "member.enroll": _schema(
        "member.enroll",
        MemberEnroll,
        [
            FieldSpec("member", "member", _KEY),
            FieldSpec("site", "site", _SITE),
            FieldSpec("role", "role", Text(16, _one_of(ROLES))),
        ],
    ),
    "member.revoke": _schema("member.revoke", MemberRevoke, [FieldSpec("member", "member", _KEY)]),
    "dataset.register": _schema(
        "dataset.register",
        DatasetRegister,
        [
            FieldSpec("dataset", "dataset", _ID),
            FieldSpec("series", "series", Text(UID_MAX_LEN, UID_PATTERN)),
            FieldSpec("part", "part", UInt()),
            FieldSpec("parts", "parts", UInt()),
            FieldSpec("leaves", "leaves", Array(Nested(INSTANCE_LEAF_SCHEMA), MAX_LEAVES_PER_TX)),
            FieldSpec("series_root", "series_root", _DIGEST),
            FieldSpec("instances", "instances", UInt()),
            FieldSpec("summary", "summary", Optional(Nested(SUMMARY_SCHEMA))),
            FieldSpec("supersedes", "supersedes", Optional(_ID)),
        ],
    ),
    "dataset.derive": _schema(
        "dataset.derive",
        DatasetDerive,
        [
            FieldSpec("dataset", "dataset", _ID),
            FieldSpec("parents", "parents", Array(_ID, MAX_PARENTS)),
            FieldSpec("transformation", "transformation", Text(32, _one_of(TRANSFORMATIONS))),
            FieldSpec("code_version", "code_version", _DIGEST),
            FieldSpec("output", "output", _DIGEST),
        ],
    ),
    "access.log": _schema(
        "access.log",
        AccessLog,
        [
            FieldSpec("dataset", "dataset", _ID),
            FieldSpec("purpose", "purpose", _PURPOSE),
            FieldSpec("consent", "consent", Optional(_DIGEST)),
            FieldSpec("trial", "trial", Optional(_ID)),
        ],
    ),
    "subject.link": _schema(
        "subject.link",
        SubjectLink,
        [
            FieldSpec("subject", "subject", _KEY),
            FieldSpec("site", "site", _SITE),
            FieldSpec("commitment", "commitment", _DIGEST),
            FieldSpec("datasets", "datasets", Array(_ID, MAX_LINK_DATASETS)),
        ],
    ),
    "consent.grant": _schema(
        "consent.grant",
        ConsentGrant,
        [
            FieldSpec("grantee", "grantee", Nested(GRANTEE_SCHEMA)),
            FieldSpec("scope", "scope", Nested(SCOPE_SCHEMA)),
            FieldSpec("purpose", "purpose", _PURPOSE),
            FieldSpec("expires_ms", "expires_ms", Optional(UInt())),
        ],
    ),
    "consent.revoke": _schema(
        "consent.revoke", ConsentRevoke, [FieldSpec("grant", "grant", _DIGEST)]
    ),
    "trial.register": _schema(
        "trial.register",
        TrialRegister,
        [
            FieldSpec("trial", "trial", _ID),
            FieldSpec(
                "registry_ids",
                "registry_ids",
                Array(Text(32, REGISTRY_ID_PATTERN), MAX_REGISTRY_IDS),
            ),
            FieldSpec("protocol", "protocol", _DIGEST),
            FieldSpec("endpoints", "endpoints", _DIGEST),
            FieldSpec("datasets", "datasets", Array(_ID, MAX_TRIAL_DATASETS)),
            FieldSpec("investigators", "investigators", Array(_KEY, MAX_INVESTIGATORS)),
        ],
    ),
    "trial.amend": _schema(
        "trial.amend",
        TrialAmend,
        [
            FieldSpec("trial", "trial", _ID),
            FieldSpec("protocol", "protocol", Optional(_DIGEST)),
            FieldSpec("endpoints", "endpoints", Optional(_DIGEST)),
            FieldSpec("datasets_added", "datasets_added", Array(_ID, MAX_TRIAL_DATASETS)),
            FieldSpec("investigators_added", "investigators_added", Array(_KEY, MAX_INVESTIGATORS)),
            FieldSpec(
                "investigators_removed", "investigators_removed", Array(_KEY, MAX_INVESTIGATORS)
            ),
        ],
    ),
    "trial.result": _schema(
        "trial.result",
        TrialResult,
        [
            FieldSpec("trial", "trial", _ID),
            FieldSpec("results", "results", _DIGEST),
            FieldSpec("datasets", "datasets", Array(_ID, MAX_TRIAL_DATASETS)),
        ],
    ),
}
KINDS: Final = tuple(sorted(BODY_SCHEMAS))


class _ParsedBodies:
    """Parsed bodies by transaction hash.

    A transaction is parsed at admission and again when its block executes
    (twice on the proposer). The hash covers the body and bodies are frozen, so
    the memo can never answer differently from parsing. Bounded by count and by
    encoded body bytes (large registrations parse into many objects); the
    oldest entries go first.
    """

    __slots__ = ("_bytes", "_entries", "max_bytes", "max_entries")

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: dict[bytes, tuple[Body, int]] = {}
        self._bytes = 0
        self.max_entries = max_entries
        self.max_bytes = max_bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, tx: Tx) -> Body:
        tx_hash = tx.hash
        entry = self._entries.get(tx_hash)
        if entry is not None:
            return entry[0]
        parsed = _parse_body(tx)
        size = len(tx.body)
        entries = self._entries
        while entries and (len(entries) >= self.max_entries or self._bytes + size > self.max_bytes):
            self._bytes -= entries.pop(next(iter(entries)))[1]
        entries[tx_hash] = (parsed, size)
        self._bytes += size
        return parsed


_PARSED: Final = _ParsedBodies(max_entries=20_000, max_bytes=8 * 1024 * 1024)


def parse_body(tx: Tx) -> Body:
    """The typed body of ``tx``; :class:`Rejected` (``unknown_kind``, ``bad_body``) if not."""
    return _PARSED.get(tx)


def _parse_body(tx: Tx) -> Body:
    schema = BODY_SCHEMAS.get(tx.kind)
    if schema is None:
        raise Rejected(
            "unknown_kind",
            f"transaction kind {tx.kind!r} is not a registry kind (known: {', '.join(KINDS)})",
        )
    try:
        body: Body = schema.decode(tx.body)
    except DecodeError as exc:
        raise Rejected("bad_body", f"invalid body: {exc}") from None
    return body


def check_claimed_time(claimed_ms: int, block_time_ms: int) -> None:
    """Refuse a client-claimed time too far after or before the block's time."""
    if claimed_ms > block_time_ms + MAX_CLAIM_AHEAD_MS:
        raise Rejected(
            "time_in_future",
            f"time_ms {claimed_ms} is more than {MAX_CLAIM_AHEAD_MS} ms after "
            f"the block time {block_time_ms}",
        )
    if claimed_ms < block_time_ms - MAX_CLAIM_BEHIND_MS:
        raise Rejected(
            "time_too_old",
            f"time_ms {claimed_ms} is more than {MAX_CLAIM_BEHIND_MS} ms before "
            f"the block time {block_time_ms}",
        )
