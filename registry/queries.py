"""Read-only questions researchers, auditors and archives ask the registry.

Every function takes a :class:`StateView` (storage's ``get`` and sorted
``items(prefix)``) and returns plain JSON-able values: byte strings as
lower-case hex, times in milliseconds, heights as integers. Unknown things
raise :class:`NotFound`; malformed arguments raise :class:`InvalidQuery`.

Queries answer from the latest committed state; the ``height`` arguments of
:func:`consent_state` and :func:`authz` replay the recorded heights of grants,
revocations, links and enrollments, which the registry never overwrites.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol, TypeVar

from ledger import codec
from ledger.errors import ValidationError
from ledger.genesis import Genesis
from ledger.keys import PUBLIC_KEY_BYTES
from ledger.manifest import InstanceLeaf, SeriesEntry, check_uid, dataset_root
from ledger.schema import Schema
from ledger.types import HASH_BYTES
from registry import state as keys
from registry.errors import InvalidQuery, NotFound
from registry.kinds import (
    GRANTEE_KINDS,
    GRANTEE_SCHEMA,
    PURPOSES,
    ROLE_ADMIN,
    SCOPE_SCHEMA,
    is_grantee_id,
    is_id,
)
from registry.policy import Use, consent_refusal, role_refusal
from registry.records import (
    ACCESS_SCHEMA,
    AUDIT_SCHEMA,
    DATASET_SCHEMA,
    GRANT_SCHEMA,
    INSTANCE_REF_SCHEMA,
    INVESTIGATOR_SCHEMA,
    LINK_SCHEMA,
    MEMBER_EVENT_SCHEMA,
    MEMBER_STATE_SCHEMA,
    SERIES_SCHEMA,
    TRIAL_EVENT_SCHEMA,
    TRIAL_SCHEMA,
    Audit,
    DatasetRecord,
    GrantRecord,
    SeriesRecord,
    seal_cause,
)
from registry.state import decode_text, decode_uint

T = TypeVar("T")

#: States of a consent grant at a height (see :func:`grant_state`).
GRANT_STATES = ("active", "revoked", "expired", "not_yet_granted")


class StateView(Protocol):
    """What queries need from storage: point reads and sorted prefix scans."""

    def get(self, key: bytes) -> bytes | None: ...

    def items(self, prefix: bytes) -> Iterator[tuple[bytes, bytes]]: ...


# --------------------------------------------------------------------------- helpers


def _load(q: StateView, schema: Schema[T], key: bytes) -> T | None:
    raw = q.get(key)
    return None if raw is None else schema.decode(raw)


def _records(q: StateView, schema: Schema[T], prefix: bytes) -> list[T]:
    return [schema.decode(value) for _, value in q.items(prefix)]


def _suffixes(q: StateView, prefix: bytes) -> list[tuple[str, bytes]]:
    """(key after ``prefix`` as text, value) for every key under ``prefix``."""
    return [(key[len(prefix) :].decode("ascii"), value) for key, value in q.items(prefix)]


def _audit(audit: Audit) -> dict[str, Any]:
    return AUDIT_SCHEMA.to_json(audit)


def _hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _check_id(what: str, value: str) -> None:
    if not isinstance(value, str) or not is_id(value):
        raise InvalidQuery(f"{what} {value!r} is not a valid id")


def _check_key(what: str, value: bytes) -> None:
    if not isinstance(value, bytes) or len(value) != PUBLIC_KEY_BYTES:
        raise InvalidQuery(f"{what} must be a {PUBLIC_KEY_BYTES}-byte key")


def _dataset_record(q: StateView, dataset_id: str) -> DatasetRecord:
    _check_id("dataset id", dataset_id)
    record = _load(q, DATASET_SCHEMA, keys.dataset_key(dataset_id))
    if record is None:
        raise NotFound("dataset", dataset_id)
    return record


def _series_json(series: SeriesRecord) -> dict[str, Any]:
    return {
        "uid": series.series,
        "parts": series.parts,
        "parts_received": series.parts_received,
        "instances": series.instances,
        "leaves_received": series.leaves,
        "series_root": series.series_root.hex(),
        "complete": series.complete,
        "completed_height": series.completed_height,
        "summary": series.summary.to_json(),
        "registered": _audit(series.registered),
    }


# --------------------------------------------------------------------------- datasets


def dataset(q: StateView, dataset_id: str) -> dict[str, Any]:
    """Everything the registry knows about one dataset."""
    record = _dataset_record(q, dataset_id)
    series = _records(q, SERIES_SCHEMA, keys.series_prefix(dataset_id))
    complete = [s for s in series if s.complete]
    root = dataset_root(SeriesEntry(s.series, s.series_root, s.instances) for s in complete)
    access = [
        {
            "actor": a.audit.actor.hex(),
            "purpose": a.purpose,
            "consent": _hex(a.consent),
            "trial": a.trial,
            "reason": a.audit.reason,
            "claimed_ms": a.audit.claimed_ms,
            "height": a.audit.height,
            "time_ms": a.audit.time_ms,
            "tx": a.audit.tx.hex(),
        }
        for a in _records(q, ACCESS_SCHEMA, keys.access_prefix(dataset_id))
    ]
    return {
        "id": record.id,
        "owner": record.owner.hex(),
        "site": record.site,
        "kind": record.kind,
        "created_height": record.created.height,
        "created_time_ms": record.created.time_ms,
        "created": _audit(record.created),
        "series": [_series_json(s) for s in series],
        "complete_series": len(complete),
        "dataset_root": root.hex(),
        "versions": {"supersedes": record.supersedes, "superseded_by": record.superseded_by},
        "sealed": None
        if record.sealed is None
        else {"cause": seal_cause(record.sealed), **_audit(record.sealed)},
        "derivation": {
            "parents": list(record.parents),
            "children": [child for child, _ in _suffixes(q, keys.child_prefix(dataset_id))],
            "transformation": record.transformation,
            "code_version": _hex(record.code_version),
            "output": _hex(record.output),
        },
        "access": access,
        "trials": [
            decode_text(value) for _, value in q.items(keys.dataset_trial_prefix(dataset_id))
        ],
        "subjects": sum(1 for _ in q.items(keys.dataset_subject_prefix(dataset_id))),
    }


def series_leaves(q: StateView, dataset_id: str, series_uid: str) -> list[InstanceLeaf]:
    """The leaves of a series in manifest order (what a verifier rebuilds the root from)."""
    _dataset_record(q, dataset_id)
    try:
        check_uid("series UID", series_uid)
    except ValidationError as exc:
        raise InvalidQuery(str(exc)) from None
    if q.get(keys.series_key(dataset_id, series_uid)) is None:
        raise NotFound("series", f"{dataset_id}/{series_uid}")
    return [
        InstanceLeaf.decode(value) for _, value in q.items(keys.leaf_prefix(dataset_id, series_uid))
    ]


def series_parts(q: StateView, dataset_id: str, series_uid: str) -> list[bytes]:
    """The hashes of the transactions that carried each part of a series, in order."""
    _dataset_record(q, dataset_id)
    if q.get(keys.series_key(dataset_id, series_uid)) is None:
        raise NotFound("series", f"{dataset_id}/{series_uid}")
    out = []
    for _, value in q.items(keys.part_prefix(dataset_id, series_uid)):
        tx_hash = codec.decode(value)
        assert isinstance(tx_hash, bytes)
        out.append(tx_hash)
    return out


def find_instance(q: StateView, sop_uid: str) -> dict[str, Any]:
    """Every dataset and series an instance (SOP Instance UID) is registered in."""
    try:
        check_uid("SOP Instance UID", sop_uid)
    except ValidationError as exc:
        raise InvalidQuery(str(exc)) from None
    locations = []
    for _, value in q.items(keys.sop_prefix(sop_uid)):
        ref = INSTANCE_REF_SCHEMA.decode(value)
        raw_leaf = q.get(keys.leaf_key(ref.dataset, ref.series, ref.index))
        series = _load(q, SERIES_SCHEMA, keys.series_key(ref.dataset, ref.series))
        assert raw_leaf is not None, "an indexed leaf is stored"
        assert series is not None, "an indexed leaf's series is stored"
        locations.append(
            {
                "dataset": ref.dataset,
                "series": ref.series,
                "index": ref.index,
                "leaf": InstanceLeaf.decode(raw_leaf).to_json(),
                "series_root": series.series_root.hex(),
                "series_complete": series.complete,
            }
        )
    if not locations:
        raise NotFound("instance", sop_uid)
    return {"sop_instance_uid": sop_uid, "locations": locations}


# --------------------------------------------------------------------------- consent


def _covers_from(q: StateView, grant: GrantRecord, dataset_id: str) -> int | None:
    """The first height at which ``grant`` covers ``dataset_id``, or ``None`` if it never does."""
    scope = grant.scope
    if scope.datasets is not None:
        return grant.granted.height if dataset_id in scope.datasets else None
    link = _load(q, LINK_SCHEMA, keys.subject_dataset_key(scope.site, grant.subject, dataset_id))
    return None if link is None else max(grant.granted.height, link.height)


def grant_state(
    grant: GrantRecord, covers_from: int, height: int | None, time_ms: int | None
) -> str:
    """``not_yet_granted`` (for this dataset), ``revoked``, ``expired`` or ``active``.

    ``height`` ``None`` means the latest state. Expiry is judged against
    ``time_ms``; with ``time_ms`` ``None`` it is not judged (see ``expiry_checked``).
    """
    if height is not None and height < covers_from:
        return "not_yet_granted"
    if grant.revoked is not None and (height is None or grant.revoked.height <= height):
        return "revoked"
    if grant.expires_ms is not None and time_ms is not None and time_ms >= grant.expires_ms:
        return "expired"
    return "active"


def _grant_json(grant: GrantRecord) -> dict[str, Any]:
    return {
        "id": grant.id.hex(),
        "subject": grant.subject.hex(),
        "grantee": GRANTEE_SCHEMA.to_json(grant.grantee),
        "scope": SCOPE_SCHEMA.to_json(grant.scope),
        "purpose": grant.purpose,
        "expires_ms": grant.expires_ms,
        "granted_height": grant.granted.height,
        "granted_time_ms": grant.granted.time_ms,
        "revoked_height": None if grant.revoked is None else grant.revoked.height,
        "revoked_time_ms": None if grant.revoked is None else grant.revoked.time_ms,
        "granted": _audit(grant.granted),
        "revoked": None if grant.revoked is None else _audit(grant.revoked),
    }


def _check_grantee(kind: str, ident: str) -> None:
    if kind not in GRANTEE_KINDS:
        raise InvalidQuery(f"grantee kind {kind!r} is not one of {', '.join(GRANTEE_KINDS)}")
    if not is_grantee_id(kind, ident):
        raise InvalidQuery(f"{ident!r} is not a valid {kind} grantee id")


def _grants_for(q: StateView, kind: str, ident: str) -> list[GrantRecord]:
    found = []
    for grant_hex, _ in _suffixes(q, keys.grantee_prefix(kind, ident)):
        grant = _load(q, GRANT_SCHEMA, keys.grant_key(bytes.fromhex(grant_hex)))
        assert grant is not None, "an indexed grant is stored"
        found.append(grant)
    return found


def grant(q: StateView, grant_id: bytes) -> dict[str, Any]:
    """One consent grant with its full record (granted and revoked audit records)."""
    if not isinstance(grant_id, bytes) or len(grant_id) != HASH_BYTES:
        raise InvalidQuery(f"a grant id is a {HASH_BYTES}-byte transaction hash")
    record = _load(q, GRANT_SCHEMA, keys.grant_key(grant_id))
    if record is None:
        raise NotFound("consent grant", grant_id.hex())
    return _grant_json(record)


def consent_state(  # noqa: PLR0917 - the positional form the node calls
    q: StateView,
    grantee_kind: str,
    grantee_id: str,
    dataset_id: str,
    height: int | None,
    time_ms: int | None,
) -> dict[str, Any]:
    """The grants that cover (grantee, dataset), each with its state at ``height``.

    ``height`` ``None`` is the latest state. Expiry is judged at ``time_ms``
    (normally the time of the block at ``height``); ``None`` skips it.
    """
    _check_grantee(grantee_kind, grantee_id)
    _dataset_record(q, dataset_id)
    grants = []
    for record in _grants_for(q, grantee_kind, grantee_id):
        start = _covers_from(q, record, dataset_id)
        if start is None:
            continue
        entry = _grant_json(record)
        entry["covers_from_height"] = start
        entry["state"] = grant_state(record, start, height, time_ms)
        grants.append(entry)
    grants.sort(key=lambda g: (g["granted_height"], g["id"]))
    return {
        "grantee": {"kind": grantee_kind, "id": grantee_id},
        "dataset": dataset_id,
        "height": height,
        "time_ms": time_ms,
        "expiry_checked": time_ms is not None,
        "grants": grants,
    }


# --------------------------------------------------------------------------- members


def _admin_sites(genesis: Genesis | None, key: bytes) -> list[str]:
    if genesis is None:
        return []
    return [s.site_id for s in genesis.sites if s.admin_key == key]


def _standing(q: StateView, key: bytes, height: int | None) -> tuple[str, str] | None:
    """(site, role) of an enrolled member active at ``height`` (latest if ``None``)."""
    if height is None:
        member = _load(q, MEMBER_STATE_SCHEMA, keys.member_key(key))
        return None if member is None or not member.active else (member.site, member.role)
    current: tuple[str, str] | None = None
    for event in _records(q, MEMBER_EVENT_SCHEMA, keys.member_event_prefix(key)):
        if event.audit.height > height:
            break
        current = (event.site, event.role) if event.active else None
    return current


def member_history(q: StateView, key: bytes, *, genesis: Genesis | None = None) -> dict[str, Any]:
    """A key's enrollments and revocations, and every registry action it signed.

    With ``genesis``, also the sites it administers.
    """
    _check_key("member key", key)
    admin_of = _admin_sites(genesis, key)
    member = _load(q, MEMBER_STATE_SCHEMA, keys.member_key(key))
    events = _records(q, MEMBER_EVENT_SCHEMA, keys.member_event_prefix(key))
    actions = _records(q, AUDIT_SCHEMA, keys.history_prefix(key))
    if not admin_of and member is None and not actions:
        raise NotFound("member", key.hex())
    return {
        "key": key.hex(),
        "admin_of": admin_of,
        "standing": None
        if member is None
        else {
            "site": member.site,
            "role": member.role,
            "active": member.active,
            "since_height": member.since_height,
        },
        "membership": [
            {
                "event": "enrolled" if e.active else "revoked",
                "site": e.site,
                "role": e.role,
                **_audit(e.audit),
            }
            for e in events
        ],
        "actions": [_audit(a) for a in actions],
    }


# --------------------------------------------------------------------------- authorisation


def _investigator_at(q: StateView, trial_id: str, key: bytes, height: int | None) -> bool:
    """Whether ``key`` is an active investigator of ``trial_id`` at ``height`` (latest: None)."""
    if height is None:
        record = _load(q, INVESTIGATOR_SCHEMA, keys.trial_investigator_key(trial_id, key))
        return record is not None and record.active
    active = False
    for event in _records(q, TRIAL_EVENT_SCHEMA, keys.trial_event_prefix(trial_id)):
        if event.event not in ("register", "amend") or event.audit.height > height:
            continue
        if key in event.investigators_added:
            active = True
        elif key in event.investigators_removed:
            active = False
    return active


def _in_project(
    q: StateView, project: str, dataset_id: str, key: bytes, height: int | None
) -> bool:
    """May ``key`` rely on grants to ``project`` for ``dataset_id`` at ``height``?

    As ``access.log`` requires: the project is a trial, the dataset is one of
    its datasets, and the key is one of its active investigators.
    """
    added = q.get(keys.trial_dataset_key(project, dataset_id))
    if added is None or (height is not None and decode_uint(added) > height):
        return False
    return _investigator_at(q, project, key, height)


def authz(
    q: StateView,
    grantee_key: bytes,
    dataset_id: str,
    time_ms: int,
    height: int | None = None,
    *,
    genesis: Genesis,
    project: str | None = None,
    purpose: str | None = None,
) -> dict[str, Any]:
    """May the member ``grantee_key`` use ``dataset_id`` at (``height``, ``time_ms``)?

    Allow only when the key is an active member (or a site admin) whose role
    allows the use, and every subject linked to the dataset has an active grant
    covering the dataset for the member, the member's site, or ``project`` (a
    trial the member is an investigator of, and the dataset is in); and, if
    ``purpose`` is given, for that purpose. The role and grant checks are
    ``access.log``'s own (registry/policy.py). The answer names the deciding
    grant per subject, or what is missing, so an archive can use the ledger as
    its policy decision point and log why.
    """
    _check_key("grantee key", grantee_key)
    _dataset_record(q, dataset_id)
    if project is not None:
        _check_id("project id", project)
    if purpose is not None and purpose not in PURPOSES:
        raise InvalidQuery(f"purpose {purpose!r} is not one of {', '.join(PURPOSES)}")
    answer: dict[str, Any] = {
        "dataset": dataset_id,
        "grantee": grantee_key.hex(),
        "height": height,
        "time_ms": time_ms,
        "project": project,
        "project_member": None,
        "purpose": purpose,
        "sites": [],
        "role": None,
        "grants": [],
        "missing_subjects": [],
    }

    def deny(code: str, message: str) -> dict[str, Any]:
        return {**answer, "decision": "deny", "code": code, "message": message}

    sites = _admin_sites(genesis, grantee_key)
    role = ROLE_ADMIN
    if not sites:
        standing = _standing(q, grantee_key, height)
        if standing is None:
            return deny("not_a_member", "the key is not an active member at that height")
        sites, role = [standing[0]], standing[1]
    answer["sites"], answer["role"] = sites, role
    investigator = project is not None and _in_project(q, project, dataset_id, grantee_key, height)
    if project is not None:
        answer["project_member"] = investigator
    use = Use(grantee_key, role, sites, purpose, project, investigator)
    forbidden = role_refusal(use)
    if forbidden is not None:
        return deny("role_forbidden", forbidden)

    subjects = [
        subject_hex
        for subject_hex, raw in _suffixes(q, keys.dataset_subject_prefix(dataset_id))
        if height is None or LINK_SCHEMA.decode(raw).height <= height
    ]
    if not subjects:
        return deny("no_subject_linked", "no subject is linked to the dataset, so no consent")

    candidates: list[GrantRecord] = _grants_for(q, "member", grantee_key.hex())
    for site in sites:
        candidates += _grants_for(q, "site", site)
    if project is not None:
        candidates += _grants_for(q, "project", project)
    candidates.sort(key=lambda g: (g.granted.height, g.id))

    for subject_hex in subjects:
        deciding = None
        for record in candidates:
            if record.subject.hex() != subject_hex or consent_refusal(record, use) is not None:
                continue
            start = _covers_from(q, record, dataset_id)
            if start is not None and grant_state(record, start, height, time_ms) == "active":
                deciding = record
                break
        if deciding is None:
            answer["missing_subjects"].append(subject_hex)
        else:
            answer["grants"].append({"subject": subject_hex, "grant": deciding.id.hex()})
    if answer["missing_subjects"]:
        return deny(
            "missing_consent",
            f"{len(answer['missing_subjects'])} of {len(subjects)} linked subjects "
            "have no active grant covering this use",
        )
    return {
        **answer,
        "decision": "allow",
        "code": "consented",
        "message": f"all {len(subjects)} linked subjects have an active covering grant",
    }


# --------------------------------------------------------------------------- trials


def trial(q: StateView, trial_id: str) -> dict[str, Any]:
    """A trial and its timeline (register, amend, result, first access) in height order."""
    _check_id("trial id", trial_id)
    record = _load(q, TRIAL_SCHEMA, keys.trial_key(trial_id))
    if record is None:
        raise NotFound("trial", trial_id)
    timeline = [
        {
            "event": e.event,
            "height": e.audit.height,
            "time_ms": e.audit.time_ms,
            "actor": e.audit.actor.hex(),
            "reason": e.audit.reason,
            "protocol": _hex(e.protocol),
            "endpoints": _hex(e.endpoints),
            "results": _hex(e.results),
            "datasets": list(e.datasets),
            "flagged_after_access": e.flagged_after_access,
            "investigators_added": [k.hex() for k in e.investigators_added],
            "investigators_removed": [k.hex() for k in e.investigators_removed],
            "audit": _audit(e.audit),
        }
        # Height order: a first access found when a dataset joined the trial carries
        # that earlier access's height (sorted() is stable within a height).
        for e in sorted(
            _records(q, TRIAL_EVENT_SCHEMA, keys.trial_event_prefix(trial_id)),
            key=lambda e: e.audit.height,
        )
    ]
    return {
        "id": record.id,
        "owner": record.owner.hex(),
        "site": record.site,
        "registry_ids": list(record.registry_ids),
        "protocol": record.protocol.hex(),
        "endpoints": record.endpoints.hex(),
        "datasets": [d for d, _ in _suffixes(q, keys.trial_dataset_prefix(trial_id))],
        "investigators": [
            record.investigator.hex()
            for record in _records(q, INVESTIGATOR_SCHEMA, keys.trial_investigator_prefix(trial_id))
            if record.active
        ],
        "first_access_height": record.first_access_height,
        "first_access_time_ms": record.first_access_time_ms,
        "registered": _audit(record.registered),
        "timeline": timeline,
    }
