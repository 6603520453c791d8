"""Rules every kind shares: kinds, strict bodies, reason, claimed time, nonces."""

from __future__ import annotations

from typing import Any

import pytest

from ledger.types import Tx
from registry.app import BlockContext, Registry, TxRejection
from registry.kinds import MAX_CLAIM_AHEAD_MS, MAX_CLAIM_BEHIND_MS
from registry.rules import REJECTION_CODES
from tests.factories import make_genesis
from tests.registry.helpers import (
    ADMIN,
    BLOCK_INTERVAL_MS,
    GENESIS,
    RESEARCHER,
    STRANGER,
    Chain,
    access_body,
    enroll_body,
)


def test_unknown_kind_is_refused(chain: Chain) -> None:
    chain.refuse(ADMIN[0], "noop", {}, "unknown_kind")


def test_body_with_an_unknown_field_is_refused(pop: Chain) -> None:
    body: dict[str, Any] = {**access_body("ds0"), "patient_name": "DOE^JANE"}
    rejection = pop.refuse(RESEARCHER, "access.log", body, "bad_body")
    assert "patient_name" in rejection.message


def test_body_with_a_missing_field_is_refused(pop: Chain) -> None:
    body = access_body("ds0")
    del body["trial"]
    rejection = pop.refuse(RESEARCHER, "access.log", body, "bad_body")
    assert "trial" in rejection.message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("dataset", "ds0/acc"),  # ids cannot carry path separators
        ("dataset", "Doe, Jane 1970-01-01"),  # nor names and dates
        ("purpose", "marketing"),  # not in the enumeration
        ("purpose", "Research"),  # codes are lower case
        ("consent", b"\x00" * 31),  # a grant id is 32 bytes
        ("trial", ""),
    ],
)
def test_malformed_field_is_refused(pop: Chain, field: str, value: object) -> None:
    pop.refuse(RESEARCHER, "access.log", {**access_body("ds0"), field: value}, "bad_body")


@pytest.mark.parametrize("reason", ["", "   ", "\n\t", "x" * 513, "ok\x00hidden", "bell\x07"])
def test_reason_must_be_present_bounded_and_plain(pop: Chain, reason: str) -> None:
    pop.refuse(RESEARCHER, "access.log", access_body("ds0"), "bad_body", reason=reason)


def test_reason_of_512_bytes_with_newlines_is_accepted(pop: Chain) -> None:
    pop.submit(RESEARCHER, "access.log", access_body("ds0"), reason="why\n" + "é" * 254)


def test_claimed_time_window(pop: Chain) -> None:
    block_time = pop.time_ms + BLOCK_INTERVAL_MS
    body = access_body("ds0")
    pop.submit(RESEARCHER, "access.log", body, time_ms=block_time + MAX_CLAIM_AHEAD_MS)
    block_time += BLOCK_INTERVAL_MS
    pop.refuse(
        RESEARCHER,
        "access.log",
        body,
        "time_in_future",
        time_ms=block_time + MAX_CLAIM_AHEAD_MS + 1,
    )
    block_time += BLOCK_INTERVAL_MS
    pop.submit(RESEARCHER, "access.log", body, time_ms=block_time - MAX_CLAIM_BEHIND_MS)
    block_time += BLOCK_INTERVAL_MS
    pop.refuse(
        RESEARCHER, "access.log", body, "time_too_old", time_ms=block_time - MAX_CLAIM_BEHIND_MS - 1
    )


def test_replayed_transaction_is_refused(pop: Chain) -> None:
    tx = pop.tx(RESEARCHER, "access.log", access_body("ds0"))
    assert pop.block([tx]) == [None]
    replay = pop.block([tx])[0]
    assert replay is not None
    assert replay.code == "nonce_reused"


def test_nonces_must_increase_but_may_skip(pop: Chain) -> None:
    pop.submit(RESEARCHER, "access.log", access_body("ds0"), nonce=100)
    pop.refuse(RESEARCHER, "access.log", access_body("ds0"), "nonce_reused", nonce=100)
    pop.refuse(RESEARCHER, "access.log", access_body("ds0"), "nonce_reused", nonce=99)
    pop.submit(RESEARCHER, "access.log", access_body("ds0"), nonce=101)
    assert pop.state.get(b"acct/" + RESEARCHER.public_key + b"/nonce") == (101).to_bytes(8, "big")


def test_nonce_order_within_one_block(pop: Chain) -> None:
    first = pop.tx(RESEARCHER, "access.log", access_body("ds0"), nonce=10)
    second = pop.tx(RESEARCHER, "access.log", access_body("ds0"), nonce=10, reason="again")
    third = pop.tx(RESEARCHER, "access.log", access_body("ds0"), nonce=11)
    outcome = pop.block([first, second, third])
    assert outcome[0] is None
    assert outcome[1] == TxRejection(
        "nonce_reused", "nonce 10 is not above the signer's last committed nonce 10"
    )
    assert outcome[2] is None


def test_a_refused_transaction_does_not_consume_its_nonce(pop: Chain) -> None:
    pop.refuse(RESEARCHER, "access.log", access_body("nope"), "unknown_dataset", nonce=5)
    pop.submit(RESEARCHER, "access.log", access_body("ds0"), nonce=5)


def test_check_uses_committed_state_only(pop: Chain) -> None:
    """check() answers for a transaction alone on committed state; the block sees earlier txs."""
    derive = pop.tx(
        RESEARCHER,
        "dataset.derive",
        {
            "dataset": "seg1",
            "parents": ["ds0"],
            "transformation": "segmentation",
            "code_version": b"\x01" * 32,
            "output": b"\x02" * 32,
        },
    )
    access = pop.tx(RESEARCHER, "access.log", access_body("seg1"))
    now = pop.time_ms + BLOCK_INTERVAL_MS
    check = pop.registry.check(pop.state.get, access, now)
    assert check is not None
    assert check.code == "unknown_dataset"
    assert pop.registry.check(pop.state.get, derive, now) is None
    assert pop.block([derive, access]) == [None, None]


def test_check_refuses_another_chain() -> None:
    other = Registry(GENESIS)
    tx = Tx.create(
        ADMIN[0],
        chain_id="other-chain",
        kind="member.enroll",
        nonce=1,
        body={**enroll_body(STRANGER, "site0"), "reason": "r", "time_ms": 0},
    )
    rejection = other.check(lambda _key: None, tx, 0)
    assert rejection is not None
    assert rejection.code == "wrong_chain"


def test_empty_block_writes_nothing() -> None:
    writes, outcome = Registry(make_genesis()).execute(lambda _k: None, [], BlockContext(1, 0))
    assert writes == {}
    assert outcome == []


def test_every_rejection_code_is_snake_case_and_described() -> None:
    for code, meaning in REJECTION_CODES.items():
        assert code.replace("_", "").isalpha()
        assert code.islower()
        assert meaning
