"""Execution is a deterministic pure function; refused transactions write nothing; never raises."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st

from ledger import codec
from ledger.keys import SigningKey
from ledger.manifest import series_root
from ledger.types import Tx
from registry.app import TxRejection
from registry.kinds import GRANTEE_KINDS, KINDS, PURPOSES, ROLES, TRANSFORMATIONS
from tests.registry.helpers import (
    ADMIN,
    AUDITOR,
    RESEARCHER,
    RESEARCHER1,
    STRANGER,
    SUBJECT,
    SUBJECT2,
    Chain,
    access_body,
    amend_body,
    derive_body,
    digest,
    enroll_body,
    grant_body,
    leaves,
    link_body,
    populated_chain,
    register_bodies,
    result_body,
    run_scenario,
    trial_body,
)

ROOT = Path(__file__).resolve().parents[2]


def test_same_transactions_give_identical_writes_and_state() -> None:
    first, second = Chain(), Chain()
    run_scenario(first)
    run_scenario(second)
    assert first.history == second.history
    assert first.state.data == second.state.data
    assert any(writes for writes in first.history)
    for writes in first.history:
        assert list(writes) == sorted(writes)


_ID = rb"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
_UID = rb"[0-9]+(?:\.[0-9]+)*"
_HEX = rb"[0-9a-f]{64}"
_N = rb"[0-9]{20}"
#: The key layout of docs/REGISTRY.md, one pattern per row of its table.
LAYOUT = [
    rb"acct/.{32}/nonce",
    rb"reg/hist/" + _HEX + rb"/n",
    rb"reg/hist/" + _HEX + rb"/e/" + _N,
    rb"reg/mem/" + _HEX,
    rb"reg/mem/" + _HEX + rb"/ev/" + _N,
    rb"reg/ds/" + _ID,
    rb"reg/ds/" + _ID + rb"/series/" + _UID,
    rb"reg/ds/" + _ID + rb"/leaf/" + _UID + rb"/" + _N,
    rb"reg/ds/" + _ID + rb"/part/" + _UID + rb"/" + _N,
    rb"reg/ds/" + _ID + rb"/inst/" + _UID,
    rb"reg/ds/" + _ID + rb"/acc/" + _N,
    rb"reg/ds/" + _ID + rb"/child/" + _ID,
    rb"reg/ds/" + _ID + rb"/trial/" + _N,
    rb"reg/ds/" + _ID + rb"/subj/" + _HEX,
    rb"reg/sop/" + _UID + rb"/" + _ID,
    rb"reg/subj/" + _ID + rb"/" + _HEX,
    rb"reg/subj/" + _ID + rb"/" + _HEX + rb"/ds/" + _ID,
    rb"reg/grant/" + _HEX,
    rb"reg/grantee/(?:member/" + _HEX + rb"|site/" + _ID + rb"|project/" + _ID + rb")/" + _HEX,
    rb"reg/trial/" + _ID,
    rb"reg/trial/" + _ID + rb"/ds/" + _ID,
    rb"reg/trial/" + _ID + rb"/ev/" + _N,
    rb"reg/trial/" + _ID + rb"/inv/" + _HEX,
]


def test_every_key_follows_the_documented_layout_and_values_are_canonical() -> None:
    chain = Chain()
    run_scenario(chain)
    used = set()
    for key, value in chain.state.data.items():
        rows = [p for p in LAYOUT if re.fullmatch(p, key, re.DOTALL)]
        assert len(rows) == 1, (key, rows)
        used.add(rows[0])
        if key.startswith(b"acct/"):
            assert len(value) == 8
        else:
            assert codec.encode(codec.decode(value)) == value, key
    assert used == set(LAYOUT), "the scenario should exercise every row of the layout"


_STATE_DIGEST = """
import hashlib, sys
sys.path.insert(0, {root!r})
from tests.registry.helpers import Chain, run_scenario
chain = Chain()
run_scenario(chain)
h = hashlib.sha256()
for key in sorted(chain.state.data):
    h.update(len(key).to_bytes(4, "big") + key + chain.state.data[key])
