"""The rules of every registry kind: who may sign it, what it requires, what it writes.

:func:`apply_tx` is the one entry point. It decodes the body, checks the nonce
and the claimed time, dispatches on the body's type (exhaustively: a new kind
cannot be forgotten), and appends the transaction's audit record to the
signer's history. Every refusal is a :class:`Rejected` with a code from
:data:`REJECTION_CODES`; the caller discards the writes of a refused
transaction, so a rule may write before a later check refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Final, assert_never

from ledger import merkle
from ledger.errors import ValidationError
from ledger.genesis import Genesis
from ledger.manifest import check_leaf_order, leaf_hashes_root
from ledger.types import Tx
from registry import state as keys
from registry.errors import Rejected
from registry.kinds import (
    ROLE_ADMIN,
    AccessLog,
    Body,
    ConsentGrant,
    ConsentRevoke,
    DatasetDerive,
    DatasetRegister,
    MemberEnroll,
    MemberRevoke,
    SubjectLink,
    TrialAmend,
    TrialRegister,
    TrialResult,
    check_claimed_time,
    parse_body,
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
    SUBJECT_SCHEMA,
    TRIAL_EVENT_SCHEMA,
    TRIAL_SCHEMA,
    AccessRecord,
    Audit,
    DatasetRecord,
    GrantRecord,
    InstanceRef,
    InvestigatorRecord,
    LinkRecord,
    MemberEvent,
    MemberState,
    SeriesRecord,
    SubjectRecord,
    TrialEvent,
    TrialRecord,
    seal_cause,
)
from registry.state import State, decode_text

#: Every code a refused transaction can carry, with what it means.
REJECTION_CODES: Final = {
    "wrong_chain": "the transaction is for another chain (mempool check only)",
    "unknown_kind": "the transaction kind is not a registry kind",
    "bad_body": "the body breaks its schema (unknown, missing or malformed field)",
    "nonce_reused": "the nonce is not above the signer's last committed nonce",
    "time_in_future": "time_ms is more than 2 minutes after the block time",
    "time_too_old": "time_ms is more than 24 hours before the block time",
    "unknown_site": "the site is not a consortium member in genesis",
    "not_site_admin": "the signer is not the admin of the site concerned",
    "not_a_member": "the signer is neither a site admin nor an enrolled member",
    "member_revoked": "the signer's membership was revoked",
    "role_forbidden": "the signer's role does not allow this action",
    "member_active": "the key is already an active member (or a site admin)",
    "member_not_active": "the key is not an active enrolled member",
    "admin_not_revocable": "site admins are set by genesis and cannot be revoked",
    "wrong_site": "the record belongs to another site than the signer's",
    "dataset_exists": "the dataset id is already registered",
    "unknown_dataset": "a dataset id is not registered",
    "supersedes_not_new": "supersedes is only allowed when the transaction creates the dataset",
    "already_superseded": "the dataset is already superseded by another",
    "dataset_sealed": "the dataset was used (accessed, derived from, in a trial or superseded) "
    "and takes no new series: register a new version that supersedes it",
    "series_complete": "the series is already complete in this dataset",
    "series_mismatch": "parts, series_root or instances differ from the series' part 0",
    "part_out_of_order": "the part is not the next one the series expects",
    "leaf_order": "leaves are not strictly ascending by SOP Instance UID across the series",
    "instance_exists": "a SOP Instance UID is already registered in this dataset",
    "instance_count_mismatch": "the leaves received do not add up to the declared instances",
    "series_root_mismatch": "the Merkle root over all leaves differs from series_root",
    "unknown_trial": "the trial id is not registered",
    "trial_exists": "the trial id is already registered",
    "dataset_not_in_trial": "the dataset is not one of the named trial's datasets",
    "dataset_in_trial": "the dataset already belongs to the trial",
    "unknown_grant": "no consent grant has this id",
    "grant_revoked": "the consent grant was revoked",
    "grant_expired": "the consent grant has expired",
    "grant_inactive": "the consent grant is already revoked or expired",
    "grant_not_for_grantee": "the consent grant is not for this signer, its site, or a trial "
    "it is an investigator of",
    "grant_not_for_dataset": "the consent grant does not cover this dataset",
    "consent_purpose_mismatch": "the consent grant is for another purpose",
    "not_grantor": "only the subject who granted consent can revoke it",
    "not_a_subject": "the signer is not a subject linked at the scope's site",
    "dataset_not_linked": "a scope dataset is not linked to the granting subject",
    "already_expired": "expires_ms is not after the block time",
    "commitment_mismatch": "the subject is linked at this site with another commitment",
    "already_linked": "every listed dataset is already linked to the subject",
    "investigator_not_member": "an investigator is not a site admin or an active member",
    "already_investigator": "the key is already an active investigator of the trial",
    "not_an_investigator": "the key is not an active investigator of the trial",
}


@dataclass(frozen=True, slots=True)
class Consortium:
    """What genesis says about sites and their admins, indexed for the rules."""

    sites: frozenset[str]
    admin_of: Mapping[str, bytes]  # site id -> admin key
    admin_sites: Mapping[bytes, tuple[str, ...]]  # admin key -> its sites, genesis order

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> Consortium:
        admin_sites: dict[bytes, tuple[str, ...]] = {}
        for site in genesis.sites:
            admin_sites[site.admin_key] = (*admin_sites.get(site.admin_key, ()), site.site_id)
        return cls(
            sites=frozenset(s.site_id for s in genesis.sites),
            admin_of={s.site_id: s.admin_key for s in genesis.sites},
            admin_sites=admin_sites,
        )


@dataclass(frozen=True, slots=True)
class Actor:
    """A signer acting as a member: ``role`` admin, researcher or auditor."""

    key: bytes
    role: str
    sites: tuple[str, ...]  # an admin's sites in genesis order, or the member's site

    @property
    def home(self) -> str:
        """The site of the records this actor creates."""
        return self.sites[0]


@dataclass(frozen=True, slots=True)
class Env:
    st: State
    consortium: Consortium
    tx: Tx
    height: int
    time_ms: int
    reason: str
    claimed_ms: int
    target: str

    @property
    def signer(self) -> bytes:
        return self.tx.signer

    def audit(self) -> Audit:
        return Audit(
            actor=self.tx.signer,
            action=self.tx.kind,
            target=self.target,
            reason=self.reason,
            claimed_ms=self.claimed_ms,
            height=self.height,
            time_ms=self.time_ms,
            tx=self.tx.hash,
        )


def _target(tx: Tx, body: Body) -> str:
    match body:
        case MemberEnroll() | MemberRevoke():
            return body.member.hex()
        case DatasetRegister() | DatasetDerive() | AccessLog():
            return body.dataset
        case SubjectLink():
            return body.subject.hex()
        case ConsentGrant():
            return tx.hash.hex()
        case ConsentRevoke():
            return body.grant.hex()
        case TrialRegister() | TrialAmend() | TrialResult():
            return body.trial
        case _:
            assert_never(body)


def check_envelope(st: State, tx: Tx, time_ms: int) -> Body:
    """What holds for every kind: known kind, valid body, fresh nonce, plausible time."""
    body = parse_body(tx)
    last = st.get(keys.nonce_key(tx.signer))
    last_nonce = -1 if last is None else int.from_bytes(last, "big")
    if tx.nonce <= last_nonce:
        raise Rejected(
            "nonce_reused",
            f"nonce {tx.nonce} is not above the signer's last committed nonce {last_nonce}",
        )
    check_claimed_time(body.time_ms, time_ms)
    return body


def apply_tx(st: State, consortium: Consortium, tx: Tx, height: int, time_ms: int) -> None:
    """Check ``tx`` against ``st`` and write its effects into ``st``; :class:`Rejected` if not."""
    body = check_envelope(st, tx, time_ms)
    env = Env(st, consortium, tx, height, time_ms, body.reason, body.time_ms, _target(tx, body))
    match body:
        case MemberEnroll():
            _member_enroll(env, body)
        case MemberRevoke():
            _member_revoke(env, body)
        case DatasetRegister():
            _dataset_register(env, body)
        case DatasetDerive():
            _dataset_derive(env, body)
        case AccessLog():
            _access_log(env, body)
        case SubjectLink():
            _subject_link(env, body)
        case ConsentGrant():
            _consent_grant(env, body)
        case ConsentRevoke():
            _consent_revoke(env, body)
        case TrialRegister():
            _trial_register(env, body)
        case TrialAmend():
            _trial_amend(env, body)
        case TrialResult():
            _trial_result(env, body)
        case _:
            assert_never(body)
    count = st.load_uint(keys.history_count_key(tx.signer))
    st.store(AUDIT_SCHEMA, keys.history_key(tx.signer, count), env.audit())
    st.put_value(keys.history_count_key(tx.signer), count + 1)
    st.put(keys.nonce_key(tx.signer), tx.nonce.to_bytes(8, "big"))


# --------------------------------------------------------------------------- who may act


def resolve_actor(st: State, consortium: Consortium, key: bytes) -> Actor:
    """The signer as a member of a site; :class:`Rejected` if it is not an active one."""
    admin_sites = consortium.admin_sites.get(key)
    if admin_sites:
        return Actor(key, ROLE_ADMIN, admin_sites)
    member = st.load(MEMBER_STATE_SCHEMA, keys.member_key(key))
    if member is None:
        raise Rejected(
            "not_a_member", f"signer {key.hex()} is neither a site admin nor an enrolled member"
        )
    if not member.active:
        raise Rejected(
            "member_revoked",
            f"signer {key.hex()}'s membership of {member.site} was revoked; "
            "it can no longer sign registry actions",
        )
    return Actor(key, member.role, (member.site,))


def _data_writer(env: Env) -> Actor:
    """An active admin or researcher: auditors never write data records."""
    actor = resolve_actor(env.st, env.consortium, env.signer)
    if actor.role not in (ROLE_ADMIN, "researcher"):
        raise Rejected(
            "role_forbidden",
            f"a member with role {actor.role} cannot sign {env.tx.kind}; "
            "auditors may only log access for audit",
        )
    return actor


def _require_site_member(actor: Actor, site: str, what: str) -> None:
    if site not in actor.sites:
        raise Rejected(
            "wrong_site",
            f"{what} belongs to site {site}; the signer acts for {', '.join(actor.sites)}",
        )


def _require_admin(env: Env, site: str) -> None:
    admin = env.consortium.admin_of.get(site)
    if admin is None:
        raise Rejected("unknown_site", f"site {site!r} is not a consortium member")
    if admin != env.signer:
        raise Rejected("not_site_admin", f"only the admin of site {site} may sign {env.tx.kind}")


def _dataset(env: Env, dataset: str) -> DatasetRecord:
    record = env.st.load(DATASET_SCHEMA, keys.dataset_key(dataset))
    if record is None:
        raise Rejected("unknown_dataset", f"dataset {dataset!r} is not registered")
    return record


def _trial(env: Env, trial: str) -> TrialRecord:
    record = env.st.load(TRIAL_SCHEMA, keys.trial_key(trial))
    if record is None:
        raise Rejected("unknown_trial", f"trial {trial!r} is not registered")
    return record


# --------------------------------------------------------------------------- members


def _member_enroll(env: Env, body: MemberEnroll) -> None:
    _require_admin(env, body.site)
    if body.member in env.consortium.admin_sites:
        raise Rejected(
            "member_active",
            f"key {body.member.hex()} is the admin of "
            f"{', '.join(env.consortium.admin_sites[body.member])} and already has every right",
        )
    key = keys.member_key(body.member)
    current = env.st.load(MEMBER_STATE_SCHEMA, key)
    if current is not None and current.active:
        raise Rejected(
            "member_active",
            f"key {body.member.hex()} is already an active {current.role} of {current.site}; "
            "revoke it first",
        )
    events = 0 if current is None else current.events
    env.st.store(
        MEMBER_EVENT_SCHEMA,
        keys.member_event_key(body.member, events),
        MemberEvent(env.audit(), body.site, body.role, active=True),
    )
    env.st.store(
        MEMBER_STATE_SCHEMA,
        key,
        MemberState(body.member, body.site, body.role, True, env.height, events + 1),
    )


def _member_revoke(env: Env, body: MemberRevoke) -> None:
    if body.member in env.consortium.admin_sites:
        raise Rejected(
            "admin_not_revocable",
            f"key {body.member.hex()} is a site admin set by genesis; it cannot be revoked",
        )
    key = keys.member_key(body.member)
    current = env.st.load(MEMBER_STATE_SCHEMA, key)
    if current is None or not current.active:
        raise Rejected(
            "member_not_active", f"key {body.member.hex()} is not an active enrolled member"
        )
    _require_admin(env, current.site)
    env.st.store(
        MEMBER_EVENT_SCHEMA,
        keys.member_event_key(body.member, current.events),
        MemberEvent(env.audit(), current.site, current.role, active=False),
    )
    env.st.store(
        MEMBER_STATE_SCHEMA,
        key,
        replace(current, active=False, since_height=env.height, events=current.events + 1),
    )


# --------------------------------------------------------------------------- datasets


def _new_dataset(
    env: Env, actor: Actor, dataset: str, kind: str, supersedes: str | None = None
) -> DatasetRecord:
    return DatasetRecord(
        id=dataset,
        owner=env.signer,
        site=actor.home,
        kind=kind,
        created=env.audit(),
        supersedes=supersedes,
        superseded_by=None,
        parents=(),
        transformation=None,
        code_version=None,
        output=None,
        accesses=0,
        trials=0,
        sealed=None,
    )


def _seal(env: Env, record: DatasetRecord) -> DatasetRecord:
    """``record`` sealed by this transaction, unless it is sealed already.

    A dataset is sealed at the first of: superseded, accessed, derived from, or
    named by a trial (register, amend or result). From then on it takes no new
    series (``dataset_sealed``), so what was used is what stays registered.
    """
    return record if record.sealed is not None else replace(record, sealed=env.audit())


def _seal_datasets(env: Env, dataset_ids: tuple[str, ...]) -> None:
    """Seal every listed dataset (all already checked to exist)."""
    for dataset_id in dataset_ids:
        record = _dataset(env, dataset_id)
        if record.sealed is None:
            env.st.store(DATASET_SCHEMA, keys.dataset_key(dataset_id), _seal(env, record))


def _supersede(env: Env, actor: Actor, old_id: str, new_id: str) -> None:
    old = _dataset(env, old_id)
    if old.superseded_by is not None:
        raise Rejected(
            "already_superseded", f"dataset {old_id} is already superseded by {old.superseded_by}"
        )
    if old.site != actor.home:
        raise Rejected(
            "wrong_site",
            f"dataset {old_id} belongs to site {old.site}; a new version must be made there",
        )
    env.st.store(
        DATASET_SCHEMA, keys.dataset_key(old_id), _seal(env, replace(old, superseded_by=new_id))
    )


def _refuse_sealed(dataset: DatasetRecord) -> None:
    sealed = dataset.sealed
    assert sealed is not None
    latest = dataset.superseded_by or dataset.id
    raise Rejected(
        "dataset_sealed",
        f"dataset {dataset.id} is sealed ({seal_cause(sealed)} at height {sealed.height}, "
        f"{sealed.action} {sealed.target}) and takes no new series; register a new dataset "
        f"that supersedes {latest}",
    )


def _dataset_register(env: Env, body: DatasetRegister) -> None:
    actor = _data_writer(env)
    st = env.st
    dataset = st.load(DATASET_SCHEMA, keys.dataset_key(body.dataset))
    if dataset is None:
        if body.supersedes is not None:
            _supersede(env, actor, body.supersedes, body.dataset)
        dataset = _new_dataset(env, actor, body.dataset, "registered", body.supersedes)
        st.store(DATASET_SCHEMA, keys.dataset_key(body.dataset), dataset)
    else:
        if body.supersedes is not None:
            raise Rejected(
                "supersedes_not_new",
                f"dataset {body.dataset} exists; supersedes is only allowed when creating it",
            )
        _require_site_member(actor, dataset.site, f"dataset {body.dataset}")

    where = f"series {body.series} of dataset {body.dataset}"
    series = st.load(SERIES_SCHEMA, keys.series_key(body.dataset, body.series))
    if series is None and dataset.sealed is not None:
        _refuse_sealed(dataset)
    expected_part = 0 if series is None else series.parts_received
    if series is not None:
        if series.complete:
            raise Rejected(
                "series_complete", f"{where} is already complete; register a new dataset version"
            )
        declared = (series.parts, series.series_root, series.instances)
        if (body.parts, body.series_root, body.instances) != declared:
            raise Rejected(
                "series_mismatch",
                f"{where} was declared with parts={series.parts}, "
                f"instances={series.instances} and series_root={series.series_root.hex()}",
            )
    if body.part != expected_part:
        raise Rejected(
            "part_out_of_order", f"{where} expects part {expected_part}, not {body.part}"
        )

    leaves = body.leaves
    try:
        check_leaf_order(leaves)
    except ValidationError as exc:
        raise Rejected("leaf_order", f"{where}: {exc}") from None
    if series is not None and leaves[0].sop_instance_uid.encode() <= series.last_sop.encode():
        raise Rejected(
            "leaf_order",
            f"{where}: the first leaf {leaves[0].sop_instance_uid} does not sort after "
            f"the last leaf of the previous part {series.last_sop}",
        )
    before = 0 if series is None else series.leaves
    received = before + len(leaves)
    parts_left = body.parts - body.part - 1
    if received + parts_left > body.instances:
        raise Rejected(
            "instance_count_mismatch",
            f"{where} would hold {received} leaves with {parts_left} parts still to come, "
            f"more than its {body.instances} instances",
        )
    last = parts_left == 0
    if last and received != body.instances:
        raise Rejected(
            "instance_count_mismatch",
            f"{where} ends with {received} leaves but declares {body.instances} instances",
        )
    for leaf in leaves:
        if st.has(keys.dataset_instance_key(body.dataset, leaf.sop_instance_uid)):
            raise Rejected(
                "instance_exists",
                f"SOP Instance UID {leaf.sop_instance_uid} is already registered "
                f"in dataset {body.dataset}",
            )
    if last:
        hashes = []
        for index in range(before):
            raw = st.get(keys.leaf_key(body.dataset, body.series, index))
            assert raw is not None, "a series' stored leaves are contiguous"
            hashes.append(merkle.leaf_hash(raw))
        hashes.extend(leaf.leaf_hash() for leaf in leaves)
        root = leaf_hashes_root(hashes)
        if root != body.series_root:
            raise Rejected(
                "series_root_mismatch",
                f"{where}: the Merkle root over its {received} leaves is {root.hex()}, "
                f"not the declared {body.series_root.hex()}",
            )

    for offset, leaf in enumerate(leaves):
        index = before + offset
        ref = InstanceRef(body.dataset, body.series, index)
        st.put(keys.leaf_key(body.dataset, body.series, index), leaf.encode())
        st.store(
            INSTANCE_REF_SCHEMA,
            keys.dataset_instance_key(body.dataset, leaf.sop_instance_uid),
            ref,
        )
        st.store(INSTANCE_REF_SCHEMA, keys.sop_key(leaf.sop_instance_uid, body.dataset), ref)
    if series is None:
        assert body.summary is not None  # part 0 carries it (kinds.DatasetRegister)
        series = SeriesRecord(
            dataset=body.dataset,
            series=body.series,
            parts=body.parts,
            parts_received=0,
            instances=body.instances,
            series_root=body.series_root,
            leaves=0,
            last_sop=leaves[-1].sop_instance_uid,
            summary=body.summary,
            complete=False,
            registered=env.audit(),
            completed_height=None,
        )
    series = replace(
        series,
        parts_received=body.part + 1,
        leaves=received,
        last_sop=leaves[-1].sop_instance_uid,
        complete=last,
        completed_height=env.height if last else None,
    )
    st.store(SERIES_SCHEMA, keys.series_key(body.dataset, body.series), series)
    # Which transaction carried each part: what a receipt for the series proves.
    st.put_value(keys.part_key(body.dataset, body.series, body.part), env.audit().tx)


def _dataset_derive(env: Env, body: DatasetDerive) -> None:
    actor = _data_writer(env)
    if env.st.has(keys.dataset_key(body.dataset)):
        raise Rejected("dataset_exists", f"dataset {body.dataset} is already registered")
    for parent in body.parents:
        _dataset(env, parent)
    record = replace(
        _new_dataset(env, actor, body.dataset, "derived"),
        parents=body.parents,
        transformation=body.transformation,
        code_version=body.code_version,
        output=body.output,
    )
    env.st.store(DATASET_SCHEMA, keys.dataset_key(body.dataset), record)
    link = LinkRecord(env.height, env.time_ms)
    for parent in body.parents:
        env.st.store(LINK_SCHEMA, keys.child_key(parent, body.dataset), link)
    _seal_datasets(env, body.parents)


# --------------------------------------------------------------------------- access


def _is_investigator(env: Env, trial_id: str, key: bytes) -> bool:
    record = env.st.load(INVESTIGATOR_SCHEMA, keys.trial_investigator_key(trial_id, key))
    return record is not None and record.active


def _use(env: Env, actor: Actor, body: AccessLog) -> Use:
    """The access as the consent policy sees it (registry/policy.py, shared with authz)."""
    trial = body.trial
    return Use(
        key=actor.key,
        role=actor.role,
        sites=actor.sites,
        purpose=body.purpose,
        project=trial,
        investigator=trial is not None and _is_investigator(env, trial, actor.key),
    )


def _check_consent(env: Env, use: Use, dataset_id: str, grant_id: bytes) -> None:
    grant = env.st.load(GRANT_SCHEMA, keys.grant_key(grant_id))
    what = f"consent grant {grant_id.hex()}"
    if grant is None:
        raise Rejected("unknown_grant", f"{what} does not exist")
    if grant.revoked is not None:
        raise Rejected("grant_revoked", f"{what} was revoked at height {grant.revoked.height}")
    if grant.expires_ms is not None and env.time_ms >= grant.expires_ms:
        raise Rejected("grant_expired", f"{what} expired at {grant.expires_ms}")
    refusal = consent_refusal(grant, use)
    if refusal is not None:
        raise Rejected(*refusal)
    scope = grant.scope
    if scope.datasets is None:
        covered = env.st.has(keys.subject_dataset_key(scope.site, grant.subject, dataset_id))
    else:
        covered = dataset_id in scope.datasets
    if not covered:
        raise Rejected("grant_not_for_dataset", f"{what} does not cover dataset {dataset_id}")


def _access_log(env: Env, body: AccessLog) -> None:
    actor = resolve_actor(env.st, env.consortium, env.signer)
    use = _use(env, actor, body)
    forbidden = role_refusal(use)
    if forbidden is not None:
        raise Rejected("role_forbidden", forbidden)
    dataset = _dataset(env, body.dataset)
    if body.trial is not None:
        _trial(env, body.trial)
        if not env.st.has(keys.trial_dataset_key(body.trial, body.dataset)):
            raise Rejected(
                "dataset_not_in_trial",
                f"dataset {body.dataset} is not one of trial {body.trial}'s datasets; "
                "amend the trial first",
            )
    if body.consent is not None:
        _check_consent(env, use, body.dataset, body.consent)
    st = env.st
    st.store(
        ACCESS_SCHEMA,
        keys.access_key(body.dataset, dataset.accesses),
        AccessRecord(env.audit(), body.purpose, body.consent, body.trial),
    )
    st.store(
        DATASET_SCHEMA,
        keys.dataset_key(body.dataset),
        _seal(env, replace(dataset, accesses=dataset.accesses + 1)),
    )
    for index in range(dataset.trials):
        raw = st.get(keys.dataset_trial_key(body.dataset, index))
        assert raw is not None, "a dataset's trial list is contiguous"
        trial_id = decode_text(raw)
        trial = _trial(env, trial_id)
        if trial.first_access_height is not None:
            continue
        _append_trial_event(
            env,
            replace(trial, first_access_height=env.height, first_access_time_ms=env.time_ms),
            TrialEvent(
                "first_access", env.audit(), None, None, None, (body.dataset,), False, (), ()
            ),
        )


# --------------------------------------------------------------------------- subjects and consent


def _subject_link(env: Env, body: SubjectLink) -> None:
    _require_admin(env, body.site)
    st = env.st
    key = keys.subject_key(body.site, body.subject)
    subject = st.load(SUBJECT_SCHEMA, key)
    if subject is not None and subject.commitment != body.commitment:
        raise Rejected(
            "commitment_mismatch",
            f"subject {body.subject.hex()} is linked at {body.site} with another commitment",
        )
    new = []
    for dataset_id in body.datasets:
        dataset = _dataset(env, dataset_id)
        if dataset.site != body.site:
            raise Rejected(
                "wrong_site",
                f"dataset {dataset_id} belongs to site {dataset.site}, not {body.site}",
            )
        if not st.has(keys.subject_dataset_key(body.site, body.subject, dataset_id)):
            new.append(dataset_id)
    if not new:
        raise Rejected(
            "already_linked",
            f"every listed dataset is already linked to subject {body.subject.hex()}",
        )
    if subject is None:
        subject = SubjectRecord(body.subject, body.site, body.commitment, env.audit(), 0)
    st.store(SUBJECT_SCHEMA, key, replace(subject, datasets=subject.datasets + len(new)))
    link = LinkRecord(env.height, env.time_ms)
    for dataset_id in new:
        st.store(LINK_SCHEMA, keys.subject_dataset_key(body.site, body.subject, dataset_id), link)
        st.store(LINK_SCHEMA, keys.dataset_subject_key(dataset_id, body.subject), link)


def _consent_grant(env: Env, body: ConsentGrant) -> None:
    st = env.st
    scope = body.scope
    if not st.has(keys.subject_key(scope.site, env.signer)):
        raise Rejected(
            "not_a_subject",
            f"signer {env.signer.hex()} is not a subject linked at site {scope.site}",
        )
    if body.grantee.kind == "site" and body.grantee.id not in env.consortium.sites:
        raise Rejected("unknown_site", f"grantee site {body.grantee.id!r} is not a member")
    for dataset_id in scope.datasets or ():
        if not st.has(keys.subject_dataset_key(scope.site, env.signer, dataset_id)):
            raise Rejected(
                "dataset_not_linked",
                f"dataset {dataset_id} is not linked to the signer at site {scope.site}",
            )
    if body.expires_ms is not None and body.expires_ms <= env.time_ms:
        raise Rejected(
            "already_expired",
            f"expires_ms {body.expires_ms} is not after the block time {env.time_ms}",
        )
    grant_id = env.tx.hash
    record = GrantRecord(
        id=grant_id,
        subject=env.signer,
        grantee=body.grantee,
        scope=scope,
        purpose=body.purpose,
        expires_ms=body.expires_ms,
        granted=env.audit(),
        revoked=None,
    )
    st.store(GRANT_SCHEMA, keys.grant_key(grant_id), record)
    st.put_value(keys.grantee_key(body.grantee.kind, body.grantee.id, grant_id), env.height)


def _consent_revoke(env: Env, body: ConsentRevoke) -> None:
    key = keys.grant_key(body.grant)
    grant = env.st.load(GRANT_SCHEMA, key)
    what = f"consent grant {body.grant.hex()}"
    if grant is None:
        raise Rejected("unknown_grant", f"{what} does not exist")
    if grant.subject != env.signer:
        raise Rejected("not_grantor", f"only the subject who granted {what} may revoke it")
    if grant.revoked is not None:
        raise Rejected("grant_inactive", f"{what} is already revoked")
    if grant.expires_ms is not None and env.time_ms >= grant.expires_ms:
        raise Rejected("grant_inactive", f"{what} already expired at {grant.expires_ms}")
    env.st.store(GRANT_SCHEMA, key, replace(grant, revoked=env.audit()))


# --------------------------------------------------------------------------- trials


def _append_trial_event(env: Env, trial: TrialRecord, event: TrialEvent) -> TrialRecord:
    """Append ``event`` to the timeline; the trial record as stored after it."""
    env.st.store(TRIAL_EVENT_SCHEMA, keys.trial_event_key(trial.id, trial.events), event)
    stored = replace(trial, events=trial.events + 1)
    env.st.store(TRIAL_SCHEMA, keys.trial_key(trial.id), stored)
    return stored


def _first_access(env: Env, dataset: DatasetRecord) -> Audit | None:
    """The audit record of the dataset's first logged access, if it was ever accessed."""
    if dataset.accesses == 0:
        return None
    record = env.st.load(ACCESS_SCHEMA, keys.access_key(dataset.id, 0))
    assert record is not None, "a dataset's access list is contiguous"
    return record.audit


