"""subject.link, consent.grant / consent.revoke, access.log with consent, consent_state, authz."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.keys import SigningKey
from registry import queries
from registry.errors import InvalidQuery, NotFound
from tests.registry.helpers import (
    ADMIN,
    AUDITOR,
    GENESIS,
    RESEARCHER,
    RESEARCHER1,
    STRANGER,
    SUBJECT,
    SUBJECT2,
    Chain,
    access_body,
    amend_body,
    grant_body,
    leaves,
    link_body,
    register_bodies,
    trial_body,
)

ME = RESEARCHER.public_key.hex()


def _grant(chain: Chain, body: dict[str, Any], key: SigningKey = SUBJECT) -> bytes:
    return chain.submit(key, "consent.grant", body).hash


def _add_dataset(
    chain: Chain, dataset: str, key: SigningKey = RESEARCHER, prefix: str = "1.4"
) -> None:
    [body] = register_bodies(dataset, "1.4.1", leaves(2, prefix=prefix))
    chain.submit(key, "dataset.register", body)


# --------------------------------------------------------------------------- subject.link


def test_link_rules(pop: Chain) -> None:
    _add_dataset(pop, "ds1", RESEARCHER1)  # at site1
    pop.refuse(RESEARCHER, "subject.link", link_body(SUBJECT2, "site0", ["ds0"]), "not_site_admin")
    pop.refuse(ADMIN[1], "subject.link", link_body(SUBJECT2, "site0", ["ds0"]), "not_site_admin")
    pop.refuse(ADMIN[0], "subject.link", link_body(SUBJECT2, "site7", ["ds0"]), "unknown_site")
    pop.refuse(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["nope"]), "unknown_dataset")
    pop.refuse(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["ds1"]), "wrong_site")
    pop.refuse(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", []), "bad_body")
    pop.refuse(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["ds0", "ds0"]), "bad_body")
    # SUBJECT is linked to ds0 with secret s0 already
    pop.refuse(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["ds0"]), "already_linked")
    _add_dataset(pop, "ds2")
    pop.refuse(
        ADMIN[0],
        "subject.link",
        link_body(SUBJECT, "site0", ["ds2"], secret="other"),
        "commitment_mismatch",
    )
    pop.submit(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["ds0", "ds2"]))
    assert queries.dataset(pop.state, "ds2")["subjects"] == 1
    # the same patient at another site is another record with that site's commitment
    pop.submit(ADMIN[1], "subject.link", link_body(SUBJECT, "site1", ["ds1"], secret="site1"))
    # a dataset may be linked to several subjects
    pop.submit(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["ds0"]))
    assert queries.dataset(pop.state, "ds0")["subjects"] == 2


# --------------------------------------------------------------------------- consent.grant / revoke


def test_grant_rules(pop: Chain) -> None:
    _add_dataset(pop, "ds2")  # not linked to SUBJECT
    pop.refuse(SUBJECT2, "consent.grant", grant_body("member", ME), "not_a_subject")
    pop.refuse(SUBJECT, "consent.grant", grant_body("member", ME, site="site1"), "not_a_subject")
    pop.refuse(SUBJECT, "consent.grant", grant_body("site", "site9"), "unknown_site")
    pop.refuse(
        SUBJECT, "consent.grant", grant_body("member", ME, datasets=["ds2"]), "dataset_not_linked"
    )
    pop.refuse(
        SUBJECT,
        "consent.grant",
        grant_body("member", ME, expires_ms=pop.time_ms + 1000),  # == next block time
        "already_expired",
    )
    pop.refuse(SUBJECT, "consent.grant", grant_body("member", ME.upper()), "bad_body")
    pop.refuse(SUBJECT, "consent.grant", grant_body("member", "site0"), "bad_body")
    pop.refuse(SUBJECT, "consent.grant", grant_body("group", "x"), "bad_body")
    pop.refuse(SUBJECT, "consent.grant", grant_body("member", ME, datasets=[]), "bad_body")
    pop.refuse(SUBJECT, "consent.grant", grant_body("project", "p/1"), "bad_body")
    grant_id = _grant(
        pop, grant_body("member", ME, datasets=["ds0"], expires_ms=pop.time_ms + 10**6)
    )
    record = queries.grant(pop.state, grant_id)
    assert record["subject"] == SUBJECT.public_key.hex()
    assert record["granted_height"] == pop.height
    assert record["revoked_height"] is None


def test_revoke_rules(pop: Chain) -> None:
    grant_id = _grant(pop, grant_body("member", ME))
    pop.refuse(SUBJECT2, "consent.revoke", {"grant": grant_id}, "not_grantor")
    pop.refuse(ADMIN[0], "consent.revoke", {"grant": grant_id}, "not_grantor")
    pop.refuse(SUBJECT, "consent.revoke", {"grant": b"\x07" * 32}, "unknown_grant")
    pop.submit(SUBJECT, "consent.revoke", {"grant": grant_id})
    assert queries.grant(pop.state, grant_id)["revoked_height"] == pop.height
    pop.refuse(SUBJECT, "consent.revoke", {"grant": grant_id}, "grant_inactive")
    expiring = _grant(pop, grant_body("member", ME, expires_ms=pop.time_ms + 1500))
    assert pop.block([]) == []  # an empty block: time passes
    pop.refuse(SUBJECT, "consent.revoke", {"grant": expiring}, "grant_inactive")


# ------------------------------------------------------------------------- access with consent


def test_access_with_a_grant_to_the_member(pop: Chain) -> None:
    grant_id = _grant(pop, grant_body("member", ME))
    pop.submit(RESEARCHER, "access.log", access_body("ds0", consent=grant_id))
    [entry] = queries.dataset(pop.state, "ds0")["access"]
    assert entry["actor"] == ME
    assert entry["consent"] == grant_id.hex()
    assert entry["purpose"] == "research"
    assert entry["height"] == pop.height
    pop.refuse(
        RESEARCHER1, "access.log", access_body("ds0", consent=grant_id), "grant_not_for_grantee"
    )


def test_access_with_a_grant_to_the_site_or_project(pop: Chain) -> None:
    site_grant = _grant(pop, grant_body("site", "site0"))
    pop.submit(ADMIN[0], "access.log", access_body("ds0", consent=site_grant))
    pop.submit(RESEARCHER, "access.log", access_body("ds0", consent=site_grant))
    pop.refuse(
        RESEARCHER1, "access.log", access_body("ds0", consent=site_grant), "grant_not_for_grantee"
    )
    project_grant = _grant(pop, grant_body("project", "lung-ai"))
    pop.submit(RESEARCHER1, "trial.register", trial_body("lung-ai", ["ds0"]))
    pop.refuse(
        RESEARCHER1,
        "access.log",
        access_body("ds0", consent=project_grant),
        "grant_not_for_grantee",
    )
    pop.submit(
        RESEARCHER1, "access.log", access_body("ds0", consent=project_grant, trial="lung-ai")
    )


def test_a_project_grant_is_for_the_trials_investigators_only(pop: Chain) -> None:
    project_grant = _grant(pop, grant_body("project", "lung-ai"))
    pop.submit(RESEARCHER1, "trial.register", trial_body("lung-ai", ["ds0"]))
    by_trial = access_body("ds0", consent=project_grant, trial="lung-ai")
    # any active member could name the project before; now only its investigators
    refusal = pop.refuse(RESEARCHER, "access.log", by_trial, "grant_not_for_grantee")
    assert "not an active investigator of trial lung-ai" in refusal.message
    pop.refuse(ADMIN[0], "access.log", by_trial, "grant_not_for_grantee")
    pop.submit(RESEARCHER1, "trial.amend", amend_body("lung-ai", investigators_added=[RESEARCHER]))
    pop.submit(RESEARCHER, "access.log", by_trial)
    pop.submit(
        RESEARCHER1, "trial.amend", amend_body("lung-ai", investigators_removed=[RESEARCHER])
    )
    pop.refuse(RESEARCHER, "access.log", by_trial, "grant_not_for_grantee")
    info = queries.trial(pop.state, "lung-ai")
    assert info["investigators"] == [RESEARCHER1.public_key.hex()]
    changes = [
        (e["event"], e["investigators_added"], e["investigators_removed"])
        for e in info["timeline"]
        if e["event"] in ("register", "amend")
    ]
    assert changes == [
        ("register", [RESEARCHER1.public_key.hex()], []),
        ("amend", [RESEARCHER.public_key.hex()], []),
        ("amend", [], [RESEARCHER.public_key.hex()]),
    ]


def test_investigator_rules(pop: Chain) -> None:
    pop.refuse(
        RESEARCHER,
        "trial.register",
        trial_body("T1", investigators=[STRANGER]),
        "investigator_not_member",
    )
    pop.refuse(
        RESEARCHER,
        "trial.register",
        trial_body("T1", investigators=[RESEARCHER1, RESEARCHER1]),
        "bad_body",
    )
    # the signer is always an investigator, listed or not; members of any site may be
    pop.submit(RESEARCHER, "trial.register", trial_body("T1", investigators=[RESEARCHER, ADMIN[2]]))
    assert queries.trial(pop.state, "T1")["investigators"] == sorted(
        [RESEARCHER.public_key.hex(), ADMIN[2].public_key.hex()]
    )
    add = amend_body("T1", investigators_added=[ADMIN[2]])
    pop.refuse(RESEARCHER, "trial.amend", add, "already_investigator")
    remove = amend_body("T1", investigators_removed=[RESEARCHER1])
    pop.refuse(RESEARCHER, "trial.amend", remove, "not_an_investigator")
    both = amend_body("T1", investigators_added=[AUDITOR], investigators_removed=[AUDITOR])
    pop.refuse(RESEARCHER, "trial.amend", both, "bad_body")
    pop.refuse(
        RESEARCHER1,
        "trial.amend",
        amend_body("T1", investigators_added=[RESEARCHER1]),
        "wrong_site",  # membership is amended by the trial's site, like the protocol
    )
    pop.submit(ADMIN[0], "member.revoke", {"member": AUDITOR.public_key})
    pop.refuse(
        RESEARCHER,
        "trial.amend",
        amend_body("T1", investigators_added=[AUDITOR]),
        "investigator_not_member",
    )


def test_access_consent_refusals(pop: Chain) -> None:
    _add_dataset(pop, "ds2")
    pop.submit(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["ds2"]))
    listed = _grant(pop, grant_body("member", ME, datasets=["ds0"]))
    pop.refuse(
        RESEARCHER, "access.log", access_body("ds2", consent=listed), "grant_not_for_dataset"
    )
    pop.refuse(
        RESEARCHER,
        "access.log",
        access_body("ds0", "ai-training", consent=listed),
        "consent_purpose_mismatch",
    )
    pop.refuse(RESEARCHER, "access.log", access_body("ds0", consent=b"\x09" * 32), "unknown_grant")
    # granted in the block at t+1000, expires exactly at the time of the block after next
    expiring = _grant(pop, grant_body("member", ME, expires_ms=pop.time_ms + 3000))
    pop.submit(RESEARCHER, "access.log", access_body("ds0", consent=expiring))  # at t+2000
    pop.refuse(RESEARCHER, "access.log", access_body("ds0", consent=expiring), "grant_expired")
    pop.submit(SUBJECT, "consent.revoke", {"grant": listed})
    pop.refuse(RESEARCHER, "access.log", access_body("ds0", consent=listed), "grant_revoked")
    pop.refuse(RESEARCHER, "access.log", access_body("nope"), "unknown_dataset")


def test_an_all_data_grant_covers_datasets_linked_later(pop: Chain) -> None:
    everything = _grant(pop, grant_body("member", ME))
    _add_dataset(pop, "later")
    pop.refuse(
        RESEARCHER, "access.log", access_body("later", consent=everything), "grant_not_for_dataset"
    )
    pop.submit(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["later"]))
    pop.submit(RESEARCHER, "access.log", access_body("later", consent=everything))


# --------------------------------------------------------------------------- consent_state


def test_consent_state_at_past_heights(pop: Chain) -> None:
    before = pop.height
    expires = pop.time_ms + 100_000
    grant_id = _grant(pop, grant_body("member", ME, expires_ms=expires))
    granted_at = pop.height
    pop.submit(RESEARCHER, "access.log", access_body("ds0", consent=grant_id))
    pop.submit(SUBJECT, "consent.revoke", {"grant": grant_id})
    revoked_at = pop.height

    def state_at(height: int | None, time_ms: int | None = None) -> str:
        answer = queries.consent_state(pop.state, "member", ME, "ds0", height, time_ms)
        [entry] = answer["grants"]
        assert entry["id"] == grant_id.hex()
        return str(entry["state"])

    assert state_at(before) == "not_yet_granted"
    assert state_at(granted_at) == "active"
    assert state_at(revoked_at - 1) == "active"
    assert state_at(revoked_at) == "revoked"
    assert state_at(None) == "revoked"
    assert state_at(granted_at, expires) == "expired"
    assert state_at(granted_at, expires - 1) == "active"
    assert (
        queries.consent_state(pop.state, "member", ME, "ds0", None, None)["expiry_checked"] is False
    )
    other = queries.consent_state(pop.state, "member", RESEARCHER1.public_key.hex(), "ds0", None, 0)
    assert other["grants"] == []


def test_consent_state_for_an_all_data_grant_starts_at_the_link(pop: Chain) -> None:
    grant_id = _grant(pop, grant_body("site", "site0"))
    _add_dataset(pop, "later")
    assert queries.consent_state(pop.state, "site", "site0", "later", None, None)["grants"] == []
    pop.submit(ADMIN[0], "subject.link", link_body(SUBJECT, "site0", ["later"]))
    linked_at = pop.height
    [entry] = queries.consent_state(pop.state, "site", "site0", "later", None, None)["grants"]
    assert entry["id"] == grant_id.hex()
    assert entry["covers_from_height"] == linked_at
    [past] = queries.consent_state(pop.state, "site", "site0", "later", linked_at - 1, None)[
        "grants"
    ]
    assert past["state"] == "not_yet_granted"


def test_consent_state_argument_checks(pop: Chain) -> None:
    with pytest.raises(InvalidQuery):
        queries.consent_state(pop.state, "group", "x", "ds0", None, None)
    with pytest.raises(InvalidQuery):
        queries.consent_state(pop.state, "member", "DOE", "ds0", None, None)
    with pytest.raises(NotFound):
        queries.consent_state(pop.state, "member", ME, "nope", None, None)
    with pytest.raises(NotFound):
        queries.grant(pop.state, b"\x00" * 32)


# --------------------------------------------------------------------------- authz


def test_authz_allows_with_the_deciding_grant_and_denies_without(pop: Chain) -> None:
    now = pop.time_ms
    denied = queries.authz(pop.state, RESEARCHER.public_key, "ds0", now, None, genesis=GENESIS)
    assert denied["decision"] == "deny"
    assert denied["code"] == "missing_consent"
    assert denied["missing_subjects"] == [SUBJECT.public_key.hex()]
    grant_id = _grant(pop, grant_body("site", "site0"))
    granted_at = pop.height
    allowed = queries.authz(pop.state, RESEARCHER.public_key, "ds0", now, None, genesis=GENESIS)
    assert allowed["decision"] == "allow"
    assert allowed["grants"] == [{"subject": SUBJECT.public_key.hex(), "grant": grant_id.hex()}]
    assert allowed["role"] == "researcher"
    # the admin of site0 is covered by the site grant too; another site is not
    admin = queries.authz(pop.state, ADMIN[0].public_key, "ds0", now, None, genesis=GENESIS)
    assert admin["decision"] == "allow"
    other = queries.authz(pop.state, RESEARCHER1.public_key, "ds0", now, None, genesis=GENESIS)
    assert other["decision"] == "deny"
    # at a height before the grant
    past = queries.authz(
        pop.state, RESEARCHER.public_key, "ds0", now, granted_at - 1, genesis=GENESIS
    )
    assert past["decision"] == "deny"
    # a second subject without consent blocks the dataset
    pop.submit(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["ds0"]))
    before_link = queries.authz(
        pop.state, RESEARCHER.public_key, "ds0", now, pop.height - 1, genesis=GENESIS
    )
    assert before_link["decision"] == "allow"
    blocked = queries.authz(pop.state, RESEARCHER.public_key, "ds0", now, None, genesis=GENESIS)
    assert blocked["decision"] == "deny"
    assert blocked["missing_subjects"] == [SUBJECT2.public_key.hex()]
    assert blocked["grants"] == [{"subject": SUBJECT.public_key.hex(), "grant": grant_id.hex()}]
    second = _grant(pop, grant_body("member", ME, purpose="ai-training"), key=SUBJECT2)
    both = queries.authz(pop.state, RESEARCHER.public_key, "ds0", now, None, genesis=GENESIS)
    assert both["decision"] == "allow"
    assert {g["grant"] for g in both["grants"]} == {grant_id.hex(), second.hex()}
    # asking for a purpose narrows the grants that count
    research = queries.authz(
        pop.state, RESEARCHER.public_key, "ds0", now, None, genesis=GENESIS, purpose="research"
    )
    assert research["decision"] == "deny"
    assert research["missing_subjects"] == [SUBJECT2.public_key.hex()]


def test_authz_denials(pop: Chain) -> None:
    now = pop.time_ms
    stranger = queries.authz(pop.state, STRANGER.public_key, "ds0", now, None, genesis=GENESIS)
    assert (stranger["decision"], stranger["code"]) == ("deny", "not_a_member")
    _add_dataset(pop, "lonely")
    lonely = queries.authz(pop.state, RESEARCHER.public_key, "lonely", now, None, genesis=GENESIS)
    assert (lonely["decision"], lonely["code"]) == ("deny", "no_subject_linked")
    auditor = queries.authz(
        pop.state, AUDITOR.public_key, "ds0", now, None, genesis=GENESIS, purpose="research"
    )
    assert (auditor["decision"], auditor["code"]) == ("deny", "role_forbidden")
    expiring = _grant(pop, grant_body("member", ME, expires_ms=pop.time_ms + 5000))
    live = queries.authz(
        pop.state, RESEARCHER.public_key, "ds0", pop.time_ms, None, genesis=GENESIS
    )
    assert live["grants"] == [{"subject": SUBJECT.public_key.hex(), "grant": expiring.hex()}]
    late = queries.authz(
        pop.state, RESEARCHER.public_key, "ds0", pop.time_ms + 5000, None, genesis=GENESIS
    )
    assert late["decision"] == "deny"
    enrolled_at = 1  # RESEARCHER was enrolled in block 1, revoked now
    pop.submit(ADMIN[0], "member.revoke", {"member": RESEARCHER.public_key})
    gone = queries.authz(pop.state, RESEARCHER.public_key, "ds0", now, None, genesis=GENESIS)
    assert gone["code"] == "not_a_member"
    then = queries.authz(pop.state, RESEARCHER.public_key, "ds0", now, enrolled_at, genesis=GENESIS)
    assert then["role"] == "researcher"
    with pytest.raises(InvalidQuery):
        queries.authz(pop.state, b"x", "ds0", now, None, genesis=GENESIS)
    with pytest.raises(InvalidQuery):
        queries.authz(pop.state, ME.encode()[:32], "ds0", now, None, genesis=GENESIS, purpose="fun")


def test_authz_for_a_project_counts_only_its_investigators(pop: Chain) -> None:
    _grant(pop, grant_body("project", "lung-ai"))
    now = pop.time_ms

    def ask(key: SigningKey, height: int | None = None, project: str = "lung-ai") -> Any:
        return queries.authz(
            pop.state, key.public_key, "ds0", now, height, genesis=GENESIS, project=project
        )

    assert ask(RESEARCHER)["project_member"] is False  # no such trial yet
    pop.submit(RESEARCHER1, "trial.register", trial_body("lung-ai", ["ds0"]))
    registered = pop.height
    owner = ask(RESEARCHER1)
    assert (owner["decision"], owner["project_member"]) == ("allow", True)
    outsider = ask(RESEARCHER)
    assert (outsider["decision"], outsider["code"]) == ("deny", "missing_consent")
    assert outsider["project_member"] is False
    pop.submit(RESEARCHER1, "trial.amend", amend_body("lung-ai", investigators_added=[RESEARCHER]))
    added = pop.height
    assert ask(RESEARCHER)["decision"] == "allow"
    assert ask(RESEARCHER, registered)["decision"] == "deny"  # not yet an investigator then
    pop.submit(
        RESEARCHER1, "trial.amend", amend_body("lung-ai", investigators_removed=[RESEARCHER])
    )
    assert ask(RESEARCHER)["decision"] == "deny"
    assert ask(RESEARCHER, added)["decision"] == "allow"
    assert ask(RESEARCHER1, registered - 1)["decision"] == "deny"  # before the trial existed
    # a trial that does not hold the dataset gives no project rights to it
    pop.submit(RESEARCHER1, "trial.register", trial_body("other"))
    assert ask(RESEARCHER1, project="other")["project_member"] is False


def test_authz_for_an_auditor_needs_the_audit_purpose(pop: Chain) -> None:
    _grant(pop, grant_body("site", "site0", purpose="audit"))
    now = pop.time_ms

    def ask(purpose: str | None) -> Any:
        return queries.authz(
            pop.state, AUDITOR.public_key, "ds0", now, None, genesis=GENESIS, purpose=purpose
        )

    unspecified = ask(None)
    assert (unspecified["decision"], unspecified["code"]) == ("deny", "role_forbidden")
    assert "not for no purpose" in unspecified["message"]
    assert ask("audit")["decision"] == "allow"
    assert ask("research")["code"] == "role_forbidden"


ACCESSORS = {"admin": ADMIN[0], "researcher": RESEARCHER, "auditor": AUDITOR, "other": RESEARCHER1}


def test_authz_agrees_with_access_log_for_every_key_purpose_grant_and_trial(pop: Chain) -> None:
    """With one subject, authz allows exactly when some grant lets access.log through."""
    grants = [
        _grant(pop, grant_body("member", ME)),
        _grant(pop, grant_body("site", "site0", purpose="audit")),
        _grant(pop, grant_body("project", "T1", purpose="teaching")),
        _grant(pop, grant_body("site", "site1", purpose="ai-training", datasets=["ds0"])),
    ]
    pop.submit(RESEARCHER1, "trial.register", trial_body("T1", ["ds0"], investigators=[AUDITOR]))
    registry, now = pop.registry, pop.time_ms + 1000
    decisions: list[str] = []
    for name, key in ACCESSORS.items():
        for purpose in ("research", "audit", "teaching", "ai-training"):
            for trial in (None, "T1"):
                accepted = [
                    g
                    for g in grants
                    if registry.check(
                        pop.state.get,
                        pop.tx(key, "access.log", access_body("ds0", purpose, g, trial)),
                        now,
                    )
                    is None
                ]
                answer = queries.authz(
                    pop.state,
                    key.public_key,
                    "ds0",
                    now,
                    None,
                    genesis=GENESIS,
                    project=trial,
                    purpose=purpose,
                )
                case = (name, purpose, trial, answer["code"])
                decisions.append(answer["decision"])
                assert (answer["decision"] == "allow") == bool(accepted), case
                if accepted:
                    assert answer["grants"][0]["grant"] in {g.hex() for g in accepted}, case
    assert decisions.count("allow") == 11  # of 64: the matrix exercises both answers
