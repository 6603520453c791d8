"""A node whose disk fills up: it must stop rather than lose or corrupt a record,
and once space is freed and it is restarted, catch up and agree.

node3's data directory is a small tmpfs of its own. While clients submit, the
nemesis fills that filesystem to the last byte; node3's next LevelDB write
(a block commit or a safety record, both fsynced) fails, and the node must halt
with exit status 1, as docs/OPERATIONS.md §6 tells operators, while the other
three go on. Then the filler is deleted, node3 restarted, and the history
checker runs over all four. ``RADLEDGER_DISK_CYCLES`` (default 1; ``make
faults``: 5). Needs root (mount); skips otherwise.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from node.testnet import create_testnet
from tests.faults.history import Clients, check, recover
from tests.faults.test_process_faults import _report, _seed
from tests.node.test_network_processes import Network, _free_base, wait_for

CYCLES = int(os.environ.get("RADLEDGER_DISK_CYCLES", "1"))
TMPFS_BYTES = 64 * 1024 * 1024
HEAL_BOUND_S = 120.0
MOUNT = shutil.which("mount")


def _can_mount() -> str | None:
    if MOUNT is None or os.geteuid() != 0:
        return "mounting a tmpfs needs root and mount(8)"
    return None


pytestmark = pytest.mark.skipif(_can_mount() is not None, reason=f"{_can_mount()}")


@pytest.fixture
def small_disk_network(tmp_path: Path) -> Iterator[tuple[Network, Path]]:
    base = _free_base()
    net = Network(create_testnet(tmp_path / "net", 4, base_port=base), base)
    data = net.net.nodes[3].home / "data"
    data.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(data)], check=True
    )
    try:
        for i in range(4):
            net.start(i)
        wait_for(lambda: min(net.height(i) for i in range(4)) >= 1, 60, "the first block")
        yield net, data
    finally:
        net.stop_all()
        subprocess.run(["umount", "-l", str(data)], check=False)


def _fill(folder: Path) -> Path:
    """Write into ``folder`` until its filesystem has no byte left."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        size = 1 << 20
        while size:
            try:
                os.write(fd, b"\0" * size)
            except OSError:  # ENOSPC: try smaller pieces, down to one byte
                size //= 2
    finally:
        os.close(fd)
    assert shutil.disk_usage(folder).free < 4096
    return filler


def test_a_full_disk_halts_the_node_and_it_recovers_once_freed(
    small_disk_network: tuple[Network, Path],
) -> None:
    net, data = small_disk_network
    seed = _seed()
    rng = random.Random(seed)
    recoveries: list[float] = []
    with Clients(net, seed) as clients:
        for _ in range(CYCLES):
            time.sleep(rng.uniform(1.0, 3.0))
            filler = _fill(data)
            # node3 cannot store its next block or vote: it halts, with status 1
            net.procs[3].wait(timeout=60)
            assert net.procs[3].returncode == 1
            log = (net.net.nodes[3].home / "node.log").read_text()
            assert "stopping consensus" in log
            # the other three go on without it
            top = max(net.height(i) for i in range(3))
            wait_for(
                lambda top=top: min(net.height(i) for i in range(3)) > top,  # type: ignore[misc]
                30,
                "the others to commit while node3 is down",
            )
            filler.unlink()
            net.start(3)
            recoveries.append(recover(net, [0, 1, 2, 3], HEAL_BOUND_S))
        time.sleep(2)
    verdict = check(net, clients.history, [0, 1, 2, 3], HEAL_BOUND_S, recoveries)
    assert verdict.acknowledged > 0
    _report("disk full, freed, restart", CYCLES, verdict, seed)
