"""Encode/decode speed of the canonical codec, beside cbor2 and signature costs.

Run: ``.venv/bin/python -m bench.codec_bench`` (or ``make bench``). Prints a
table and writes ``bench/results/codec.json``. Each figure is the median of
several repetitions of a timed loop; compare ratios within one run, never
absolute times across machines.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import timeit
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cbor2

from ledger import codec
from ledger.keys import SigningKey
from ledger.types import TX_SCHEMA, Block, BlockHeader, Tx, Vote, VoteKind

REPEATS = 7
CHAIN = "radledger-bench"
RESULTS = Path(__file__).resolve().parent / "results"


def median_us(fn: Callable[[], object], number: int) -> float:
    runs = timeit.repeat(fn, number=number, repeat=REPEATS)
    return statistics.median(runs) / number * 1e6


def sample_tx(key: SigningKey, nonce: int) -> Tx:
    """An access-log transaction of realistic size (~360 bytes encoded)."""
    body = {
        "dataset": "ds-2026-000142",
        "accessor": key.public_key,
        "purpose": "retrospective study of pulmonary nodules",
        "reason": "IRB-2026-114 approved analysis",
        "consent": bytes(range(32)),
        "time": 1_767_225_600_000 + nonce,
    }
    return Tx.create(key, chain_id=CHAIN, kind="access.log", nonce=nonce, body=body)


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
    }


def run() -> dict[str, Any]:
    key = SigningKey(b"\x07" * 32)
    tx = sample_tx(key, 1)
    tx_bytes = tx.encode()
    tx_value = codec.decode(tx_bytes)
    vote = Vote.create(
        key, chain_id=CHAIN, kind=VoteKind.COMMIT, height=9, view=0, block_hash=b"\x01" * 32
    )
    vote_bytes = vote.encode()
    block = Block.build(
        chain_id=CHAIN,
        height=2,
        view=0,
        prev_hash=bytes(32),
        time_ms=1_767_225_600_000,
        proposer=key.public_key,
        state_root=bytes(32),
        txs=[sample_tx(key, n) for n in range(1000)],
    )
    block_bytes = block.encode()
    header_bytes = block.header.encode()

    rows: dict[str, float] = {
        # The schema encoder itself: Tx.encode() would answer from its cache.
        "tx encode (radledger schema)": median_us(lambda: TX_SCHEMA.encode(tx), 20_000),
        "tx encode (radledger generic)": median_us(lambda: codec.encode(tx_value), 5_000),
        "tx encode (cbor2 canonical)": median_us(
            lambda: cbor2.dumps(tx_value, canonical=True), 5_000
        ),
        "tx decode+validate (radledger)": median_us(lambda: Tx.decode(tx_bytes), 5_000),
        "tx decode, generic (radledger)": median_us(lambda: codec.decode(tx_bytes), 5_000),
        "tx decode, no checks (cbor2)": median_us(lambda: cbor2.loads(tx_bytes), 5_000),
        "tx sign (ed25519)": median_us(lambda: sample_tx(key, 2), 2_000),
        "tx verify signature (ed25519)": median_us(tx.verify_signature, 2_000),
        "vote encode": median_us(vote.encode, 20_000),
        "vote decode+validate": median_us(lambda: Vote.decode(vote_bytes), 10_000),
        "header decode+validate": median_us(lambda: BlockHeader.decode(header_bytes), 10_000),
        "block of 1000 txs encode": median_us(block.encode, 10),
        "block of 1000 txs decode+validate": median_us(lambda: Block.decode(block_bytes), 5),
    }
    result = {
        "machine": machine(),
        "tx_bytes": len(tx_bytes),
        "block_bytes": len(block_bytes),
        "median_us": rows,
        "ratios": {
            "cbor2 canonical encode / radledger schema encode": rows["tx encode (cbor2 canonical)"]
            / rows["tx encode (radledger schema)"],
            "tx verify / tx decode+validate": rows["tx verify signature (ed25519)"]
            / rows["tx decode+validate (radledger)"],
        },
    }
    return result


def main() -> None:
    result = run()
    print(f"machine: {result['machine']}")
    print(f"tx: {result['tx_bytes']} bytes; block of 1000 txs: {result['block_bytes']} bytes")
    for name, value in result["median_us"].items():
        print(f"  {name:<40} {value:>12.2f} us")
    for name, value in result["ratios"].items():
        print(f"  ratio {name:<50} {value:>6.2f}x")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "codec.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"written {RESULTS / 'codec.json'}", file=sys.stderr)


if __name__ == "__main__":
    main()
