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

``--repeats K`` measures every point K times, each repeat on a fresh network
(the sweep, then the fixed fractions on another fresh network), and reports
the median of each figure with its min and max (saturation: the median of the
repeats' saturations; the Raft peer is run K times too).

``--overload --rate R --duration S`` (``bench/results/overload.json``) offers
R tx/s, well above saturation, for S seconds to a fresh network and samples
every node's RSS and mempool size each second: does RSS plateau (the max over
the last third of the overload against the max over the middle third), do the
mempool's limits hold, how many submissions were refused (429
``mempool_full``)? Each node gets its transactions in order from 64 senders
(``bench.loadgen --senders``); what the nodes cannot take yet waits in the
generator, so the overload lasts until the last submission is answered,
usually well after the S seconds of offering.

``--kind dataset.register`` sends registrations of new datasets instead of
access logs (an access reason is at most 512 bytes, so payloads above about
650 bytes need another kind; ``bench.scaling`` uses it for 1 and 8 KiB).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
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
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from bench import native
from imaging.inspect import group_series, inspect_file
from imaging.synthetic import StudySpec, write_study
from ledger import codec
from ledger.keys import SigningKey, load_key_file
from ledger.manifest import SUMMARY_SCHEMA, InstanceLeaf, SeriesSummary, series_root, sort_leaves
from ledger.types import Tx
from node.client import Nonces, RpcClient, sign
from node.config import CONFIG_FILE_NAME, NodeConfig, dump_config, load_config
from node.researcher import register_bodies
from node.testnet import ADMIN_KEY_FILE, create_testnet, ports

RESULTS: Final = Path(__file__).resolve().parent / "results"
ROOT: Final = Path(__file__).resolve().parent.parent
DATASET: Final = "bench-ct"
RESEARCHERS: Final = 64
#: Sender tasks per node in an overload run (``bench.loadgen --senders``): each node
#: then gets its transactions in the order they were due. Unordered, a saturated node
#: admits one signer's later transaction, and commits it, before the earlier one,
#: which is then refused ``nonce_reused``: an artefact of one load generator standing
#: in for many sequential clients, that would hide the mempool's own limits.
OVERLOAD_SENDERS: Final = 64
#: Sender tasks per node otherwise: each node's transactions arrive in order, as from
#: clients that submit their own transactions one after another (unordered, a
#: saturated node admits a signer's later transaction first and refuses the earlier
#: one as nonce_reused, which measures the load generator, not the node).
SENDERS: Final = 16
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
ACCESS: Final = "access.log"
REGISTER: Final = "dataset.register"
KINDS: Final = (ACCESS, REGISTER)
#: The registry's limit on a reason (registry/kinds.py MAX_REASON_BYTES).
MAX_REASON: Final = 512
#: The offered rates of ``--sweep``.
SWEEP_RATES: Final = (250.0, 500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0)
#: A node config change applied to every node's config.toml before it starts.
Tune = Callable[[NodeConfig], NodeConfig]


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


