"""What the registry keeps in state: one frozen record type per value, with its schema.

Every value is the canonical CBOR encoding (``ledger.codec``) of one of these
records, or of a bare unsigned integer / text string where docs/REGISTRY.md
says so. Map keys on the wire are the attribute names, so a raw state dump is
readable with any CBOR tool.

Every record that results from a transaction embeds an :class:`Audit`: who
(``actor``, the signer), what (``action``, the kind), on what (``target``),
why (``reason``), when the client says (``claimed_ms``) and when the chain
says (``height``, ``time_ms``), and which transaction (``tx``): the 21 CFR
Part 11 audit-trail elements, on the record itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ledger.keys import PUBLIC_KEY_BYTES
from ledger.manifest import DIGEST_BYTES, SUMMARY_SCHEMA, UID_MAX_LEN, UID_PATTERN, SeriesSummary
from ledger.schema import Array, Bool, Bytes, FieldSpec, Nested, Optional, Schema, Text, UInt
from ledger.types import HASH_BYTES, TX_KIND_PATTERN
from registry.kinds import (
    GRANTEE_SCHEMA,
    ID_PATTERN,
    MAX_INVESTIGATORS,
    MAX_REASON_BYTES,
    MAX_REGISTRY_IDS,
    REGISTRY_ID_PATTERN,
    SCOPE_SCHEMA,
    SITE_PATTERN,
    Grantee,
    Scope,
)

_ID: Final = Text(64, ID_PATTERN)
_SITE: Final = Text(64, SITE_PATTERN)
_KEY: Final = Bytes(size=PUBLIC_KEY_BYTES)
_DIGEST: Final = Bytes(size=DIGEST_BYTES)
_UID: Final = Text(UID_MAX_LEN, UID_PATTERN)
_CODE: Final = Text(32)


@dataclass(frozen=True, slots=True)
class Audit:
    """Who did what, to what, why, and when (claimed and committed)."""

    actor: bytes
    action: str
    target: str
    reason: str
    claimed_ms: int
    height: int
    time_ms: int
    tx: bytes


AUDIT_SCHEMA: Final = Schema[Audit](
    "audit",
    Audit,
    [
        FieldSpec("actor", "actor", _KEY),
        FieldSpec("action", "action", Text(128, TX_KIND_PATTERN)),
        FieldSpec("target", "target", Text(128)),
        FieldSpec("reason", "reason", Text(MAX_REASON_BYTES)),
        FieldSpec("claimed_ms", "claimed_ms", UInt()),
        FieldSpec("height", "height", UInt()),
        FieldSpec("time_ms", "time_ms", UInt()),
        FieldSpec("tx", "tx", Bytes(size=HASH_BYTES)),
    ],
)
_AUDIT: Final = Nested(AUDIT_SCHEMA)


# --------------------------------------------------------------------------- members


@dataclass(frozen=True, slots=True)
class MemberState:
    """An enrolled key's current standing (the latest enrollment)."""

    member: bytes
    site: str
    role: str
    active: bool
    since_height: int
    events: int  # how many MemberEvent records the key has


MEMBER_STATE_SCHEMA: Final = Schema[MemberState](
    "member-state",
    MemberState,
    [
        FieldSpec("member", "member", _KEY),
        FieldSpec("site", "site", _SITE),
        FieldSpec("role", "role", _CODE),
        FieldSpec("active", "active", Bool()),
        FieldSpec("since_height", "since_height", UInt()),
        FieldSpec("events", "events", UInt()),
    ],
)


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """One enrollment or revocation of a key; ``active`` is the standing after it."""

    audit: Audit
    site: str
    role: str
    active: bool


MEMBER_EVENT_SCHEMA: Final = Schema[MemberEvent](
    "member-event",
    MemberEvent,
    [
        FieldSpec("audit", "audit", _AUDIT),
        FieldSpec("site", "site", _SITE),
        FieldSpec("role", "role", _CODE),
        FieldSpec("active", "active", Bool()),
    ],
)


# --------------------------------------------------------------------------- datasets


@dataclass(frozen=True, slots=True)
class DatasetRecord:
    id: str
    owner: bytes
    site: str
    kind: str  # "registered" | "derived"
    created: Audit
    supersedes: str | None
    superseded_by: str | None
    parents: tuple[str, ...]
    transformation: str | None
    code_version: bytes | None
    output: bytes | None
    accesses: int  # AccessRecord count
    trials: int  # count of trials the dataset belongs to
    sealed: Audit | None  # the transaction that fixed its content (see rules._seal)


