"""Mempool admission, ordering, eviction; the noop application's nonce rule."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.keys import SigningKey
from ledger.types import Tx
from node import app
from node.mempool import Mempool, MempoolLimits, Rejected

CHAIN = "radledger-unit"


class State:
    def __init__(self) -> None:
        self.values: dict[bytes, bytes] = {}

    def get(self, key: bytes) -> bytes | None:
        return self.values.get(key)

    def commit(self, txs: list[Tx]) -> None:
        writes, outcome = app.execute(self.get, txs)
        assert all(r is None for r in outcome)
        for key, value in writes.items():
            assert value is not None
            self.values[key] = value


def tx(key: SigningKey, nonce: int, kind: str = "noop", chain: str = CHAIN) -> Tx:
    return Tx.create(key, chain_id=chain, kind=kind, nonce=nonce, body={"n": nonce})


def test_nonces_strictly_increase_with_gaps_allowed() -> None:
    state = State()
    key = SigningKey.generate()
    writes, outcome = app.execute(state.get, [tx(key, 1), tx(key, 5), tx(key, 5), tx(key, 3)])
    assert [r.code if r else None for r in outcome] == [None, None, "nonce_reused", "nonce_reused"]
    assert app.committed_nonce(writes.get, key.public_key) == 5
    _, unknown = app.execute(state.get, [tx(key, 1, kind="dataset.register")])
    assert unknown[0] is not None
    assert unknown[0].code == "unknown_kind"


def test_admission_rules_and_bounds() -> None:
    state = State()
    pool = Mempool(CHAIN, MempoolLimits(max_txs=3, max_txs_per_signer=2), state.get)
    a, b = SigningKey.generate(), SigningKey.generate()
    pool.add(tx(a, 1))
    codes = []
    for candidate in [
        tx(a, 1),  # duplicate
        dataclasses.replace(tx(a, 1), body=tx(a, 9).body),  # same nonce pending, bad sig too
        tx(a, 2, chain="other"),
        tx(a, 2, kind="nope"),
        dataclasses.replace(tx(a, 3), sig=bytes(64)),
    ]:
        with pytest.raises(Rejected) as info:
            pool.add(candidate)
        codes.append(info.value.code)
    assert codes == ["duplicate", "nonce_reused", "wrong_chain", "unknown_kind", "bad_signature"]
    pool.add(tx(a, 2))
    with pytest.raises(Rejected, match="signer_limit"):
        pool.add(tx(a, 4))
    pool.add(tx(b, 1))
    with pytest.raises(Rejected) as full:
        pool.add(tx(SigningKey.generate(), 1))
    assert full.value.code == "mempool_full"
    assert full.value.retry_after_s == 1
    assert len(pool) == 3


def test_reap_orders_each_signer_by_nonce_and_commit_evicts_stale() -> None:
    state = State()
    pool = Mempool(CHAIN, MempoolLimits(), state.get)
    a = SigningKey.generate()
    for nonce in (3, 1, 2):
        pool.add(tx(a, nonce))
    reaped = pool.reap(max_txs=10, max_bytes=1 << 20)
    assert [t.nonce for t in reaped] == [1, 2, 3]
    assert len(pool.reap(max_txs=2, max_bytes=1 << 20)) == 2
    state.commit([tx(a, 2)])  # committed elsewhere: 1 and 2 are now stale
    evicted = pool.on_commit([])
    assert evicted == 2
    assert [t.nonce for t in pool.reap(10, 1 << 20)] == [3]
    with pytest.raises(Rejected, match="nonce_reused"):
        pool.add(tx(a, 2))


def test_each_signature_is_verified_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    original = Tx.verify_signature

    def counting(self: Tx) -> bool:
        calls.append(self.hash)
        return original(self)

    monkeypatch.setattr(Tx, "verify_signature", counting)
    pool = Mempool(CHAIN, MempoolLimits(), State().get)
    key = SigningKey.generate()
    admitted, gossiped = tx(key, 1), tx(key, 2)
    pool.add(admitted)
    assert pool.signature_ok(admitted)  # again, e.g. inside a proposal: cached
    pool.mark_verified(gossiped)  # the peer layer verified it
    pool.add(gossiped)
    assert pool.signature_ok(gossiped)
    assert calls == [admitted.hash]