def _status_mb(pid: int, key: str) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # the process is gone
        return 0.0
    for line in text.splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    """The resident set size of a process now, in MiB."""
    return _status_mb(pid, "VmRSS:")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds a process has used so far."""
    return _cpu_seconds(pid)


#: Which build the node processes run: ``"native"`` (the hot modules compiled with
#: mypyc, as a site installs with RADLEDGER_COMPILE=1) or ``"interpreted"``.
_BUILD: dict[str, Any] = {"kind": "interpreted", "tree": ROOT}
BUILDS: Final = ("native", "interpreted")


def use_build(kind: str) -> Path:
    """Run later networks' nodes from ``kind``'s tree (compiling it if needed)."""
    if kind not in BUILDS:
        raise ValueError(f"unknown build {kind!r}")
    tree = native.build() if kind == "native" else ROOT
    _BUILD.update(kind=kind, tree=tree)
    return tree


def build_kind() -> str:
    return str(_BUILD["kind"])


@dataclass
class Network:
    """A running network of node processes."""

    home: Path
    validators: int
    base: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    #: Applied to every node's config.toml after the testnet is generated.
    tune: Tune | None = None
    #: The source tree the node processes run from (see :func:`use_build`).
    tree: Path = field(default_factory=lambda: _BUILD["tree"])

    def start(self) -> None:
        create_testnet(self.home, self.validators, base_port=self.base)
        if self.tune is not None:
            self.retune(self.tune)
        for i in range(self.validators):
            self.launch(i)
        self.wait_started(range(self.validators))

    def node_home(self, i: int) -> Path:
        return self.home / f"node{i}"

    def retune(self, tune: Tune, nodes: Sequence[int] | None = None) -> None:
        """Rewrite node configs (takes effect when a node next starts)."""
        for i in range(self.validators) if nodes is None else nodes:
            path = self.node_home(i) / CONFIG_FILE_NAME
            path.write_text(dump_config(tune(load_config(path))))

    def launch(self, i: int) -> None:
        """Start node ``i``'s process (again, if it was stopped)."""
        log = (self.node_home(i) / "node.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--home", str(self.node_home(i))],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.tree,
        )
        log.close()  # the child holds its own descriptor
        if i < len(self.processes):
            self.processes[i] = process
        else:
            self.processes.append(process)

    def wait_started(self, nodes: Sequence[int] | range, min_height: int = 1) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if all(self.client(i).status()["height"] >= min_height for i in nodes):
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise SystemExit("the network did not start committing within 60 s")

    def stop_node(self, i: int) -> None:
        process = self.processes[i]
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

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
                process.wait()

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
    kind: str = ACCESS
    #: Size of a transaction with an empty reason (constant: the nonce and the
    #: time always take 9 bytes), measured on first use.
    _bare_bytes: int | None = None

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
            if self._bare_bytes is None:
                probe = sign(self.researchers[k], self.chain_id, ACCESS, body, Nonces())
                self._bare_bytes = len(probe.encode())
            pad = max(1, self.payload - self._bare_bytes)
            body["reason"] = self._reason(pad)
            txs.append(sign(self.researchers[k], self.chain_id, ACCESS, body, self.nonces[k]))
        return txs