DATASET_SCHEMA: Final = Schema[DatasetRecord](
    "dataset",
    DatasetRecord,
    [
        FieldSpec("id", "id", _ID),
        FieldSpec("owner", "owner", _KEY),
        FieldSpec("site", "site", _SITE),
        FieldSpec("kind", "kind", _CODE),
        FieldSpec("created", "created", _AUDIT),
        FieldSpec("supersedes", "supersedes", Optional(_ID)),
        FieldSpec("superseded_by", "superseded_by", Optional(_ID)),
        FieldSpec("parents", "parents", Array(_ID, 64)),
        FieldSpec("transformation", "transformation", Optional(_CODE)),
        FieldSpec("code_version", "code_version", Optional(_DIGEST)),
        FieldSpec("output", "output", Optional(_DIGEST)),
        FieldSpec("accesses", "accesses", UInt()),
        FieldSpec("trials", "trials", UInt()),
        FieldSpec("sealed", "sealed", Optional(_AUDIT)),
    ],
)


#: Why a dataset was sealed, by the kind of the transaction that sealed it.
SEAL_CAUSES: Final = {
    "dataset.register": "superseded",
    "access.log": "accessed",
    "dataset.derive": "derived from",
    "trial.register": "in a trial",
    "trial.amend": "in a trial",
    "trial.result": "in a trial result",
}


def seal_cause(sealed: Audit) -> str:
    """What sealed a dataset: ``superseded``, ``accessed``, ``derived from``, ``in a trial``..."""
    return SEAL_CAUSES.get(sealed.action, sealed.action)


@dataclass(frozen=True, slots=True)
class SeriesRecord:
    """A series of a dataset, possibly still receiving parts."""

    dataset: str
    series: str
    parts: int
    parts_received: int
    instances: int
    series_root: bytes
    leaves: int  # leaves received so far
    last_sop: str  # SOP Instance UID of the last leaf received
    summary: SeriesSummary
    complete: bool
    registered: Audit  # the part-0 transaction
    completed_height: int | None


SERIES_SCHEMA: Final = Schema[SeriesRecord](
    "series",
    SeriesRecord,
    [
        FieldSpec("dataset", "dataset", _ID),
        FieldSpec("series", "series", _UID),
        FieldSpec("parts", "parts", UInt()),
        FieldSpec("parts_received", "parts_received", UInt()),
        FieldSpec("instances", "instances", UInt()),
        FieldSpec("series_root", "series_root", _DIGEST),
        FieldSpec("leaves", "leaves", UInt()),
        FieldSpec("last_sop", "last_sop", _UID),
        FieldSpec("summary", "summary", Nested(SUMMARY_SCHEMA)),
        FieldSpec("complete", "complete", Bool()),
        FieldSpec("registered", "registered", _AUDIT),
        FieldSpec("completed_height", "completed_height", Optional(UInt())),
    ],
)


@dataclass(frozen=True, slots=True)
class InstanceRef:
    """Where an instance (by SOP Instance UID) sits: dataset, series, leaf index."""

    dataset: str
    series: str
    index: int


INSTANCE_REF_SCHEMA: Final = Schema[InstanceRef](
    "instance-ref",
    InstanceRef,
    [
        FieldSpec("dataset", "dataset", _ID),
        FieldSpec("series", "series", _UID),
        FieldSpec("index", "index", UInt()),
    ],
)


@dataclass(frozen=True, slots=True)
class AccessRecord:
    audit: Audit
    purpose: str
    consent: bytes | None
    trial: str | None


ACCESS_SCHEMA: Final = Schema[AccessRecord](
    "access",
    AccessRecord,
    [
        FieldSpec("audit", "audit", _AUDIT),
        FieldSpec("purpose", "purpose", _CODE),
        FieldSpec("consent", "consent", Optional(_DIGEST)),
        FieldSpec("trial", "trial", Optional(_ID)),
    ],
)


# --------------------------------------------------------------------------- subjects and consent


@dataclass(frozen=True, slots=True)
class SubjectRecord:
    """A patient's pseudonymous key at one site, with the site's keyed commitment."""

    subject: bytes
    site: str
    commitment: bytes
    linked: Audit  # the first link
    datasets: int  # how many datasets are linked


SUBJECT_SCHEMA: Final = Schema[SubjectRecord](
    "subject",
    SubjectRecord,
    [
        FieldSpec("subject", "subject", _KEY),
        FieldSpec("site", "site", _SITE),
        FieldSpec("commitment", "commitment", _DIGEST),
        FieldSpec("linked", "linked", _AUDIT),
        FieldSpec("datasets", "datasets", UInt()),
    ],
)


