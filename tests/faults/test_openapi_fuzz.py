"""Bad input at the RPC's edge: schemathesis against a running 4-process network.

Every operation of the node's own OpenAPI document (/openapi.json) is fuzzed
with schema-valid and schema-violating requests, then walked statefully. The
checks: no 5xx, every status and content type documented, responses match
their schemas, schema-violating requests refused with a 4xx, 405s name the
allowed methods. ``positive_data_acceptance`` is left out on purpose: a
schema-valid transaction is still refused unless its signature, nonce and
registry rules hold, and a schema-valid id is usually not registered (404).
Afterwards every node still runs, still agrees on every block, and its log holds
no traceback. The run is bounded (``RADLEDGER_FUZZ_EXAMPLES`` per operation,
default 25, a few seconds); ``make faults`` raises it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from node.testnet import ports
from tests.node.test_network_processes import Network, assert_agreement, network, wait_for

__all__ = ["network"]

ROOT = Path(__file__).resolve().parents[2]
ST = shutil.which("st", path=str(Path(sys.executable).parent)) or shutil.which("st")
EXAMPLES = int(os.environ.get("RADLEDGER_FUZZ_EXAMPLES", "25"))


@pytest.mark.skipif(ST is None, reason="schemathesis is not installed (pip install -e '.[test]')")
def test_schemathesis_finds_nothing_and_the_network_stays_whole(network: Network) -> None:
    assert ST is not None
    before = assert_agreement(network, [0, 1, 2, 3])
    rpc = f"http://127.0.0.1:{ports(network.base, 0)[1]}"
    done = subprocess.run(
        [
            ST,
            "run",
            f"{rpc}/openapi.json",
            "--max-examples",
            str(EXAMPLES),
            "--workers",
            "1",
            "--seed",
            os.environ.get("RADLEDGER_FUZZ_SEED", "20261204"),
            "--checks",
            "all",
            "--exclude-checks",
            "positive_data_acceptance",
            "--request-timeout",
            "30",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        check=False,
    )
    report = done.stdout[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, report
    assert "passed" in done.stdout, report
    # the node answered everything and kept running; consensus never noticed
    assert all(network.procs[i].poll() is None for i in range(4))
    wait_for(lambda: min(network.height(i) for i in range(4)) > before, 30, "more blocks")
    assert assert_agreement(network, [0, 1, 2, 3]) > before
    for i in range(4):
        log = (network.net.nodes[i].home / "node.log").read_text()
        assert "Traceback" not in log, f"node{i}: {log[-3000:]}"
