"""Clients that record every outcome, and the checker that reads the history after.

A Jepsen-style history: while faults are injected, one client per site submits
registry transactions to a random node with ``?wait=commit`` and records the
outcome of each as **ok** (committed, at a height), **failed** (refused, with its
code) or **unknown** (timeout, connection lost, or still pending). After the
faults heal, :func:`check` reads every node's chain and states what must hold:

- every node reaches the same height within a bound;
- no two nodes differ on any block hash or state root at any height;
- no transaction is in the chain twice;
- every ok transaction is in every node's chain exactly once, at the height acked;
- a failed transaction is absent; an unknown one is there once or not at all;
- no node recorded evidence of a double-signing validator (no Byzantine node
  runs in these scenarios), and no node refused to sign a conflicting digest.
"""

from __future__ import annotations

import json
import random
import statistics
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Literal

from tests.factories import enroll_tx
from tests.node.test_network_processes import CHAIN, Network, assert_agreement, wait_for

Outcome = Literal["ok", "failed", "unknown"]


@dataclass(frozen=True, slots=True)
class Op:
    tx_hash: str
    node: int
    outcome: Outcome
    height: int | None = None
    code: str | None = None


@dataclass(slots=True)
class History:
    ops: list[Op] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, op: Op) -> None:
        with self.lock:
            self.ops.append(op)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for op in self.ops if op.outcome == outcome)


class Clients:
    """One submitting thread per site admin, until :meth:`stop`."""

    def __init__(self, net: Network, seed: int, timeout_ms: int = 5_000) -> None:
        self.net = net
        self.history = History()
        self._stop = threading.Event()
        self._timeout_ms = timeout_ms
        self._threads = [
            threading.Thread(target=self._run, args=(site, seed + site), daemon=True)
            for site in range(4)
        ]

    def __enter__(self) -> Clients:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self._timeout_ms / 1000 + 10)

    def _run(self, site: int, seed: int) -> None:
        rng = random.Random(seed)
        admin = self.net.admin(site)
        nonce = 10_000_000 * (site + 1)  # above anything the other tests use
        while not self._stop.is_set():
            nonce += 1
            tx = enroll_tx(admin, nonce, chain_id=CHAIN, site=f"site{site}")
            node = rng.randrange(4)
            self.history.add(self._submit(node, tx.encode().hex(), tx.hash.hex()))
            time.sleep(rng.uniform(0.01, 0.1))

    def _submit(self, node: int, tx_hex: str, tx_hash: str) -> Op:
        url = self.net.url(node, f"/v1/txs?wait=commit&timeout_ms={self._timeout_ms}")
        request = urllib.request.Request(
            url,
            data=json.dumps({"tx": tx_hex}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self._timeout_ms / 1000 + 5) as answer:
                body = json.load(answer)
                if answer.status == 200:
                    return Op(tx_hash, node, "ok", height=int(body["height"]))
                return Op(tx_hash, node, "unknown", code=str(body.get("status")))
        except urllib.error.HTTPError as exc:
            try:
                code = str(json.load(exc)["error"]["code"])
            except (ValueError, KeyError, TypeError):
                code = f"http_{exc.code}"
            if exc.code >= 500:
                return Op(tx_hash, node, "unknown", code=code)
            return Op(tx_hash, node, "failed", code=code)
        except (OSError, ValueError) as exc:  # refused, reset, timed out: the tx may be in
            return Op(tx_hash, node, "unknown", code=type(exc).__name__)


@dataclass(frozen=True, slots=True)
class Verdict:
    height: int
    acknowledged: int
    failed: int
    unknown: int
    unknown_committed: int
    #: per fault: seconds from lifting it until every node reached the height the
    #: highest node had at that moment
    recovery_median_s: float
    recovery_max_s: float


def recover(net: Network, nodes: list[int], bound_s: float) -> float:
    """Seconds until every node reaches the height the highest one has now (call it
    right after lifting a fault); fails after ``bound_s``."""
    started = time.monotonic()
    heights = [net.height(i) for i in nodes]
    target = max(heights)
    wait_for(
        lambda: min(net.height(i) for i in nodes) >= target,
        bound_s,
        f"every node to reach height {target} after the fault was lifted",
    )
    return time.monotonic() - started


def check(
    net: Network, history: History, nodes: list[int], heal_bound_s: float, recoveries: list[float]
) -> Verdict:
    """Everything the module docstring promises; raises AssertionError naming the breach."""
    wait_for(
        lambda: len({net.height(i) for i in nodes}) == 1 and net.height(nodes[0]) > 0,
        heal_bound_s,
        "every node to reach the same height after the faults healed",
    )
    top = assert_agreement(net, nodes)
    chains: dict[int, dict[str, list[int]]] = {}
    for i in nodes:
        where: dict[str, list[int]] = {}
        for height in range(1, top + 1):
            for tx_hash in net.get(i, f"/v1/blocks/{height}")["txs"]:
                where.setdefault(tx_hash, []).append(height)
        chains[i] = where
        twice = {h: at for h, at in where.items() if len(at) > 1}
        assert not twice, f"node{i}: committed twice: {twice}"
    unknown_committed = 0
    for op in history.ops:
        for i in nodes:
            at = chains[i].get(op.tx_hash, [])
            if op.outcome == "ok":
                assert at == [op.height], f"node{i}: acked {op} but the chain has it at {at}"
            elif op.outcome == "failed":
                assert at == [], f"node{i}: refused {op} is committed at {at}"
        if op.outcome == "unknown" and chains[nodes[0]].get(op.tx_hash):
            unknown_committed += 1
    for i in nodes:
        consensus = net.get(i, "/v1/consensus")
        assert consensus["evidence_reported"] == 0, f"node{i} saw a validator double-sign"
        assert consensus["refused_signatures"] == 0, f"node{i} was asked to double-sign"
    return Verdict(
        height=top,
        acknowledged=history.count("ok"),
        failed=history.count("failed"),
        unknown=history.count("unknown"),
        unknown_committed=unknown_committed,
        recovery_median_s=round(statistics.median(recoveries), 2) if recoveries else 0.0,
        recovery_max_s=round(max(recoveries), 2) if recoveries else 0.0,
    )