print(h.hexdigest())
"""


def test_state_does_not_depend_on_the_hash_seed() -> None:
    """Two interpreters with different string-hash seeds compute the same state."""
    digests = set()
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [sys.executable, "-c", _STATE_DIGEST.format(root=str(ROOT))],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        )
        digests.add(out.stdout.strip())
    chain = Chain()
    run_scenario(chain)
    local = hashlib.sha256()
    for key in sorted(chain.state.data):
        local.update(len(key).to_bytes(4, "big") + key + chain.state.data[key])
    assert digests == {local.hexdigest()}


# --------------------------------------------------------------------------- random workloads

NEWCOMER = SigningKey(b"\x96" * 32)
SIGNERS = [ADMIN[0], ADMIN[1], RESEARCHER, AUDITOR, RESEARCHER1, SUBJECT, SUBJECT2, STRANGER]
DATASETS = ["ds0", "ds1", "seg", "nope"]
TRIALS = ["T1", "T2"]
SITES = ["site0", "site0", "site1", "site9"]
GRANT_SLOT = "$grant"  # replaced by a grant id seen so far when the tx is built


@dataclass(frozen=True)
class Offset:
    """A claimed time relative to the chain's time when the tx is built."""

    ms: int


ids = st.sampled_from(DATASETS)
id_lists = st.lists(ids, max_size=3)
digests = st.sampled_from([digest("a"), digest("b")])


def _register(draw: Any) -> dict[str, Any]:
    n = draw(st.integers(1, 6))
    parts = draw(st.integers(1, 3))
    part = draw(st.integers(0, parts - 1))
    dataset, series = draw(ids), draw(st.sampled_from(["1.2.3.1", "1.2.3.2"]))
    all_leaves = leaves(n, prefix=draw(st.sampled_from(["1.2.826.0.1.3680043.2", "1.7"])))
    root = draw(st.sampled_from([series_root(all_leaves), digest("wrong")]))
    bodies = register_bodies(dataset, series, all_leaves, parts, root=root)
    body: dict[str, Any] = bodies[min(part, len(bodies) - 1)]
    if not body["leaves"]:
        body = bodies[0]
    body["supersedes"] = draw(st.sampled_from([None, None, *DATASETS]))
    return body