@dataclass
class RegisterWorkload(Workload):
    """``dataset.register`` of a new one-series dataset per transaction, about ``payload`` bytes.

    The series' instance leaves (SOP Instance UID and three SHA-256 digests each,
    random as real digests are) make up the size, and a reason of researcher's
    words the rest; the summary is that of a real synthetic CT series. An access
    reason is limited to 512 bytes (registry/kinds.py), so payloads above about
    650 bytes are registrations, as a site's bulk import would be.
    """

    summary: SeriesSummary | None = None
    #: (leaves per transaction, reason bytes), planned on first use
    _plan: tuple[int, int] | None = None

    def _body(self, leaves_n: int, reason_bytes: int) -> dict[str, Any]:
        assert self.summary is not None
        # Fixed-width numbers, so every transaction of a run has the same size.
        serial = self.counter + 100_000_000
        uid = f"1.2.826.0.1.3680043.10.8.{serial}"
        leaves = sort_leaves(
            InstanceLeaf(
                sop_instance_uid=f"{uid}.{i + 1001}",
                pixel=self.rng.randbytes(32),
                meta=self.rng.randbytes(32),
                file=self.rng.randbytes(32),
            )
            for i in range(leaves_n)
        )
        summary = dataclasses.replace(self.summary, instances=leaves_n, frames=leaves_n)
        return {
            "dataset": f"bench-reg-{serial}",
            "series": uid,
            "part": 0,
            "parts": 1,
            "leaves": [codec.decode(leaf.encode()) for leaf in leaves],
            "series_root": series_root(leaves),
            "instances": leaves_n,
            "summary": codec.decode(SUMMARY_SCHEMA.encode(summary)),
            "supersedes": None,
            "reason": self._reason(reason_bytes),
            "time_ms": int(time.time() * 1000),
        }

    def _size(self, leaves_n: int, reason_bytes: int) -> int:
        body = self._body(leaves_n, reason_bytes)
        return len(sign(self.researchers[0], self.chain_id, REGISTER, body, Nonces()).encode())

    def _planned(self) -> tuple[int, int]:
        """As many leaves as fit under ``payload`` with a short reason, then the
        reason that brings the transaction to ``payload`` bytes."""
        if self._plan is None:
            one, two = self._size(1, 40), self._size(2, 40)
            leaves_n = max(1, (self.payload - one) // (two - one) + 1)
            while leaves_n > 1 and self._size(leaves_n, 40) > self.payload:
                leaves_n -= 1
            while self._size(leaves_n + 1, 40) <= self.payload:
                leaves_n += 1
            reason = max(1, min(MAX_REASON, self.payload - self._size(leaves_n, 1) + 1))
            while reason > 1 and self._size(leaves_n, reason) > self.payload:
                reason -= 1
            self._plan = (leaves_n, reason)
        return self._plan

    def sign(self, count: int) -> list[Tx]:
        leaves_n, reason_bytes = self._planned()
        txs = []
        for _ in range(count):
            k = self.counter % len(self.researchers)
            self.counter += 1
            body = self._body(leaves_n, reason_bytes)
            txs.append(sign(self.researchers[k], self.chain_id, REGISTER, body, self.nonces[k]))
        return txs


def setup(
    net: Network, tmp: Path, payload: int, kind: str = ACCESS, researchers: int = RESEARCHERS
) -> Workload:
    """Register the dataset the load reads, and enrol the researchers who read it.

    ``kind`` is the load's transactions: ``access.log`` of that dataset, or
    ``dataset.register`` of new datasets (:class:`RegisterWorkload`).
    """
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
    members = [SigningKey.generate() for _ in range(researchers)]
    last = None
    admin_nonces = [Nonces() for _ in admins]
    for i, key in enumerate(members):
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
    nonces_each = [Nonces() for _ in members]
    if kind == REGISTER:
        return RegisterWorkload(
            chain, members, payload, nonces_each, kind=REGISTER, summary=series.summary
        )
    return Workload(chain, members, payload, nonces_each)


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(
    net: Network,
    work: Workload,
    rate: float,
    duration: float,
    tmp: Path,
    *,
    batch_ms: float = 0.0,
    sample: Callable[[], None] | None = None,
    drain_s: float = 10.0,
    raw: list[dict[str, Any]] | None = None,
    senders: int = SENDERS,
) -> dict[str, Any]:
    """Offer ``rate`` tx/s for ``duration`` s through the load generator; the figures.

    ``sample`` is called about once a second while the load generator runs
    (``--overload`` samples RSS and mempools with it); the load generator's own
    output (per-transaction send, admission and commit times) is appended to
    ``raw`` if given. ``senders``: see ``bench.loadgen --senders`` (0: its default).
    """
    net.settle()
    count = max(1, int(rate * duration))
    txs = work.sign(count)
    txs_file = tmp / f"txs-{rate:.0f}.txt"
    txs_file.write_text("".join(f"{tx.hash.hex()} {tx.encode().hex()}\n" for tx in txs))
    out = tmp / f"load-{rate:.0f}.json"
    before = net.snapshot()
    rpcs = [arg for i in range(net.validators) for arg in ("--rpc", net.rpc(i))]
    command = [
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
        f"{drain_s:g}",
        "--batch-ms",
        str(batch_ms),
        "--senders",
        str(senders),
    ]
    loadgen = subprocess.Popen(command, cwd=ROOT)
    try:
        while True:
            try:
                exit_code = loadgen.wait(timeout=None if sample is None else 1.0)
                break
            except subprocess.TimeoutExpired:
                assert sample is not None
                sample()
    finally:
        if loadgen.poll() is None:
            loadgen.kill()
            loadgen.wait()
    if exit_code != 0:
        raise subprocess.CalledProcessError(exit_code, command)
    after = net.snapshot()
    result = json.loads(out.read_text())
    if raw is not None:
        raw.append(result)
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
        "build": build_kind(),
    }