@dataclass(frozen=True, slots=True)
class LinkRecord:
    """When a subject and a dataset were linked."""

    height: int
    time_ms: int


LINK_SCHEMA: Final = Schema[LinkRecord](
    "link",
    LinkRecord,
    [FieldSpec("height", "height", UInt()), FieldSpec("time_ms", "time_ms", UInt())],
)


@dataclass(frozen=True, slots=True)
class GrantRecord:
    id: bytes
    subject: bytes
    grantee: Grantee
    scope: Scope
    purpose: str
    expires_ms: int | None
    granted: Audit
    revoked: Audit | None


GRANT_SCHEMA: Final = Schema[GrantRecord](
    "grant",
    GrantRecord,
    [
        FieldSpec("id", "id", Bytes(size=HASH_BYTES)),
        FieldSpec("subject", "subject", _KEY),
        FieldSpec("grantee", "grantee", Nested(GRANTEE_SCHEMA)),
        FieldSpec("scope", "scope", Nested(SCOPE_SCHEMA)),
        FieldSpec("purpose", "purpose", _CODE),
        FieldSpec("expires_ms", "expires_ms", Optional(UInt())),
        FieldSpec("granted", "granted", _AUDIT),
        FieldSpec("revoked", "revoked", Optional(_AUDIT)),
    ],
)


# --------------------------------------------------------------------------- trials


@dataclass(frozen=True, slots=True)
class TrialRecord:
    id: str
    owner: bytes
    site: str
    registry_ids: tuple[str, ...]
    protocol: bytes
    endpoints: bytes
    registered: Audit
    datasets: int
    events: int
    first_access_height: int | None
    first_access_time_ms: int | None


TRIAL_SCHEMA: Final = Schema[TrialRecord](
    "trial",
    TrialRecord,
    [
        FieldSpec("id", "id", _ID),
        FieldSpec("owner", "owner", _KEY),
        FieldSpec("site", "site", _SITE),
        FieldSpec(
            "registry_ids", "registry_ids", Array(Text(32, REGISTRY_ID_PATTERN), MAX_REGISTRY_IDS)
        ),
        FieldSpec("protocol", "protocol", _DIGEST),
        FieldSpec("endpoints", "endpoints", _DIGEST),
        FieldSpec("registered", "registered", _AUDIT),
        FieldSpec("datasets", "datasets", UInt()),
        FieldSpec("events", "events", UInt()),
        FieldSpec("first_access_height", "first_access_height", Optional(UInt())),
        FieldSpec("first_access_time_ms", "first_access_time_ms", Optional(UInt())),
    ],
)

#: Trial timeline event names.
TRIAL_EVENTS: Final = ("register", "amend", "result", "first_access")


@dataclass(frozen=True, slots=True)
class TrialEvent:
    """One entry of a trial's timeline. Unused fields are null / empty."""

    event: str
    audit: Audit
    protocol: bytes | None
    endpoints: bytes | None
    results: bytes | None
    datasets: tuple[str, ...]
    flagged_after_access: bool
    investigators_added: tuple[bytes, ...]  # register: every investigator, the owner first
    investigators_removed: tuple[bytes, ...]


TRIAL_EVENT_SCHEMA: Final = Schema[TrialEvent](
    "trial-event",
    TrialEvent,
    [
        FieldSpec("event", "event", _CODE),
        FieldSpec("audit", "audit", _AUDIT),
        FieldSpec("protocol", "protocol", Optional(_DIGEST)),
        FieldSpec("endpoints", "endpoints", Optional(_DIGEST)),
        FieldSpec("results", "results", Optional(_DIGEST)),
        FieldSpec("datasets", "datasets", Array(_ID, 64)),
        FieldSpec("flagged_after_access", "flagged_after_access", Bool()),
        FieldSpec("investigators_added", "investigators_added", Array(_KEY, MAX_INVESTIGATORS)),
        FieldSpec("investigators_removed", "investigators_removed", Array(_KEY, MAX_INVESTIGATORS)),
    ],
)


@dataclass(frozen=True, slots=True)
class InvestigatorRecord:
    """A key's current standing in a trial's membership (the project of its grants)."""

    investigator: bytes
    active: bool
    since_height: int  # of the event that set ``active``


INVESTIGATOR_SCHEMA: Final = Schema[InvestigatorRecord](
    "investigator",
    InvestigatorRecord,
    [
        FieldSpec("investigator", "investigator", _KEY),
        FieldSpec("active", "active", Bool()),
        FieldSpec("since_height", "since_height", UInt()),
    ],
)
