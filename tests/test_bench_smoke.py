"""Smoke tests of the network benchmarks (bench/): each entry point runs end to end
with tiny sizes, so a broken bench is noticed here rather than in ``make bench``.

These check that the harness works and writes what docs/PERFORMANCE.md reads,
not how fast anything is: the sizes are far too small to mean anything. The
nodes run interpreted (``--build interpreted``) so no mypyc build is needed.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.throughput import aggregate

ROOT = Path(__file__).resolve().parent.parent


def _run(module: str, out: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", module, "--build", "interpreted", "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "machine: {'cores'" in done.stdout
    result: dict[str, Any] = json.loads(out.read_text())
    assert result["machine"]["cores"] >= 1
    return result


def test_aggregate_reports_medians_with_min_and_max() -> None:
    nan = float("nan")
    runs = [
        {"committed_tx_s": 10.0, "latency_ms": {"p50": 5.0}, "cpu": [1.0, 3.0], "refused": {}},
        {"committed_tx_s": 30.0, "latency_ms": {"p50": nan}, "cpu": [2.0, 1.0]},
        {
            "committed_tx_s": 20.0,
            "latency_ms": {"p50": 7.0},
            "cpu": [3.0, 2.0],
            "refused": {"x": 4},
        },
    ]
    row = aggregate(runs)
    assert row["repeats"] == 3
    assert row["committed_tx_s"] == 20.0
    assert row["latency_ms"]["p50"] == 6.0  # a run without samples is left out
    assert row["cpu"] == [2.0, 2.0]
    assert row["refused"] == {"x": 0.0}  # a code missing from a run counts 0 there
    assert (row["min"]["committed_tx_s"], row["max"]["committed_tx_s"]) == (10.0, 30.0)
    assert row["runs"] == runs
    single = aggregate(runs[:1])
    assert single["repeats"] == 1
    assert single["committed_tx_s"] == 10.0
    assert "runs" not in single


def test_scaling_one_point(tmp_path: Path) -> None:
    result = _run(
        "bench.scaling",
        tmp_path / "scaling.json",
        "--validators",
        "--payloads",
        "8192",
        "--ladder",
        "15",
        "--duration",
        "1",
    )
    (point,) = result["points"]
    assert point["kind"] == "dataset.register"
    assert 7000 < point["tx_bytes"] <= 8192  # under the node's 32 KiB max_tx_bytes
    assert point["saturation_tx_s"] > 0
    assert point["at_half"]["committed_tx_s"] > 0
    assert not math.isnan(point["at_half"]["latency_ms"]["p50"])


def test_sync_catches_up(tmp_path: Path) -> None:
    result = _run("bench.sync", tmp_path / "sync.json", "--blocks", "20", "--timeout", "60")
    sync = result["sync"]
    assert result["build"]["height"] >= 20
    assert sync["reached_height"] >= result["build"]["height"]
    assert sync["blocks_synced"] >= 20
    assert sync["blocks_s"] > 0


def test_rpc_read(tmp_path: Path) -> None:
    result = _run(
        "bench.rpc_read",
        tmp_path / "rpc.json",
        "--txs",
        "200",
        "--load-rate",
        "400",
        "--duration",
        "2",
        "--concurrency",
        "4",
    )
    (row,) = result["rows"]
    assert result["committed_txs"] > 100
    assert row["requests"] > 0
    assert not row["errors"]
    assert row["node_cpu_share"] > 0


def test_overload_samples_rss_and_mempool(tmp_path: Path) -> None:
    result = _run(
        "bench.throughput",
        tmp_path / "overload.json",
        "--overload",
        "--rate",
        "600",
        "--duration",
        "3",
    )
    assert len(result["timeline"]) >= 3
    sample = result["timeline"][-1]
    assert len(sample["rss_mb"]) == 4
    assert all(v > 0 for v in sample["rss_mb"])
    assert result["mempool"]["limit_held"]
    assert isinstance(result["rss_plateaus"], bool)


@pytest.mark.slow
def test_throughput_repeats(tmp_path: Path) -> None:
    result = _run(
        "bench.throughput",
        tmp_path / "throughput.json",
        "--rate",
        "100",
        "--duration",
        "1",
        "--repeats",
        "2",
        "--no-raft",
    )
    (row,) = result["rows"]
    assert row["repeats"] == 2
    assert len(row["runs"]) == 2
    assert row["min"]["committed_tx_s"] <= row["committed_tx_s"] <= row["max"]["committed_tx_s"]
