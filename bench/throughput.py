"""Throughput and commit latency of a real radledger network, beside a Raft peer.

Run: ``python -m bench.throughput --validators 4 --duration 10 --rate 1000`` or
``--sweep`` (``make bench-net``). Prints a table and writes
``bench/results/throughput.json``.

What runs, all on 127.0.0.1 and all as separate processes:

* a network of ``--validators`` nodes (``radledger run``, the same code path as
  ``radledger devnet``: durable LevelDB with fsync, signatures on, PBFT);
* a setup step that registers a small dataset and enrols 64 researchers;
* an open-loop load generator (``bench.loadgen``) sending pre-signed
  ``access.log`` transactions of about ``--payload`` bytes, spread over the
  nodes, while it watches commits on one node's event stream;
* for the ratio, a 4-node pysyncobj (Raft) cluster replicating payloads of the
  same size for the same duration (``bench.raft_peer``).

Reported per offered rate: committed tx/s, commit latency p50/p90/p99 (send
to the block's commit event), blocks/s and average block size, view changes,
CPU seconds per committed transaction per node, peak RSS per node, and
admission refusals. ``--sweep`` raises the rate until the network no longer
keeps up (committed < 90% of offered, or p50 latency above 2 s), takes the
best committed rate as saturation, then measures latency at 25%, 50% and 90%
of it. Compare only ratios within one run; this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from imaging.inspect import group_series, inspect_file
from imaging.synthetic import StudySpec, write_study
from ledger.keys import SigningKey, load_key_file
from ledger.types import Tx
from node.client import Nonces, RpcClient, sign
from node.researcher import register_bodies
from node.testnet import ADMIN_KEY_FILE, create_testnet, ports

RESULTS: Final = Path(__file__).resolve().parent / "results"
ROOT: Final = Path(__file__).resolve().parent.parent
DATASET: Final = "bench-ct"
RESEARCHERS: Final = 64
CLK_TCK: Final[int] = int(os.sysconf("SC_CLK_TCK"))
#: Words of the access reasons, so payloads are text like a researcher's, not padding.
_REASON_TEXT: Final = (
    "retrospective review of chest CT for the lung nodule follow-up cohort under "
    "protocol IRB-2026-117 approved by the ethics board; segmentation model training "
    "and validation on de-identified series; quality control of annotations by two "
    "radiologists; reproducibility analysis for the multi-site trial NCT01234567; "
    "re-read of contrast phases, dose audit, and radiomics feature extraction"
)
REASON_WORDS: Final = tuple(_REASON_TEXT.split())


def _free_base(validators: int = 10) -> int:
    """A base port below the ephemeral range whose node ports are all free now."""
    rng = random.Random()
    for _ in range(200):
        base = rng.randrange(20_000, 32_000, 100)
        wanted = [port for i in range(validators) for port in ports(base, i)] + [
            base + 50 + i for i in range(validators)
        ]
        try:
            for port in wanted:
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise SystemExit("no free range of ports found on 127.0.0.1")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return float(int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@dataclass
class Network:
    """A running network of node processes."""

    home: Path
    validators: int
    base: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self) -> None:
        create_testnet(self.home, self.validators, base_port=self.base)
        for i in range(self.validators):
            node_home = self.home / f"node{i}"
            log = (node_home / "node.log").open("ab")
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "node", "run", "--home", str(node_home)],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    cwd=ROOT,
                )
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if all(self.client(i).status()["height"] >= 1 for i in range(self.validators)):
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise SystemExit("the network did not start committing within 60 s")

    def rpc(self, i: int) -> str:
        return f"http://127.0.0.1:{ports(self.base, i)[1]}"

    def client(self, i: int) -> RpcClient:
        return RpcClient(self.rpc(i), timeout_s=30)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()

    def settle(self, timeout_s: float = 90.0) -> None:
        """Wait until every mempool is empty, so one run's backlog is not the next's load."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(self.client(i).status()["mempool_txs"] == 0 for i in range(self.validators)):
                return
            time.sleep(0.5)

    def snapshot(self) -> dict[str, Any]:
        return {
            "cpu": [_cpu_seconds(p.pid) for p in self.processes],
            "rss_mb": [_peak_rss_mb(p.pid) for p in self.processes],
            "views": [self.client(i).status()["view"] for i in range(self.validators)],
            "height": self.client(0).status()["height"],
        }


