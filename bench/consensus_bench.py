"""Consensus speed in the simulator: heights per CPU second, and what one height costs.

Run: ``.venv/bin/python -m bench.consensus_bench``. Prints a table and writes
``bench/results/consensus.json``.

Four validators, no Byzantine node, a reliable network (1-5 ms links, no loss), blocks of
1,000 pre-signed transactions (a new 1,000 for every height; signing them is done once,
before timing). The application is the simulator's, with transaction signature checks
off: this measures consensus, not the registry. Each run commits ``HEIGHTS`` heights on all
four nodes; the numbers are medians over ``RUNS`` runs.

What is reported, per committed height (all four replicas together unless it says
"per replica"):

* ``heights_per_cpu_second``: heights divided by the CPU time of the whole simulation
  (replicas, boundary verification, application, stores, checker, network);
* ``step_cpu_us``: CPU time inside ``Replica.step``, which includes signing its own
  votes; ``step_cpu_us_without_signing`` subtracts the time spent in ed25519 signing;
* ``verify_cpu_us``: CPU time in ``verify_message`` at the peer boundary, measured
  separately (the core never verifies signatures itself);
* ``signatures`` and ``signature_verifications``: ed25519 operations, counted at PyNaCl.
  Verifications are split into the peer boundary's and the checker's (the simulator's
  own certificate checks, mostly answered from a cache). The simulator hands one message
  object to every receiver of a broadcast and verifies it once, so
  ``signature_verifications_per_receiver`` also counts the signatures in every delivered
  message: what the four nodes of a real network, each verifying what it receives, do.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import nacl.signing

from node.sim.app import SIM_CHAIN_ID, TxPool
from node.sim.network import LinkProfile
from node.sim.world import SimOptions, Simulation

RESULTS: Final = Path(__file__).resolve().parent / "results"
VALIDATORS: Final = 4
TXS_PER_BLOCK: Final = 1_000
HEIGHTS: Final = 12
RUNS: Final = 5
SEED: Final = 20260101
OPTIONS: Final = SimOptions(
    max_txs_per_block=TXS_PER_BLOCK,
    sequential_txs=True,
    verify_txs=False,
    checkpoint_interval=100,
    clock_skew_ms=0,
    view_timeout_ms=5_000,
    profile=True,
)
LINKS: Final = LinkProfile(min_delay_ms=1, max_delay_ms=5)


@dataclass(slots=True)
class CryptoCounter:
    signatures: int = 0
    verifications: int = 0
    sign_ns: int = 0


@contextmanager
def counting_crypto() -> Iterator[CryptoCounter]:
    """Count (and time) every ed25519 sign and verify made through PyNaCl."""
    counter = CryptoCounter()
    original_sign = nacl.signing.SigningKey.sign
    original_verify = nacl.signing.VerifyKey.verify

    def sign(self: nacl.signing.SigningKey, *args: Any, **kwargs: Any) -> Any:
        began = time.process_time_ns()
        try:
            return original_sign(self, *args, **kwargs)
        finally:
            counter.signatures += 1
            counter.sign_ns += time.process_time_ns() - began

    def verify(self: nacl.signing.VerifyKey, *args: Any, **kwargs: Any) -> Any:
        counter.verifications += 1
        return original_verify(self, *args, **kwargs)

    nacl.signing.SigningKey.sign = sign  # type: ignore[method-assign]
    nacl.signing.VerifyKey.verify = verify  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        nacl.signing.SigningKey.sign = original_sign  # type: ignore[method-assign]
        nacl.signing.VerifyKey.verify = original_verify  # type: ignore[method-assign]


@dataclass(frozen=True, slots=True)
class RunStats:
    heights: int
    cpu_s: float
    wall_s: float
    step_ns: int
    verify_ns: int
    sign_ns: int
    signatures: int
    verifications: int
    checker_verifications: int
    delivered_signatures: int
    messages: int
    steps: int


def one_run(pool: TxPool, seed: int) -> RunStats:
    sim = Simulation.create(seed, validators=VALIDATORS, byzantine=0, options=OPTIONS, pool=pool)
    sim.network.profile = LINKS
    with counting_crypto() as crypto:
        began_cpu, began_wall = time.process_time(), time.perf_counter()
        sim.start()
        done = sim.run_until(
            lambda: all(sim.committed(node) >= HEIGHTS for node in sim.nodes), 600_000
        )
        cpu, wall = time.process_time() - began_cpu, time.perf_counter() - began_wall
    if not done or not sim.checker.ok:
        raise SystemExit(f"bench run {seed} failed: {sim.checker.violations[:3]}")
    return RunStats(
        heights=HEIGHTS,
        cpu_s=cpu,
        wall_s=wall,
        step_ns=sim.step_ns,
        verify_ns=sim.verify_ns,
        sign_ns=crypto.sign_ns,
        signatures=crypto.signatures,
        verifications=crypto.verifications,
        checker_verifications=sim.signatures.verifications,
        delivered_signatures=sim.network.stats.signatures_delivered,
        messages=sim.network.stats.delivered,
        steps=sim.steps,
    )


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "system": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
    }


def median(runs: list[RunStats], value: Callable[[RunStats], float]) -> float:
    return statistics.median(value(r) for r in runs)


def main() -> None:
    info = machine()
    print(
        f"consensus bench: n={VALIDATORS}, {TXS_PER_BLOCK}-tx blocks, {HEIGHTS} heights x "
        f"{RUNS} runs; {info['cpu']} ({info['cpus']} cpus), {info['implementation']} "
        f"{info['python']}"
    )
    began = time.process_time()
    pool = TxPool.create(SIM_CHAIN_ID, TXS_PER_BLOCK * (HEIGHTS + 1), tag=b"bench")
    print(f"pre-signed {len(pool.txs)} transactions in {time.process_time() - began:.1f}s CPU")
    one_run(pool, SEED - 1)  # warm-up
    runs = [one_run(pool, SEED + i) for i in range(RUNS)]

    def per_height(value: Callable[[RunStats], float]) -> float:
        return median(runs, lambda r: value(r) / r.heights)

    results = {
        "heights_per_cpu_second": median(runs, lambda r: r.heights / r.cpu_s),
        "heights_per_wall_second": median(runs, lambda r: r.heights / r.wall_s),
        "step_cpu_us": per_height(lambda r: r.step_ns / 1_000),
        "step_cpu_us_per_replica": per_height(lambda r: r.step_ns / 1_000 / VALIDATORS),
        "step_cpu_us_without_signing": per_height(lambda r: (r.step_ns - r.sign_ns) / 1_000),
        "verify_cpu_us": per_height(lambda r: r.verify_ns / 1_000),
        "signatures": per_height(lambda r: r.signatures),
        "signature_verifications": per_height(lambda r: r.verifications),
        "signature_verifications_boundary": per_height(
            lambda r: r.verifications - r.checker_verifications
        ),
        "signature_verifications_checker": per_height(lambda r: r.checker_verifications),
        "signature_verifications_per_receiver": per_height(lambda r: r.delivered_signatures),
        "messages_delivered": per_height(lambda r: r.messages),
        "replica_steps": per_height(lambda r: r.steps),
    }
    rows = [
        ("heights per CPU second (whole simulation)", f"{results['heights_per_cpu_second']:.1f}"),
        ("Replica.step CPU per height, 4 replicas", f"{results['step_cpu_us']:.0f} us"),
        ("  per replica", f"{results['step_cpu_us_per_replica']:.0f} us"),
        (
            "  4 replicas, without ed25519 signing",
            f"{results['step_cpu_us_without_signing']:.0f} us",
        ),
        ("verify_message CPU per height (boundary)", f"{results['verify_cpu_us']:.0f} us"),
        ("signatures per height", f"{results['signatures']:.1f}"),
        (
            "verifications per height (boundary)",
            f"{results['signature_verifications_boundary']:.1f}",
        ),
        ("verifications per height (checker)", f"{results['signature_verifications_checker']:.1f}"),
        (
            "verifications per height, every receiver verifying",
            f"{results['signature_verifications_per_receiver']:.1f}",
        ),
        ("messages delivered per height", f"{results['messages_delivered']:.1f}"),
        ("replica steps per height", f"{results['replica_steps']:.1f}"),
    ]
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    RESULTS.mkdir(exist_ok=True)
    document = {
        "machine": info,
        "config": {
            "validators": VALIDATORS,
            "txs_per_block": TXS_PER_BLOCK,
            "heights": HEIGHTS,
            "runs": RUNS,
            "tx_signature_checks": False,
            "links_ms": [LINKS.min_delay_ms, LINKS.max_delay_ms],
        },
        "median": results,
        "runs": [asdict(r) for r in runs],
    }
    (RESULTS / "consensus.json").write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {RESULTS / 'consensus.json'}")


if __name__ == "__main__":
    main()