@st.composite
def bodies(draw: Any, kind: str) -> dict[str, Any]:
    key = st.sampled_from([*SIGNERS, NEWCOMER]).map(lambda k: k.public_key)
    if kind == "member.enroll":
        body = {
            "member": draw(key),
            "site": draw(st.sampled_from(SITES)),
            "role": draw(st.sampled_from([*ROLES, "admin"])),
        }
    elif kind == "member.revoke":
        body = {"member": draw(key)}
    elif kind == "dataset.register":
        body = _register(draw)
    elif kind == "dataset.derive":
        body = {
            "dataset": draw(st.sampled_from([*DATASETS, "seg2"])),
            "parents": draw(st.lists(ids, min_size=1, max_size=3, unique=True)),
            "transformation": draw(st.sampled_from(TRANSFORMATIONS)),
            "code_version": draw(digests),
            "output": draw(digests),
        }
    elif kind == "access.log":
        body = {
            "dataset": draw(ids),
            "purpose": draw(st.sampled_from(PURPOSES)),
            "consent": draw(st.sampled_from([None, GRANT_SLOT])),
            "trial": draw(st.sampled_from([None, *TRIALS])),
        }
    elif kind == "subject.link":
        body = {
            "subject": draw(st.sampled_from([SUBJECT, SUBJECT2])).public_key,
            "site": draw(st.sampled_from(SITES)),
            "commitment": draw(digests),
            "datasets": draw(st.lists(ids, min_size=1, max_size=3, unique=True)),
        }
    elif kind == "consent.grant":
        grantee_kind = draw(st.sampled_from(GRANTEE_KINDS))
        grantee_id = {
            "member": RESEARCHER.public_key.hex(),
            "site": draw(st.sampled_from(SITES)),
            "project": draw(st.sampled_from(TRIALS)),
        }[grantee_kind]
        body = {
            "grantee": {"kind": grantee_kind, "id": grantee_id},
            "scope": {
                "site": draw(st.sampled_from(SITES)),
                "datasets": draw(st.one_of(st.none(), st.lists(ids, min_size=1, max_size=2))),
            },
            "purpose": draw(st.sampled_from(PURPOSES)),
            "expires_ms": draw(st.sampled_from([None, 0, 10**18])),
        }
    elif kind == "consent.revoke":
        body = {"grant": GRANT_SLOT}
    elif kind == "trial.register":
        body = {
            "trial": draw(st.sampled_from(TRIALS)),
            "registry_ids": draw(st.sampled_from([[], ["NCT01234567"]])),
            "protocol": draw(digests),
            "endpoints": draw(digests),
            "datasets": draw(st.lists(ids, max_size=2, unique=True)),
        }
    elif kind == "trial.amend":
        body = {
            "trial": draw(st.sampled_from(TRIALS)),
            "protocol": draw(st.one_of(st.none(), digests)),
            "endpoints": draw(st.one_of(st.none(), digests)),
            "datasets_added": draw(st.lists(ids, max_size=2, unique=True)),
        }
    elif kind == "trial.result":
        body = {
            "trial": draw(st.sampled_from(TRIALS)),
            "results": draw(digests),
            "datasets": draw(st.lists(ids, max_size=2, unique=True)),
        }
    else:
        body = {"anything": draw(st.integers(0, 3))}
    body["reason"] = "why"
    body["time_ms"] = Offset(draw(st.sampled_from([0] * 8 + [-(10**8), 10**6])))
    mutation = draw(st.sampled_from(["none"] * 16 + ["drop", "extra", "retype", "blank"]))
    fields = sorted(body)
    if mutation == "drop":
        del body[draw(st.sampled_from(fields))]
    elif mutation == "extra":
        body["patient_name"] = "DOE^JANE"
    elif mutation == "blank":
        body["reason"] = " "
    elif mutation == "retype":
        body[draw(st.sampled_from(fields))] = draw(st.sampled_from([7, "x", b"\x00", None, []]))
    return body


#: The signer that usually has the right to sign each kind in ``populated_chain``.
USUAL_SIGNER = {
    "member.enroll": ADMIN[0],
    "member.revoke": ADMIN[0],
    "subject.link": ADMIN[0],
    "consent.grant": SUBJECT,
    "consent.revoke": SUBJECT,
}


def _good(
    signer: SigningKey, kind: str, body: dict[str, Any]
) -> tuple[SigningKey, str, dict[str, Any], bool]:
    return signer, kind, {**body, "reason": "why", "time_ms": Offset(0)}, False


_DS1 = register_bodies("ds1", "1.9.9", leaves(4, prefix="1.9"), parts=2)
#: Transactions that are valid in ``populated_chain`` (at least the first time, in some order).
GOOD = [
    _good(RESEARCHER, "access.log", access_body("ds0")),
    _good(AUDITOR, "access.log", access_body("ds0", "audit")),
    _good(SUBJECT, "consent.grant", grant_body("site", "site0")),
    _good(
        SUBJECT,
        "consent.grant",
        grant_body("member", RESEARCHER.public_key.hex(), datasets=["ds0"]),
    ),
    _good(SUBJECT, "consent.revoke", {"grant": GRANT_SLOT}),
    _good(RESEARCHER, "access.log", {**access_body("ds0"), "consent": GRANT_SLOT}),
    _good(RESEARCHER, "trial.register", trial_body("T1", ["ds0"])),
    _good(RESEARCHER, "trial.amend", amend_body("T1", protocol=digest("v2"))),
    _good(RESEARCHER, "trial.result", result_body("T1")),
    _good(RESEARCHER, "access.log", access_body("ds0", trial="T1")),
    _good(RESEARCHER, "dataset.derive", derive_body("seg", ["ds0"])),
    _good(RESEARCHER, "dataset.register", _DS1[0]),
    _good(RESEARCHER, "dataset.register", _DS1[1]),
    _good(ADMIN[0], "subject.link", link_body(SUBJECT2, "site0", ["ds0"])),
    _good(ADMIN[0], "member.enroll", enroll_body(NEWCOMER, "site0")),
    _good(ADMIN[0], "member.revoke", {"member": AUDITOR.public_key}),
]


