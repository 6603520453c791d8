"""LevelDB store speed: block commits on the real (fsynced) path, and the common reads.

Run: ``.venv/bin/python -m bench.storage_bench`` (or ``make bench``). Prints a table and
writes ``bench/results/storage.json``. Everything runs in a temporary directory (on the same
filesystem as the system temp dir, which decides what an fsync costs).

What is timed:

* ``commit_block`` of blocks of 100 and 1000 signed transactions of about 400 bytes each,
  each transaction with one state write, through ``write_batch(transaction=True,
  sync=True)``. Building and signing the blocks is done beforehand and not timed; the
  commit's own checks (limits, state root, duplicate-transaction lookups) are. Median,
  min and max over the repetitions after one untimed warm-up block;
* reads on the 1000-transaction store: a block by height (reassembled from its header, body
  and transaction records), a transaction by hash, a state value by key, each at random;
  the median over several repetitions of a timed loop;
* ``check_consistency`` of the whole 1000-transaction store, once.

Compare numbers within one run and on one machine; absolute times depend on the disk.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import plyvel

from ledger.keys import SigningKey
from ledger.types import Block, CommitCertificate, Tx, Vote, VoteKind, sha256
from storage import LevelDBStore, open_store

CHAIN: Final = "radledger-bench"
GENESIS: Final = sha256(b"radledger storage bench: genesis")
VALIDATORS: Final = tuple(SigningKey(sha256(b"bench validator %d" % i)) for i in range(4))
CLIENT: Final = SigningKey(sha256(b"bench client"))
RESULTS: Final = Path(__file__).resolve().parent / "results"
#: (transactions per block, timed repetitions)
BLOCK_SIZES: Final = ((100, 40), (1000, 15))
READ_REPEATS: Final = 7
READS_PER_REPEAT: Final = 500
BLOCK_READS_PER_REPEAT: Final = 5
SEED: Final = 20260101


def make_tx(nonce: int) -> Tx:
    """A dataset registration of about 400 bytes encoded."""
    body = {
        "dataset": f"ds-2026-{nonce:06d}",
        "site": f"site-{nonce % 12:02d}",
        "manifest_root": sha256(b"manifest %d" % nonce),
        "modality": "CT",
        "series": 412,
        "summary": "de-identified chest CT series, 1.25 mm slices, contrast",
        "consent": sha256(b"consent %d" % nonce),
        "time": 1_767_225_600_000 + nonce,
    }
    return Tx.create(CLIENT, chain_id=CHAIN, kind="dataset.register", nonce=nonce, body=body)


def make_commit(
    store: LevelDBStore, txs: Sequence[Tx]
) -> tuple[Block, CommitCertificate, dict[bytes, bytes | None]]:
    writes: dict[bytes, bytes | None] = {b"dataset/" + tx.hash: sha256(tx.hash) * 3 for tx in txs}
    height = store.latest_height() + 1
    block = Block.build(
        chain_id=CHAIN,
        height=height,
        view=0,
        prev_hash=store.block_hash(height - 1) or GENESIS,
        time_ms=1_767_225_600_000 + height,
        proposer=VALIDATORS[height % 4].public_key,
        state_root=store.prospective_root(writes),
        txs=txs,
    )
    votes = [
        Vote.create(
            key, chain_id=CHAIN, kind=VoteKind.COMMIT, height=height, view=0, block_hash=block.hash
        )
        for key in VALIDATORS[:3]
    ]
    return block, CommitCertificate.from_votes(votes), writes


def median_us(fn: Callable[[], object], number: int) -> float:
    runs = []
    for _ in range(READ_REPEATS):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        runs.append((time.perf_counter() - start) / number * 1e6)
    return statistics.median(runs)


def bench_commits(
    directory: Path, block_txs: int, repeats: int, nonce: int
) -> tuple[dict[str, Any], LevelDBStore, list[Tx], int]:
    store = open_store(directory, chain_id=CHAIN, genesis_hash=GENESIS, create=True)
    all_txs: list[Tx] = []
    times_ms: list[float] = []
    block_bytes = 0
    for round_ in range(repeats + 1):  # round 0 warms up and is not counted
        txs = [make_tx(nonce + i) for i in range(block_txs)]
        nonce += block_txs
        block, cert, writes = make_commit(store, txs)
        start = time.perf_counter()
        store.commit_block(block, cert, writes)
        elapsed_ms = (time.perf_counter() - start) * 1e3
        all_txs.extend(txs)
        block_bytes = len(block.encode())
        if round_:
            times_ms.append(elapsed_ms)
    median_ms = statistics.median(times_ms)
    row = {
        "txs_per_block": block_txs,
        "tx_bytes_avg": sum(len(tx.encode()) for tx in all_txs) / len(all_txs),
        "block_bytes": block_bytes,
        "repetitions": repeats,
        "commit_ms_median": median_ms,
        "commit_ms_min": min(times_ms),
        "commit_ms_max": max(times_ms),
        "txs_per_s": block_txs / (median_ms / 1e3),
    }
    return row, store, all_txs, nonce


def bench_reads(store: LevelDBStore, txs: Sequence[Tx]) -> dict[str, float]:
    rng = random.Random(SEED)
    latest = store.latest_height()
    keys = [b"dataset/" + tx.hash for tx in txs]
    return {
        "block by height (1000 txs)": median_us(
            lambda: store.block(rng.randint(1, latest)), BLOCK_READS_PER_REPEAT
        ),
        "header by height": median_us(
            lambda: store.header(rng.randint(1, latest)), READS_PER_REPEAT
        ),
        "tx by hash": median_us(lambda: store.tx(rng.choice(txs).hash), READS_PER_REPEAT),
        "tx location by hash": median_us(
            lambda: store.tx_location(rng.choice(txs).hash), READS_PER_REPEAT
        ),
        "state get": median_us(lambda: store.get(rng.choice(keys)), READS_PER_REPEAT),
    }


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "leveldb": plyvel.__leveldb_version__,
        "plyvel": plyvel.__version__,
        "temp_dir": tempfile.gettempdir(),
    }


def run() -> dict[str, Any]:
    commits: list[dict[str, Any]] = []
    reads: dict[str, float] = {}
    audit_ms = 0.0
    audited_height = 0
    nonce = 1
    with tempfile.TemporaryDirectory(prefix="radledger-bench-") as tmp:
        for block_txs, repeats in BLOCK_SIZES:
            row, store, txs, nonce = bench_commits(
                Path(tmp) / f"blocks-of-{block_txs}", block_txs, repeats, nonce
            )
            with store:
                commits.append(row)
                if block_txs == max(size for size, _ in BLOCK_SIZES):
                    reads = bench_reads(store, txs)
                    start = time.perf_counter()
                    audited_height = store.check_consistency()
                    audit_ms = (time.perf_counter() - start) * 1e3
    return {
        "machine": machine(),
        "commit_sync": commits,
        "read_median_us": reads,
        "check_consistency": {"height": audited_height, "ms": audit_ms},
    }


def main() -> None:
    started = time.perf_counter()
    result = run()
    print(f"machine: {result['machine']}")
    print("commit_block, sync=True (median of repetitions, after one warm-up block):")
    for row in result["commit_sync"]:
        print(
            f"  {row['txs_per_block']:>5} txs/block ({row['tx_bytes_avg']:.0f} B/tx, "
            f"{row['block_bytes'] / 1024:.0f} KiB/block, n={row['repetitions']}): "
            f"median {row['commit_ms_median']:8.2f} ms  (min {row['commit_ms_min']:.2f}, "
            f"max {row['commit_ms_max']:.2f})  {row['txs_per_s']:>9.0f} txs/s"
        )
    print(f"reads (median of {READ_REPEATS} repetitions):")
    for name, value in result["read_median_us"].items():
        print(f"  {name:<28} {value:>10.1f} us")
    audit = result["check_consistency"]
    print(f"check_consistency of {audit['height']} blocks: {audit['ms']:.1f} ms")
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "storage.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out} in {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