def _joining_datasets_accessed(
    env: Env, trial: TrialRecord, datasets: tuple[str, ...]
) -> TrialRecord:
    """Record the trial's first access if a dataset joining it was already accessed.

    Access counts whenever it happened: before the dataset joined the trial, or
    before the trial existed (registering a trial after looking at its data).
    The trial's first access is set once; the ``first_access`` event carries the
    audit record of that earlier access, so the timeline stays in height order.
    """
    if trial.first_access_height is not None:
        return trial
    earliest: tuple[Audit, str] | None = None
    for dataset_id in datasets:
        audit = _first_access(env, _dataset(env, dataset_id))
        if audit is not None and (earliest is None or audit.height < earliest[0].height):
            earliest = (audit, dataset_id)
    if earliest is None:
        return trial
    audit, dataset_id = earliest
    return _append_trial_event(
        env,
        replace(trial, first_access_height=audit.height, first_access_time_ms=audit.time_ms),
        TrialEvent("first_access", audit, None, None, None, (dataset_id,), False, (), ()),
    )


def _add_trial_datasets(env: Env, trial_id: str, datasets: tuple[str, ...]) -> None:
    """Link datasets to a trial both ways (all already checked to exist)."""
    for dataset_id in datasets:
        dataset = _dataset(env, dataset_id)
        env.st.put_value(keys.trial_dataset_key(trial_id, dataset_id), env.height)
        env.st.put_value(keys.dataset_trial_key(dataset_id, dataset.trials), trial_id)
        env.st.store(
            DATASET_SCHEMA,
            keys.dataset_key(dataset_id),
            _seal(env, replace(dataset, trials=dataset.trials + 1)),
        )


