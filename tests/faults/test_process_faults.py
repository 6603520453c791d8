"""Crash and pause faults on a real 4-process network, with clients and a history checker.

Each scenario runs clients throughout (tests/faults/history.py), injects its
faults from outside the node processes, heals, and checks the history. The
short version runs in ``make test``; ``make faults`` runs the long one
(``RADLEDGER_FAULT_CYCLES``, ``RADLEDGER_PAUSE_CYCLES``). Every run prints its
seed (``RADLEDGER_SEED`` reproduces the choices) and one JSON line of figures
(docs/RELIABILITY.md collects them).
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import time
from pathlib import Path

from tests.faults.history import Clients, Verdict, check, recover
from tests.node.test_network_processes import Network, network, wait_for

__all__ = ["network"]

KILL_CYCLES = int(os.environ.get("RADLEDGER_FAULT_CYCLES", "6"))
PAUSE_CYCLES = int(os.environ.get("RADLEDGER_PAUSE_CYCLES", "2"))
#: Longer than the genesis view timeout (2 s) so the others change view meanwhile.
PAUSE_S = float(os.environ.get("RADLEDGER_PAUSE_S", "5"))
HEAL_BOUND_S = 120.0
RESULTS = (
    Path(os.environ.get("RADLEDGER_FAULT_RESULTS", ""))
    if os.environ.get("RADLEDGER_FAULT_RESULTS")
    else None
)


def _seed() -> int:
    seed = int(os.environ.get("RADLEDGER_SEED", int.from_bytes(os.urandom(4), "big")))
    print(f"reproduce with RADLEDGER_SEED={seed}")
    return seed


def _primary(net: Network) -> int | None:
    """Index of the node whose validator is the current primary, as the answering
    nodes see it (a node that is restarting does not answer yet)."""
    statuses = {}
    for i in range(4):
        try:
            statuses[i] = net.get(i, "/v1/status")
        except OSError:
            continue
    keys = {status["validator"]: i for i, status in statuses.items()}
    for status in statuses.values():
        if status["primary"] in keys:
            return keys[status["primary"]]
    return None


def _report(scenario: str, faults: int, verdict: Verdict, seed: int) -> None:
    figures = dataclasses.asdict(verdict)
    line = json.dumps({"scenario": scenario, "faults": faults, "seed": seed, **figures})
    print(line)
    if RESULTS is not None:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with RESULTS.open("a") as out:
            out.write(line + "\n")


def test_kill_minus_nine_and_restart_in_a_loop(network: Network) -> None:
    """SIGKILL a node (the primary half of the time) at a random moment, restart it
    after a random downtime, again and again, while clients submit throughout."""
    net = network
    seed = _seed()
    rng = random.Random(seed)
    recoveries: list[float] = []
    with Clients(net, seed) as clients:
        for _ in range(KILL_CYCLES):
            time.sleep(rng.uniform(0.2, 1.5))
            primary = _primary(net)
            victim = primary if primary is not None and rng.random() < 0.5 else rng.randrange(4)
            net.kill(victim)
            time.sleep(rng.uniform(0.1, 3.0))
            net.start(victim)
            recoveries.append(recover(net, [0, 1, 2, 3], HEAL_BOUND_S))
        time.sleep(2)  # clients go on for a moment on the healed network
    verdict = check(net, clients.history, [0, 1, 2, 3], HEAL_BOUND_S, recoveries)
    assert verdict.acknowledged > 0, "no transaction committed during the faults"
    _report("kill -9 and restart", KILL_CYCLES, verdict, seed)


def test_pause_nodes_longer_than_the_view_timeout(network: Network) -> None:
    """SIGSTOP a node (the primary first, then a random one) for longer than the view
    timeout and resume it: the others change view and go on; it catches up."""
    net = network
    seed = _seed()
    rng = random.Random(seed)
    recoveries: list[float] = []
    with Clients(net, seed) as clients:
        for cycle in range(PAUSE_CYCLES):
            time.sleep(rng.uniform(0.5, 1.5))
            primary = _primary(net)
            victim = primary if cycle == 0 and primary is not None else rng.randrange(4)
            before = max(net.height(i) for i in range(4) if i != victim)
            net.procs[victim].send_signal(signal.SIGSTOP)
            others = [i for i in range(4) if i != victim]

            def progressed(others: list[int] = others, before: int = before) -> bool:
                return max(net.height(i) for i in others) > before

            try:
                # the other three keep committing while it is frozen
                wait_for(progressed, PAUSE_S + 20, "the others to commit while one is paused")
                time.sleep(max(0.0, PAUSE_S - 1))
            finally:
                net.procs[victim].send_signal(signal.SIGCONT)
            recoveries.append(recover(net, [0, 1, 2, 3], HEAL_BOUND_S))
        time.sleep(2)  # clients go on for a moment on the healed network
    verdict = check(net, clients.history, [0, 1, 2, 3], HEAL_BOUND_S, recoveries)
    assert verdict.acknowledged > 0, "no transaction committed during the faults"
    _report("SIGSTOP beyond the view timeout", PAUSE_CYCLES, verdict, seed)