@st.composite
def random_specs(draw: Any) -> tuple[SigningKey, str, dict[str, Any], bool]:
    kind = draw(st.sampled_from([*KINDS, "noop"]))
    usual = USUAL_SIGNER.get(kind, RESEARCHER)
    signer = draw(st.sampled_from([usual, usual, usual, *SIGNERS]))
    replay = draw(st.sampled_from([False] * 9 + [True]))
    return signer, kind, draw(bodies(kind)), replay


specs = st.one_of(st.sampled_from(GOOD), random_specs())


def build(
    chain: Chain, grants: list[bytes], spec: tuple[SigningKey, str, dict[str, Any], bool]
) -> Tx:
    signer, kind, template, replay = spec
    full = dict(template)
    for field, value in full.items():
        if value == GRANT_SLOT:
            full[field] = grants[-1] if grants else digest("no grant yet")
        elif isinstance(value, Offset):
            full[field] = max(0, chain.time_ms + value.ms)
    last = chain.nonces.get(signer.public_key, 0)
    nonce = last if replay and last else last + 1
    chain.nonces[signer.public_key] = max(nonce, last)
    return Tx.create(signer, chain_id="radledger-test", kind=kind, nonce=nonce, body=full)


@settings(max_examples=100)
@given(st.lists(specs, min_size=1, max_size=20))
def test_random_transactions_never_raise_and_refusals_write_nothing(
    workload: list[tuple[SigningKey, str, dict[str, Any], bool]],
) -> None:
    chain = populated_chain()
    grants: list[bytes] = []
    for spec in workload:
        tx = build(chain, grants, spec)
        now = chain.time_ms + 1_000
        check = chain.registry.check(chain.state.get, tx, now)
        writes, [outcome] = chain.registry.execute(chain.state.get, [tx], chain.next_context())
        assert outcome is None or isinstance(outcome, TxRejection)
        assert check == outcome  # the same rules, on the same state and time
        event(f"{tx.kind}: {'accepted' if outcome is None else outcome.code}")
        if outcome is None:
            assert writes
            if tx.kind == "consent.grant":
                grants.append(tx.hash)
        else:
            assert writes == {}
            assert outcome.code.islower()
            assert outcome.message
        chain.block([tx])


@settings(max_examples=60)
@given(st.lists(specs, min_size=1, max_size=15))
def test_a_block_writes_exactly_what_its_accepted_transactions_write(
    workload: list[tuple[SigningKey, str, dict[str, Any], bool]],
) -> None:
    """Dropping the refused transactions from a block changes neither writes nor outcomes."""
    chain = populated_chain()
    txs = [build(chain, [], spec) for spec in workload]
    ctx = chain.next_context()
    writes, outcome = chain.registry.execute(chain.state.get, txs, ctx)
    assert len(outcome) == len(txs)
    kept = [tx for tx, result in zip(txs, outcome, strict=True) if result is None]
    again, kept_outcome = chain.registry.execute(chain.state.get, kept, ctx)
    assert again == writes
    assert kept_outcome == [None] * len(kept)
    # and the block is a pure function of its inputs
    assert chain.registry.execute(chain.state.get, txs, ctx) == (writes, outcome)