def _check_investigator(env: Env, key: bytes) -> None:
    """An investigator must be a site admin or an active enrolled member."""
    try:
        resolve_actor(env.st, env.consortium, key)
    except Rejected:
        raise Rejected(
            "investigator_not_member",
            f"key {key.hex()} is not an active member of any site; enrol it first",
        ) from None


def _set_investigators(env: Env, trial_id: str, added: tuple[bytes, ...], active: bool) -> None:
    for key in added:
        env.st.store(
            INVESTIGATOR_SCHEMA,
            keys.trial_investigator_key(trial_id, key),
            InvestigatorRecord(key, active, env.height),
        )


def _trial_register(env: Env, body: TrialRegister) -> None:
    actor = _data_writer(env)
    if env.st.has(keys.trial_key(body.trial)):
        raise Rejected("trial_exists", f"trial {body.trial} is already registered")
    for dataset_id in body.datasets:
        _dataset(env, dataset_id)
    investigators = (env.signer, *(k for k in body.investigators if k != env.signer))
    for key in investigators[1:]:
        _check_investigator(env, key)
    trial = TrialRecord(
        id=body.trial,
        owner=env.signer,
        site=actor.home,
        registry_ids=body.registry_ids,
        protocol=body.protocol,
        endpoints=body.endpoints,
        registered=env.audit(),
        datasets=len(body.datasets),
        events=0,
        first_access_height=None,
        first_access_time_ms=None,
    )
    trial = _joining_datasets_accessed(env, trial, body.datasets)
    _add_trial_datasets(env, body.trial, body.datasets)
    _set_investigators(env, body.trial, investigators, active=True)
    flagged = trial.first_access_height is not None  # registered after its data was read
    _append_trial_event(
        env,
        trial,
        TrialEvent(
            "register",
            env.audit(),
            body.protocol,
            body.endpoints,
            None,
            body.datasets,
            flagged,
            investigators,
            (),
        ),
    )