@dataclass
class Workload:
    """Signers and nonces for access.log transactions on the benchmark dataset."""

    chain_id: str
    researchers: list[SigningKey]
    payload: int
    nonces: list[Nonces]
    counter: int = 0
    rng: random.Random = field(default_factory=lambda: random.Random(8))

    def _reason(self, length: int) -> str:
        """A reason of ``length`` bytes that reads (and compresses) like a real one."""
        words = [f"read {self.counter}:"]
        while sum(len(w) + 1 for w in words) < length:
            words.append(self.rng.choice(REASON_WORDS))
        return " ".join(words)[:length]

    def sign(self, count: int) -> list[Tx]:
        txs = []
        for _ in range(count):
            k = self.counter % len(self.researchers)
            self.counter += 1
            body = {
                "dataset": DATASET,
                "purpose": "research",
                "consent": None,
                "trial": None,
                "reason": "",
                "time_ms": int(time.time() * 1000),
            }
            probe = sign(self.researchers[k], self.chain_id, "access.log", body, Nonces())
            pad = max(1, self.payload - len(probe.encode()))
            body["reason"] = self._reason(pad)
            txs.append(sign(self.researchers[k], self.chain_id, "access.log", body, self.nonces[k]))
        return txs


def setup(net: Network, tmp: Path, payload: int) -> Workload:
    """Register the dataset the load reads, and enrol the researchers who read it."""
    admins = [load_key_file(net.home / f"node{i}" / ADMIN_KEY_FILE) for i in range(net.validators)]
    client = net.client(0)
    chain = str(client.status()["chain_id"])
    nonces = Nonces()
    write_study(tmp / "study", StudySpec(seed=5, instances=4, rows=8, columns=8))
    (series,) = group_series(inspect_file(p) for p in sorted((tmp / "study").rglob("*.dcm")))
    for body in register_bodies(
        DATASET,
        series,
        reason="benchmark dataset",
        time_ms=int(time.time() * 1000),
        max_tx_bytes=32 * 1024,
    ):
        client.submit(sign(admins[0], chain, "dataset.register", body, nonces))
    researchers = [SigningKey.generate() for _ in range(RESEARCHERS)]
    last = None
    admin_nonces = [Nonces() for _ in admins]
    for i, key in enumerate(researchers):
        site = i % len(admins)
        body = {
            "member": key.public_key,
            "site": f"site{site}",
            "role": "researcher",
            "reason": "benchmark reader",
            "time_ms": int(time.time() * 1000),
        }
        tx = sign(admins[site], chain, "member.enroll", body, admin_nonces[site])
        client.submit(tx, wait=False)
        last = tx
    assert last is not None
    deadline = time.monotonic() + 30
    while client.get(f"/v1/txs/{last.hash.hex()}")["status"] != "committed":
        if time.monotonic() > deadline:
            raise SystemExit("setup transactions did not commit")
        time.sleep(0.2)
    time.sleep(1.0)  # every enrolment committed (they were admitted in order)
    return Workload(chain, researchers, payload, [Nonces() for _ in researchers])


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    net: Network, work: Workload, rate: float, duration: float, tmp: Path, *, batch_ms: float = 0.0
) -> dict[str, Any]:
    net.settle()
    count = max(1, int(rate * duration))
    txs = work.sign(count)
    txs_file = tmp / f"txs-{rate:.0f}.txt"
    txs_file.write_text("".join(f"{tx.hash.hex()} {tx.encode().hex()}\n" for tx in txs))
    out = tmp / f"load-{rate:.0f}.json"
    before = net.snapshot()
    rpcs = [arg for i in range(net.validators) for arg in ("--rpc", net.rpc(i))]
    subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.loadgen",
            "--txs",
            str(txs_file),
            "--rate",
            str(rate),
            *rpcs,
            "--events",
            net.rpc(0),
            "--out",
            str(out),
            "--drain",
            "10",
            "--batch-ms",
            str(batch_ms),
        ],
        check=True,
        cwd=ROOT,
    )
    after = net.snapshot()
    result = json.loads(out.read_text())
    records = result["records"]
    start = result["start"]
    committed = [r for r in records if "committed" in r]
    latencies = [(r["committed"] - r["sent"]) * 1000 for r in committed]
    last_commit = max((r["committed"] for r in committed), default=start)
    window = [b for b in result["blocks"] if start <= b["at"] <= last_commit]
    refused: dict[str, int] = {}
    for r in records:
        if r.get("status") != 202:
            code = str(r.get("error") or r.get("status"))
            refused[code] = refused.get(code, 0) + 1
    span = max(last_commit - start, 1e-9)
    cpu = [(a - b) for a, b in zip(after["cpu"], before["cpu"], strict=True)]
    return {
        "offered_tx_s": rate,
        "batch_ms": batch_ms,
        "sent": len(records),
        "committed": len(committed),
        "committed_tx_s": len(committed) / span,
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99),
        },
        "blocks_s": len(window) / span,
        "avg_block_txs": statistics.mean(b["txs"] for b in window) if window else 0.0,
        "view_changes": sum(after["views"]) - sum(before["views"]),
        "cpu_ms_per_tx_per_node": [c * 1000 / max(1, len(committed)) for c in cpu],
        "peak_rss_mb": after["rss_mb"],
        "refused": refused,
        "tx_bytes": statistics.mean(len(tx.encode()) for tx in txs),
    }


