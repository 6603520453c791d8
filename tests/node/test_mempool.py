"""Mempool admission, ordering, eviction, over the registry's rules."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.keys import SigningKey
from ledger.types import Tx
from node import app
from node.mempool import Mempool, MempoolLimits, Rejected
from tests.factories import admin_key, enroll_tx, make_genesis

GENESIS = make_genesis(4)
CHAIN = GENESIS.chain_id
REGISTRY = app.Registry(GENESIS)
#: One claimed time for the whole module, so the same (key, nonce) is the same tx.
CLAIMED_MS = int(time.time() * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


class State:
    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}
        self.height = 0

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def commit(self, txs: list[Tx]) -> None:
        self.height += 1
        writes, outcome = REGISTRY.execute(self.get, txs, app.BlockContext(self.height, now_ms()))
        assert all(r is None for r in outcome), outcome
        for key, value in writes.items():
            assert value is not None
            self.values[key] = value


def pool_for(state: State, limits: MempoolLimits | None = None) -> Mempool:
    return Mempool(
        CHAIN,
        limits or MempoolLimits(),
        state.get,
        admission=lambda tx, from_peer: REGISTRY.check(
            state.get, tx, now_ms(), envelope_only=from_peer
        ),
    )


def tx(key: SigningKey, nonce: int, kind: str = "member.enroll", chain: str = CHAIN) -> Tx:
    site = f"site{[admin_key(i).public_key for i in range(4)].index(key.public_key)}"
    return enroll_tx(key, nonce, chain_id=chain, site=site, kind=kind, time_ms=CLAIMED_MS)


def test_nonces_strictly_increase_with_gaps_allowed() -> None:
    state = State()
    key = admin_key(0)
    writes, outcome = REGISTRY.execute(
        state.get, [tx(key, 1), tx(key, 5), tx(key, 5), tx(key, 3)], app.BlockContext(1, now_ms())
    )
    assert [r.code if r else None for r in outcome] == [None, None, "nonce_reused", "nonce_reused"]
    assert app.committed_nonce(writes.get, key.public_key) == 5


def test_admission_rules_and_bounds() -> None:
    state = State()
    pool = pool_for(state, MempoolLimits(max_txs=3, max_txs_per_signer=2))
    a, b, c = admin_key(0), admin_key(1), admin_key(2)
    pool.add(tx(a, 1))
    stranger = SigningKey.generate()
    codes = []
    for candidate in [
        tx(a, 1),  # duplicate
        dataclasses.replace(tx(a, 1), body=tx(a, 9).body),  # same nonce pending, bad sig too
        tx(a, 2, chain="other"),
        tx(a, 2, kind="nope"),
        dataclasses.replace(tx(a, 3), sig=bytes(64)),
        enroll_tx(stranger, 1, chain_id=CHAIN),  # not the site's admin
    ]:
        with pytest.raises(Rejected) as info:
            pool.add(candidate)
        codes.append(info.value.code)
    assert codes == [
        "duplicate",
        "nonce_reused",
        "wrong_chain",
        "unknown_kind",
        "bad_signature",
        "not_site_admin",
    ]
    pool.add(tx(a, 2))
    with pytest.raises(Rejected, match="signer_limit"):
        pool.add(tx(a, 4))
    pool.add(tx(b, 1))
    with pytest.raises(Rejected) as full:
        pool.add(tx(c, 1))
    assert full.value.code == "mempool_full"
    assert full.value.retry_after_s == 1
    assert len(pool) == 3


def test_reap_orders_each_signer_by_nonce_and_commit_evicts_stale() -> None:
    state = State()
    pool = pool_for(state)
    a = admin_key(0)
    for nonce in (3, 1, 2):
        pool.add(tx(a, nonce))
    reaped = pool.reap(max_txs=10, max_bytes=1 << 20)
    assert [t.nonce for t in reaped] == [1, 2, 3]
    assert len(pool.reap(max_txs=2, max_bytes=1 << 20)) == 2
    state.commit([tx(a, 2)])  # a block with nonce 2: it leaves, and 1 is now stale
    evicted = pool.on_commit([tx(a, 2)])
    assert evicted == 2
    assert [t.nonce for t in pool.reap(10, 1 << 20)] == [3]
    with pytest.raises(Rejected, match="nonce_reused"):
        pool.add(tx(a, 2))


def test_drop_removes_transactions_that_can_no_longer_commit() -> None:
    pool = pool_for(State())
    first, second = tx(admin_key(0), 1), tx(admin_key(0), 2)
    pool.add(first)
    pool.add(second)
    pool.drop([first])
    assert first.hash not in pool
    assert [t.hash for t in pool.reap(10, 1 << 20)] == [second.hash]


def test_each_signature_is_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Tx.verify_signature

    def counting(self: Tx) -> bool:
        calls.append(self.hash)
        return original(self)

    monkeypatch.setattr(Tx, "verify_signature", counting)
    pool = pool_for(State())
    key = admin_key(1)
    admitted, gossiped = tx(key, 1), tx(key, 2)
    pool.add(admitted)
    assert pool.signature_ok(admitted)  # again, e.g. inside a proposal: cached
    pool.mark_verified(gossiped)  # the peer layer verified it
    pool.add(gossiped)
    assert pool.signature_ok(gossiped)
    assert calls == [admitted.hash]


def test_a_gossiped_transaction_gets_the_envelope_checks_only() -> None:
    """A validator already checked every rule; the receiver checks kind, body, nonce
    and time, and leaves the rules to execution (a failure there drops it)."""
    state = State()
    pool = pool_for(state)
    # An enrolment by the wrong site's admin breaks a rule, not the envelope.
    wrong_site = enroll_tx(admin_key(1), 1, chain_id=CHAIN, site="site0", time_ms=CLAIMED_MS)
    with pytest.raises(Rejected, match="not_site_admin"):
        pool.add(wrong_site)
    pool.add(wrong_site, from_peer=True)
    assert wrong_site.hash in pool
    stale = enroll_tx(admin_key(1), 2, chain_id=CHAIN, site="site1", time_ms=1)
    with pytest.raises(Rejected, match="time_too_old"):
        pool.add(stale, from_peer=True)
    unknown = dataclasses.replace(tx(admin_key(2), 1, kind="nope"))
    with pytest.raises(Rejected, match="unknown_kind"):
        pool.add(unknown, from_peer=True)


_admissions = st.lists(
    st.tuples(st.integers(0, 3), st.integers(1, 12)),
    min_size=1,
    max_size=40,
    unique=True,
)


@given(_admissions, st.integers(1, 45))
@settings(max_examples=150, deadline=None)
def test_reap_is_first_admitted_first_proposed_and_keeps_each_signers_order(
    admitted: list[tuple[int, int]], max_txs: int
) -> None:
    """Who waits when a block is full depends on admission order, never on keys; a
    signer's transaction takes its lower pending nonces with it, in order."""
    pool = pool_for(State())
    order = [tx(admin_key(site), nonce) for site, nonce in admitted]
    for t in order:
        pool.add(t)
    reaped = pool.reap(max_txs, 1 << 20)
    chosen = {t.hash for t in reaped}
    assert len(reaped) == min(max_txs, len(order))
    for site in range(4):
        signer = admin_key(site).public_key
        nonces = [t.nonce for t in reaped if t.signer == signer]
        assert nonces == sorted(nonces)  # each signer's in nonce order
        pending = sorted(t.nonce for t in order if t.signer == signer)
        assert nonces == pending[: len(nonces)]  # no lower nonce left behind
    # Every transaction admitted before the first one left out is in, and one
    # admitted after it is in only as a lower nonce of an earlier admission.
    missing = [i for i, t in enumerate(order) if t.hash not in chosen]
    if missing:
        first = missing[0]
        assert all(t.hash in chosen for t in order[:first])
        for t in order[first + 1 :]:
            if t.hash in chosen:
                assert any(e.signer == t.signer and e.nonce > t.nonce for e in order[: first + 1])