def _trial_for_update(env: Env, trial_id: str) -> TrialRecord:
    actor = _data_writer(env)
    trial = _trial(env, trial_id)
    _require_site_member(actor, trial.site, f"trial {trial_id}")
    return trial


def _trial_amend(env: Env, body: TrialAmend) -> None:
    trial = _trial_for_update(env, body.trial)
    for dataset_id in body.datasets_added:
        _dataset(env, dataset_id)
        if env.st.has(keys.trial_dataset_key(body.trial, dataset_id)):
            raise Rejected(
                "dataset_in_trial", f"dataset {dataset_id} already belongs to trial {body.trial}"
            )
    for key in body.investigators_added:
        if _is_investigator(env, body.trial, key):
            raise Rejected(
                "already_investigator",
                f"key {key.hex()} is already an investigator of trial {body.trial}",
            )
        _check_investigator(env, key)
    for key in body.investigators_removed:
        if not _is_investigator(env, body.trial, key):
            raise Rejected(
                "not_an_investigator",
                f"key {key.hex()} is not an active investigator of trial {body.trial}",
            )
    trial = _joining_datasets_accessed(env, trial, body.datasets_added)
    _add_trial_datasets(env, body.trial, body.datasets_added)
    _set_investigators(env, body.trial, body.investigators_added, active=True)
    _set_investigators(env, body.trial, body.investigators_removed, active=False)
    flagged = trial.first_access_height is not None
    amended = replace(
        trial,
        protocol=trial.protocol if body.protocol is None else body.protocol,
        endpoints=trial.endpoints if body.endpoints is None else body.endpoints,
        datasets=trial.datasets + len(body.datasets_added),
    )
    _append_trial_event(
        env,
        amended,
        TrialEvent(
            "amend",
            env.audit(),
            body.protocol,
            body.endpoints,
            None,
            body.datasets_added,
            flagged,
            body.investigators_added,
            body.investigators_removed,
        ),
    )


def _trial_result(env: Env, body: TrialResult) -> None:
    trial = _trial_for_update(env, body.trial)
    for dataset_id in body.datasets:
        _dataset(env, dataset_id)
    _seal_datasets(env, body.datasets)
    _append_trial_event(
        env,
        trial,
        TrialEvent("result", env.audit(), None, None, body.results, body.datasets, False, (), ()),
    )