def raft(validators: int, payload: int, duration: float, tmp: Path) -> dict[str, Any]:
    """Committed ops/s of a pysyncobj cluster of the same size and payload."""
    base = _free_base()
    addresses = [f"127.0.0.1:{base + 50 + i}" for i in range(validators)]
    outs = [tmp / f"raft-{i}.json" for i in range(validators)]
    procs = []
    for i, me in enumerate(addresses):
        partners = [arg for a in addresses if a != me for arg in ("--partner", a)]
        procs.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "bench.raft_peer",
                    "--self",
                    me,
                    *partners,
                    "--payload-bytes",
                    str(payload),
                    "--duration",
                    str(duration),
                    "--out",
                    str(outs[i]),
                    "--linger",
                    str(duration + 40),
                ],
                cwd=ROOT,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    deadline = time.monotonic() + duration + 60
    result: dict[str, Any] | None = None
    while time.monotonic() < deadline and result is None:
        for out in outs:
            if out.exists() and out.stat().st_size:
                result = json.loads(out.read_text())
        time.sleep(0.2)
    for proc in procs:
        proc.kill()
        proc.wait()
    if result is None:
        return {"error": "no pysyncobj leader reported"}
    return {"committed": result["committed"], "ops_s": result["committed"] / result["seconds"]}


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _row(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    cpu = "/".join(f"{c:.2f}" for c in r["cpu_ms_per_tx_per_node"])
    refused = f" refused {r['refused']}" if r["refused"] else ""
    return (
        f"  offered {r['offered_tx_s']:7.0f}  committed {r['committed_tx_s']:7.0f} tx/s  "
        f"p50 {lat['p50']:6.0f}  p90 {lat['p90']:6.0f}  p99 {lat['p99']:6.0f} ms  "
        f"{r['blocks_s']:5.1f} blocks/s x {r['avg_block_txs']:6.1f} txs  "
        f"views +{r['view_changes']}  cpu ms/tx/node {cpu}  "
        f"rss MB {max(r['peak_rss_mb']):.0f}{refused}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--rate", type=float, action="append", default=None)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--payload", type=int, default=400)
    parser.add_argument("--no-raft", action="store_true")
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=0.0,
        help="Send each node the transactions due every N ms in one /v1/txs/batch request "
        "(bulk import) instead of one request per transaction (default).",
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "throughput.json")
    args = parser.parse_args(argv)
    print(f"machine: {machine()}")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="radledger-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        net = Network(tmp / "net", args.validators, _free_base())
        try:
            net.start()
            work = setup(net, tmp, args.payload)
            rates = args.rate or [250.0, 500.0]
            if args.sweep:
                rates = [250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0]
            for rate in rates:
                row = measure(net, work, rate, args.duration, tmp, batch_ms=args.batch_ms)
                rows.append(row)
                print(_row(row), flush=True)
                if args.sweep and (
                    row["committed"] < 0.9 * row["sent"] or row["latency_ms"]["p50"] > 2000
                ):
                    break
            saturation = max(r["committed_tx_s"] for r in rows)
            if args.sweep:
                # An overload leaves nodes slower for a while (see docs/PERFORMANCE.md),
                # so the fixed fractions run on a fresh network.
                net.stop()
                net = Network(tmp / "fresh", args.validators, _free_base())
                net.start()
                work = setup(net, tmp / "fresh-setup", args.payload)
                print(f"saturation: {saturation:.0f} tx/s; on a fresh network, at fractions of it:")
                for fraction in (0.25, 0.5, 0.9):
                    row = measure(
                        net, work, saturation * fraction, args.duration, tmp, batch_ms=args.batch_ms
                    )
                    row["fraction_of_saturation"] = fraction
                    rows.append(row)
                    print(_row(row), flush=True)
        finally:
            net.stop()
        peer = None if args.no_raft else raft(args.validators, args.payload, args.duration, tmp)
    result = {
        "machine": machine(),
        "validators": args.validators,
        "rows": rows,
        "saturation_tx_s": saturation,
        "raft": peer,
    }
    if peer is not None and "ops_s" in peer:
        ratio = saturation / peer["ops_s"]
        result["ratio_radledger_over_raft"] = ratio
        print(
            f"pysyncobj (Raft, {args.validators} nodes, no signatures, no fsync): "
            f"{peer['ops_s']:.0f} ops/s; radledger/pysyncobj = {ratio:.3f}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
