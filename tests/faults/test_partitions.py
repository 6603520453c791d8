"""Network partitions between real node processes, each in its own network namespace.

Clients submit throughout (tests/faults/history.py) while the nemesis
(tests/faults/netns.py) cuts links and heals them, cycling through: the primary
isolated for longer than the view timeout; a 2|2 split (no side has a quorum,
so nothing may commit anywhere); a one-way cut between two nodes; a random node
isolated. After each heal every node must reach the highest node's height; at
the end the history checker runs. ``RADLEDGER_PARTITION_CYCLES`` (default 4,
one of each; ``make faults``: 50). Skips where network namespaces cannot be made
(not root, no iproute2).
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.testnet import create_testnet
from tests.faults.history import Clients, check, recover
from tests.faults.netns import NamespacedNetwork, available
from tests.faults.test_process_faults import _primary, _report, _seed
from tests.node.test_network_processes import _free_base, wait_for

CYCLES = int(os.environ.get("RADLEDGER_PARTITION_CYCLES", "4"))
#: Longer than the genesis view timeout (2 s).
HOLD_S = float(os.environ.get("RADLEDGER_PARTITION_S", "4"))
HEAL_BOUND_S = 120.0

pytestmark = pytest.mark.skipif(available() is not None, reason=f"{available()}")


@pytest.fixture
def netns_network(tmp_path: Path) -> Iterator[NamespacedNetwork]:
    base = _free_base()
    subnet = 1 + os.getpid() % 200
    net = NamespacedNetwork(create_testnet(tmp_path / "net", 4, base_port=base), base, subnet)
    net.destroy()  # leftovers of an interrupted run with the same subnet
    net.create()
    try:
        for i in range(4):
            net.start(i)
        wait_for(lambda: min(net.height(i) for i in range(4)) >= 1, 60, "the first block")
        yield net
    finally:
        net.heal()
        net.stop_all()
        net.destroy()


def test_partitions_and_heals(netns_network: NamespacedNetwork) -> None:
    net = netns_network
    seed = _seed()
    rng = random.Random(seed)
    recoveries: list[float] = []
    with Clients(net, seed) as clients:
        for cycle in range(CYCLES):
            time.sleep(rng.uniform(0.5, 1.5))
            kind = cycle % 4
            if kind == 0:
                primary = _primary(net)
                net.isolate(primary if primary is not None else rng.randrange(4))
            elif kind == 1:
                nodes = [0, 1, 2, 3]
                rng.shuffle(nodes)
                left, right = nodes[:2], nodes[2:]
                net.split(left, right)
                # votes in flight at the cut may still complete a certificate; after
                # that, no side holds 2f+1 = 3 validators, so no new height is
                # certified anywhere (a node may still fetch an already certified
                # block from its side's partner)
                time.sleep(1.0)
                ceiling = max(net.height(i) for i in range(4))
                time.sleep(HOLD_S)
                assert max(net.height(i) for i in range(4)) == ceiling, "a minority committed"
            elif kind == 2:
                a, b = rng.sample(range(4), 2)
                net.cut(a, b)
            else:
                net.isolate(rng.randrange(4))
            if kind != 1:
                time.sleep(HOLD_S)
            net.heal()
            recoveries.append(recover(net, [0, 1, 2, 3], HEAL_BOUND_S))
        time.sleep(2)  # clients go on for a moment on the healed network
    verdict = check(net, clients.history, [0, 1, 2, 3], HEAL_BOUND_S, recoveries)
    assert verdict.acknowledged > 0, "no transaction committed during the faults"
    _report("partitions and heals", CYCLES, verdict, seed)