def _row(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    cpu = "/".join(f"{c:.2f}" for c in r["cpu_ms_per_tx_per_node"])
    # medians over repeats are floats; a code whose (median) count is 0 is left out
    codes = {k: int(v) if float(v).is_integer() else v for k, v in r["refused"].items() if v}
    refused = f" refused {codes}" if codes else ""
    line = (
        f"  offered {r['offered_tx_s']:7.0f}  committed {r['committed_tx_s']:7.0f} tx/s  "
        f"p50 {lat['p50']:6.0f}  p90 {lat['p90']:6.0f}  p99 {lat['p99']:6.0f} ms  "
        f"{r['blocks_s']:5.1f} blocks/s x {r['avg_block_txs']:6.1f} txs  "
        f"views +{r['view_changes']:g}  cpu ms/tx/node {cpu}  "
        f"rss MB {max(r['peak_rss_mb']):.0f}{refused}"
    )
    if r.get("repeats", 1) > 1:
        low, high = r["min"], r["max"]
        line += (
            f"\n      median of {r['repeats']}: committed {low['committed_tx_s']:.0f}"
            f"-{high['committed_tx_s']:.0f} tx/s, p50 {low['latency_ms']['p50']:.0f}"
            f"-{high['latency_ms']['p50']:.0f}, p99 {low['latency_ms']['p99']:.0f}"
            f"-{high['latency_ms']['p99']:.0f} ms (min-max)"
        )
    return line


def _combine(values: Sequence[Any], pick: Callable[[list[float]], float]) -> Any:
    """One value from a figure's values over repeats: ``pick`` of numbers, recursively
    per key of dicts (a missing count is 0) and per item of equal-length lists."""
    first = values[0]
    if isinstance(first, dict):
        dicts = [value if isinstance(value, dict) else {} for value in values]
        keys = dict.fromkeys(key for value in dicts for key in value)
        return {key: _combine([value.get(key, 0) for value in dicts], pick) for key in keys}
    if isinstance(first, list):
        if all(isinstance(v, list) and len(v) == len(first) for v in values):
            return [_combine(list(column), pick) for column in zip(*values, strict=True)]
        return first
    if isinstance(first, bool) or not isinstance(first, int | float):
        return first
    numbers = [float(v) for v in values if not math.isnan(v)]  # NaN: no sample
    return pick(numbers) if numbers else float("nan")


def aggregate(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The median of each figure over repeated runs of one point, with ``min``,
    ``max`` and the ``runs`` themselves (one run: that run as it is)."""
    if len(runs) == 1:
        return {**runs[0], "repeats": 1}
    return {
        **_combine(runs, statistics.median),
        "repeats": len(runs),
        "min": _combine(runs, min),
        "max": _combine(runs, max),
        "runs": list(runs),
    }


@contextmanager
def fresh_network(
    tmp: Path,
    name: str,
    validators: int,
    payload: int,
    *,
    kind: str = ACCESS,
    tune: Tune | None = None,
    researchers: int = RESEARCHERS,
) -> Iterator[tuple[Network, Workload]]:
    """A new network, set up for the workload; every node is stopped on leaving."""
    net = Network(tmp / name, validators, _free_base(), tune=tune)
    try:
        net.start()
        yield net, setup(net, tmp / f"{name}-setup", payload, kind, researchers)
    finally:
        net.stop()


def keeps_up(row: dict[str, Any]) -> bool:
    """The sweep's test: at least 90% committed and a p50 latency of at most 2 s."""
    return bool(row["committed"] >= 0.9 * row["sent"] and row["latency_ms"]["p50"] <= 2000)


def run_points(
    *,
    validators: int,
    payload: int,
    rates: Sequence[float],
    duration: float,
    tmp: Path,
    sweep: bool = False,
    fractions: Sequence[float] = (),
    repeats: int = 1,
    batch_ms: float = 0.0,
    kind: str = ACCESS,
    label: str = "",
    researchers: int = RESEARCHERS,
    senders: int = SENDERS,
) -> dict[str, Any]:
    """Measure ``rates`` (a sweep stops at the first rate the network does not keep
    up with), then, if sweeping, ``fractions`` of the saturation on another fresh
    network; each ``repeats`` times, each repeat on fresh networks.

    Returns the aggregated ``rows`` (medians, min, max: :func:`aggregate`), the
    ``saturation_tx_s`` (the median of the repeats' best committed rates) and
    ``saturation_runs``.
    """
    by_rate: dict[float, list[dict[str, Any]]] = {}
    saturations = []
    prefix = f"{label}: " if label else ""
    for rep in range(repeats):
        run = f" [run {rep + 1}/{repeats}]" if repeats > 1 else ""
        with fresh_network(
            tmp, f"net{rep}", validators, payload, kind=kind, researchers=researchers
        ) as (net, work):
            best = 0.0
            for rate in rates:
                row = measure(net, work, rate, duration, tmp, batch_ms=batch_ms, senders=senders)
                by_rate.setdefault(rate, []).append(row)
                best = max(best, row["committed_tx_s"])
                print(f"{prefix}{_row(row)}{run}", flush=True)
                if sweep and not keeps_up(row):
                    break
        saturations.append(best)
    saturation = statistics.median(saturations)
    rows = [aggregate(by_rate[rate]) for rate in rates if rate in by_rate]
    if sweep and fractions:
        print(
            f"{prefix}saturation: {saturation:.0f} tx/s; on a fresh network, at fractions of it:",
            flush=True,
        )
        by_fraction: dict[float, list[dict[str, Any]]] = {}
        for rep in range(repeats):
            run = f" [run {rep + 1}/{repeats}]" if repeats > 1 else ""
            with fresh_network(
                tmp, f"fresh{rep}", validators, payload, kind=kind, researchers=researchers
            ) as (net, work):
                for fraction in fractions:
                    row = measure(
                        net,
                        work,
                        saturation * fraction,
                        duration,
                        tmp,
                        batch_ms=batch_ms,
                        senders=senders,
                    )
                    row["fraction_of_saturation"] = fraction
                    by_fraction.setdefault(fraction, []).append(row)
                    print(f"{prefix}{_row(row)}{run}", flush=True)
        rows.extend(aggregate(by_fraction[fraction]) for fraction in fractions)
    if repeats > 1:
        print(f"{prefix}medians over {repeats} runs:")
        for row in rows:
            print(f"{prefix}{_row(row)}")
    return {"rows": rows, "saturation_tx_s": saturation, "saturation_runs": saturations}


def raft_repeated(
    validators: int, payload: int, duration: float, tmp: Path, repeats: int
) -> dict[str, Any]:
    """:func:`raft` ``repeats`` times: the median ops/s, with min, max and the runs."""
    runs = []
    for rep in range(repeats):
        where = tmp / f"raft{rep}"
        where.mkdir(parents=True, exist_ok=True)
        runs.append(raft(validators, payload, duration, where))
    good = [run for run in runs if "ops_s" in run]
    if not good:
        return runs[0]
    if repeats == 1:
        return good[0]
    ops = [run["ops_s"] for run in good]
    return {
        "ops_s": statistics.median(ops),
        "committed": statistics.median(run["committed"] for run in good),
        "min_ops_s": min(ops),
        "max_ops_s": max(ops),
        "runs": runs,
    }


def _thirds(timeline: Sequence[dict[str, Any]], span: float) -> tuple[list[Any], list[Any]]:
    middle = [s for s in timeline if span / 3 <= s["t"] < 2 * span / 3]
    last = [s for s in timeline if 2 * span / 3 <= s["t"] <= span]
    return middle, last


#: RSS "plateaus" if the max over the last third is at most this much above the
#: max over the middle third (ratio, plus an allowance in MiB for small nodes).
PLATEAU_RATIO: Final = 1.05
PLATEAU_SLACK_MB: Final = 2.0


def overload(
    *,
    validators: int,
    rate: float,
    duration: float,
    payload: int,
    tmp: Path,
    batch_ms: float = 0.0,
    kind: str = ACCESS,
    researchers: int = RESEARCHERS,
    senders: int = OVERLOAD_SENDERS,
) -> dict[str, Any]:
    """Offer ``rate`` tx/s (well above saturation) for ``duration`` s to a fresh
    network and sample every node's RSS and mempool each second."""
    samples: list[dict[str, Any]] = []
    raw: list[dict[str, Any]] = []
    with fresh_network(
        tmp, "overload", validators, payload, kind=kind, researchers=researchers
    ) as (net, work):
        limits = [
            load_config(net.node_home(i) / CONFIG_FILE_NAME).mempool for i in range(validators)
        ]
        quick = [RpcClient(net.rpc(i), timeout_s=1.0) for i in range(validators)]
        pool = ThreadPoolExecutor(max_workers=validators)  # the nodes are asked at once

        def status(client: RpcClient) -> dict[str, Any] | None:
            try:
                answer: dict[str, Any] = client.status()
            except Exception:  # a node too busy to answer within 1 s
                return None
            return answer

        def sample() -> None:
            at = time.monotonic()
            rss = [round(rss_mb(p.pid), 1) for p in net.processes]
            statuses = list(pool.map(status, quick))
            samples.append(
                {
                    "at": at,
                    "rss_mb": rss,
                    "mempool_txs": [None if s is None else int(s["mempool_txs"]) for s in statuses],
                    "height": None if statuses[0] is None else int(statuses[0]["height"]),
                }
            )

        try:
            row = measure(
                net,
                work,
                rate,
                duration,
                tmp,
                batch_ms=batch_ms,
                sample=sample,
                raw=raw,
                senders=senders,
            )
        finally:
            pool.shutdown()
    load = raw[0]
    # The overload lasts while submissions are answered: with ordered senders the
    # transactions the nodes could not take yet wait in the generator and keep coming
    # after the offered period, until the last is answered.
    start = load["start"]
    span = max((r["answered"] - start for r in load["records"] if "answered" in r), default=0.0)
    span = max(span, load["offered_s"])
    per_second: dict[int, dict[str, int]] = {}
    for record in load["records"]:
        if "answered" not in record:
            continue
        bucket = per_second.setdefault(int(record["answered"] - start), {})
        outcome = "admitted" if record.get("status") == 202 else "refused"
        bucket[outcome] = bucket.get(outcome, 0) + 1
    for block in load["blocks"]:
        if block["at"] >= start:
            bucket = per_second.setdefault(int(block["at"] - start), {})
            bucket["committed"] = bucket.get("committed", 0) + block["txs"]
    timeline = []
    for s in samples:
        t = s["at"] - start
        counts = per_second.get(int(t) - 1, {}) if t >= 1 else {}  # the second just ended
        timeline.append(
            {
                "t": round(t, 2),
                "rss_mb": s["rss_mb"],
                "mempool_txs": s["mempool_txs"],
                "height": s["height"],
                "admitted_per_s": counts.get("admitted", 0),
                "refused_per_s": counts.get("refused", 0),
                "committed_per_s": counts.get("committed", 0),
            }
        )
    middle, last = _thirds(timeline, span)
    nodes = range(validators)
    middle_max = [max((s["rss_mb"][i] for s in middle), default=0.0) for i in nodes]
    last_max = [max((s["rss_mb"][i] for s in last), default=0.0) for i in nodes]
    plateau = bool(middle) and all(
        b <= a * PLATEAU_RATIO + PLATEAU_SLACK_MB for a, b in zip(middle_max, last_max, strict=True)
    )
    seen = [
        [s["mempool_txs"][i] for s in timeline if s["mempool_txs"][i] is not None] for i in nodes
    ]
    return {
        "machine": machine(),
        "validators": validators,
        "kind": kind,
        "payload": payload,
        "offered_tx_s": rate,
        "duration_s": duration,
        "signers": researchers,
        "senders_per_node": senders,
        "batch_ms": batch_ms,
        "offered_s": load["offered_s"],
        "overload_s": span,
        "answered_tx_s": row["sent"] / max(span, 1e-9),
        "row": row,
        "rss_mb": {
            "middle_third_max": middle_max,
            "last_third_max": last_max,
            "last_over_middle": [
                b / a if a else float("nan") for a, b in zip(middle_max, last_max, strict=True)
            ],
            "start": timeline[0]["rss_mb"] if timeline else [],
            "end_of_load": last[-1]["rss_mb"] if last else [],
        },
        "rss_plateaus": plateau,
        "plateau_rule": (
            f"last-third max <= {PLATEAU_RATIO} x middle-third max + {PLATEAU_SLACK_MB} MB"
        ),
        "mempool": {
            "limit_txs": [m.max_txs for m in limits],
            "limit_bytes": [m.max_bytes for m in limits],
            "max_txs": [max(values, default=0) for values in seen],
            "limit_held": all(
                max(values, default=0) <= m.max_txs for values, m in zip(seen, limits, strict=True)
            ),
        },
        "refused": row["refused"],
        "timeline": timeline,
    }


def _print_overload(result: dict[str, Any]) -> None:
    print(_row(result["row"]))
    print(
        f"offered for {result['offered_s']:.0f} s; overloaded until the last submission was "
        f"answered, {result['overload_s']:.0f} s ({result['answered_tx_s']:.0f} answers/s)"
    )
    print(
        f"  {'t s':>7}   {'rss MB per node':26s} {'mempool txs per node':29s} "
        "admitted/s refused/s committed/s"
    )
    timeline = result["timeline"]
    step = max(1, len(timeline) // 12)
    for s in timeline[::step]:
        rss = "/".join(f"{v:.0f}" for v in s["rss_mb"])
        pool = "/".join("?" if v is None else str(v) for v in s["mempool_txs"])
        print(
            f"  {s['t']:7.1f}   {rss:26s} {pool:29s} {s['admitted_per_s']:10d} "
            f"{s['refused_per_s']:9d} {s['committed_per_s']:11d}"
        )
    r = result["rss_mb"]
    print(
        f"RSS max, middle third {r['middle_third_max']} MB, last third {r['last_third_max']} MB: "
        f"{'plateaus' if result['rss_plateaus'] else 'still growing'} "
        f"({result['plateau_rule']})"
    )
    m = result["mempool"]
    print(
        f"mempool max {m['max_txs']} txs (limit {m['limit_txs']}): "
        f"{'held' if m['limit_held'] else 'EXCEEDED'}; refused {result['refused']}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument(
        "--duration", type=float, default=None, help="seconds per point (10; --overload 120)"
    )
    parser.add_argument("--rate", type=float, action="append", default=None)
    parser.add_argument("--sweep", action="store_true")
    parser.add_argument("--payload", type=int, default=400)
    parser.add_argument(
        "--kind",
        choices=KINDS,
        default=ACCESS,
        help="the load's transactions (dataset.register: one new dataset each)",
    )
    parser.add_argument("--no-raft", action="store_true")
    parser.add_argument(
        "--batch-ms",
        type=float,
        default=0.0,
        help="Send each node the transactions due every N ms in one /v1/txs/batch request "
        "(bulk import) instead of one request per transaction (default).",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=1,
        help="measure every point K times, each on a fresh network; report medians (min, max)",
    )
    parser.add_argument(
        "--overload",
        action="store_true",
        help="offer --rate (default 2500) tx/s for --duration (default 120) s and sample "
        "every node's RSS and mempool each second (bench/results/overload.json)",
    )
    parser.add_argument(
        "--build",
        choices=BUILDS,
        default="native",
        help="run the nodes compiled with mypyc (native, as a site installs them for speed; "
        "built in .native/ from the working tree) or interpreted",
    )
    parser.add_argument("--researchers", type=int, default=RESEARCHERS, help="signers of the load")
    parser.add_argument(
        "--senders",
        type=int,
        default=None,
        help="sender tasks per node, each node's transactions in order (see bench.loadgen; "
        f"default {SENDERS}, --overload {OVERLOAD_SENDERS}; 0: unordered)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    use_build(args.build)
    print(f"machine: {machine()}")
    if args.overload:
        rate = args.rate[0] if args.rate else 2500.0
        out = args.out or RESULTS / "overload.json"
        with tempfile.TemporaryDirectory(prefix="radledger-overload-") as tmp_name:
            result = overload(
                validators=args.validators,
                rate=rate,
                duration=120.0 if args.duration is None else args.duration,
                payload=args.payload,
                tmp=Path(tmp_name),
                batch_ms=args.batch_ms,
                kind=args.kind,
                researchers=args.researchers,
                senders=OVERLOAD_SENDERS if args.senders is None else args.senders,
            )
        _print_overload(result)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out}")
        return
    duration = 10.0 if args.duration is None else args.duration
    out = args.out or RESULTS / "throughput.json"
    with tempfile.TemporaryDirectory(prefix="radledger-throughput-") as tmp_name:
        tmp = Path(tmp_name)
        series = run_points(
            validators=args.validators,
            payload=args.payload,
            rates=SWEEP_RATES if args.sweep else (args.rate or [250.0, 500.0]),
            duration=duration,
            tmp=tmp,
            sweep=args.sweep,
            fractions=(0.25, 0.5, 0.9) if args.sweep else (),
            repeats=args.repeats,
            batch_ms=args.batch_ms,
            kind=args.kind,
            researchers=args.researchers,
            senders=SENDERS if args.senders is None else args.senders,
        )
        peer = (
            None
            if args.no_raft
            else raft_repeated(args.validators, args.payload, duration, tmp, args.repeats)
        )
    saturation = series["saturation_tx_s"]
    result = {
        "machine": machine(),
        "validators": args.validators,
        "kind": args.kind,
        "payload": args.payload,
        "repeats": args.repeats,
        "rows": series["rows"],
        "saturation_tx_s": saturation,
        "saturation_runs": series["saturation_runs"],
        "raft": peer,
    }
    if peer is not None and "ops_s" in peer:
        ratio = saturation / peer["ops_s"]
        result["ratio_radledger_over_raft"] = ratio
        print(
            f"pysyncobj (Raft, {args.validators} nodes, no signatures, no fsync): "
            f"{peer['ops_s']:.0f} ops/s; radledger/pysyncobj = {ratio:.3f}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
