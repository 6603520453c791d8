"""member.enroll / member.revoke, roles, and what revocation blocks."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ledger.keys import SigningKey
from registry import queries
from registry.app import Registry
from registry.errors import InvalidQuery, NotFound
from tests.registry.helpers import (
    ADMIN,
    AUDITOR,
    GENESIS,
    RESEARCHER,
    RESEARCHER1,
    STRANGER,
    Chain,
    access_body,
    derive_body,
    enroll_body,
    leaves,
    register_bodies,
    trial_body,
)

NEWCOMER = SigningKey(b"\x95" * 32)


def test_admin_enrolls_a_member_of_its_site(chain: Chain) -> None:
    chain.submit(ADMIN[2], "member.enroll", enroll_body(NEWCOMER, "site2", "auditor"))
    history = queries.member_history(chain.state, NEWCOMER.public_key, genesis=GENESIS)
    assert history["standing"] == {
        "site": "site2",
        "role": "auditor",
        "active": True,
        "since_height": 1,
    }
    [event] = history["membership"]
    assert event["event"] == "enrolled"
    assert event["actor"] == ADMIN[2].public_key.hex()
    assert event["action"] == "member.enroll"
    assert event["target"] == NEWCOMER.public_key.hex()
    assert event["reason"] == "protocol 7 analysis"
    assert event["height"] == 1


def test_only_the_sites_admin_enrolls(chain: Chain) -> None:
    chain.refuse(ADMIN[1], "member.enroll", enroll_body(NEWCOMER, "site0"), "not_site_admin")
    chain.refuse(STRANGER, "member.enroll", enroll_body(NEWCOMER, "site0"), "not_site_admin")
    chain.refuse(ADMIN[0], "member.enroll", enroll_body(NEWCOMER, "site9"), "unknown_site")


def test_an_enrolled_member_cannot_enroll_others(pop: Chain) -> None:
    pop.refuse(RESEARCHER, "member.enroll", enroll_body(NEWCOMER, "site0"), "not_site_admin")


def test_role_must_be_researcher_or_auditor(chain: Chain) -> None:
    chain.refuse(ADMIN[0], "member.enroll", enroll_body(NEWCOMER, "site0", "admin"), "bad_body")


def test_an_active_member_or_admin_cannot_be_enrolled_again(pop: Chain) -> None:
    pop.refuse(ADMIN[0], "member.enroll", enroll_body(RESEARCHER, "site0"), "member_active")
    pop.refuse(ADMIN[2], "member.enroll", enroll_body(RESEARCHER, "site2"), "member_active")
    pop.refuse(ADMIN[0], "member.enroll", enroll_body(ADMIN[1], "site0"), "member_active")


def test_revoke_then_re_enroll_makes_a_new_record(pop: Chain) -> None:
    pop.submit(ADMIN[0], "member.revoke", {"member": RESEARCHER.public_key})
    revoked_at = pop.height
    pop.refuse(RESEARCHER, "access.log", access_body("ds0"), "member_revoked")
    pop.refuse(ADMIN[0], "member.revoke", {"member": RESEARCHER.public_key}, "member_not_active")
    pop.submit(ADMIN[0], "member.enroll", enroll_body(RESEARCHER, "site0", "auditor"))
    pop.submit(RESEARCHER, "access.log", access_body("ds0", "audit"))
    history = queries.member_history(pop.state, RESEARCHER.public_key)
    assert [(e["event"], e["role"]) for e in history["membership"]] == [
        ("enrolled", "researcher"),
        ("revoked", "researcher"),
        ("enrolled", "auditor"),
    ]
    assert history["membership"][1]["height"] == revoked_at
    assert history["standing"]["role"] == "auditor"
    actions = [a["action"] for a in history["actions"]]
    assert actions == ["dataset.register", "access.log"]


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("access.log", access_body("ds0")),
        ("dataset.derive", derive_body("seg", ["ds0"])),
        ("dataset.register", register_bodies("ds9", "1.2.9", leaves(2))[0]),
        ("trial.register", trial_body("T1")),
    ],
)
def test_revoked_member_can_no_longer_sign(pop: Chain, kind: str, body: dict[str, object]) -> None:
    pop.submit(RESEARCHER, kind, body)  # allowed while active (new ids below)
    pop.submit(ADMIN[0], "member.revoke", {"member": RESEARCHER.public_key})
    pop.refuse(RESEARCHER, kind, body, "member_revoked")


def test_only_the_members_site_admin_revokes(pop: Chain) -> None:
    pop.refuse(ADMIN[1], "member.revoke", {"member": RESEARCHER.public_key}, "not_site_admin")
    pop.refuse(RESEARCHER1, "member.revoke", {"member": RESEARCHER.public_key}, "not_site_admin")
    pop.refuse(ADMIN[0], "member.revoke", {"member": NEWCOMER.public_key}, "member_not_active")
    pop.refuse(ADMIN[0], "member.revoke", {"member": ADMIN[0].public_key}, "admin_not_revocable")


def test_strangers_cannot_act(pop: Chain) -> None:
    pop.refuse(STRANGER, "access.log", access_body("ds0"), "not_a_member")
    pop.refuse(STRANGER, "dataset.derive", derive_body("x", ["ds0"]), "not_a_member")


def test_auditors_only_log_audit_access(pop: Chain) -> None:
    pop.submit(AUDITOR, "access.log", access_body("ds0", "audit"))
    pop.refuse(AUDITOR, "access.log", access_body("ds0", "research"), "role_forbidden")
    pop.refuse(AUDITOR, "dataset.derive", derive_body("x", ["ds0"]), "role_forbidden")
    pop.refuse(
        AUDITOR, "dataset.register", register_bodies("a1", "1.2.7", leaves(1))[0], "role_forbidden"
    )
    pop.refuse(AUDITOR, "trial.register", trial_body("T9"), "role_forbidden")


def test_a_fresh_testnet_admin_has_every_data_right(chain: Chain) -> None:
    for body in register_bodies("adm", "1.2.5", leaves(3)):
        chain.submit(ADMIN[3], "dataset.register", body)
    chain.submit(ADMIN[3], "dataset.derive", derive_body("adm-seg", ["adm"]))
    chain.submit(ADMIN[3], "access.log", access_body("adm"))
    chain.submit(ADMIN[3], "trial.register", trial_body("adm-trial", ["adm"]))
    assert queries.dataset(chain.state, "adm")["site"] == "site3"


def test_member_history_records_every_signed_action(pop: Chain) -> None:
    pop.submit(RESEARCHER, "access.log", access_body("ds0"), reason="QA of reconstruction")
    history = queries.member_history(pop.state, RESEARCHER.public_key)
    last = history["actions"][-1]
    assert last["action"] == "access.log"
    assert last["target"] == "ds0"
    assert last["reason"] == "QA of reconstruction"
    assert last["height"] == pop.height
    assert last["time_ms"] == pop.time_ms
    admin = queries.member_history(pop.state, ADMIN[0].public_key, genesis=GENESIS)
    assert admin["admin_of"] == ["site0"]
    assert [a["action"] for a in admin["actions"]] == [
        "member.enroll",
        "member.enroll",
        "subject.link",
    ]


def test_member_history_of_an_unknown_key(pop: Chain) -> None:
    with pytest.raises(NotFound):
        queries.member_history(pop.state, NEWCOMER.public_key)
    with pytest.raises(InvalidQuery):
        queries.member_history(pop.state, b"short")


def test_an_admin_of_two_sites_acts_for_both() -> None:
    """One key administering site0 and site1 creates at site0 and writes at both."""
    sites = (
        GENESIS.sites[0],
        replace(GENESIS.sites[1], admin_key=ADMIN[0].public_key),
        *GENESIS.sites[2:],
    )
    chain = Chain()
    chain.registry = Registry(replace(GENESIS, sites=sites))
    chain.submit(ADMIN[0], "member.enroll", enroll_body(RESEARCHER1, "site1"))
    chain.submit(RESEARCHER1, "dataset.register", register_bodies("s1", "1.2.1", leaves(2))[0])
    chain.submit(ADMIN[0], "dataset.register", register_bodies("s0", "1.2.1", leaves(2))[0])
    assert queries.dataset(chain.state, "s0")["site"] == "site0"
    second = register_bodies("s1", "1.2.2", leaves(2, prefix="1.3"))[0]
    chain.submit(ADMIN[0], "dataset.register", second)
    chain.refuse(ADMIN[1], "member.enroll", enroll_body(NEWCOMER, "site1"), "not_site_admin")
    genesis = replace(GENESIS, sites=sites)
    history = queries.member_history(chain.state, ADMIN[0].public_key, genesis=genesis)
    assert history["admin_of"] == ["site0", "site1"]
