"""Scaling of a real radledger network: validators (f=1, f=2) and payload size.

Run: ``python -m bench.scaling`` (part of ``make bench``; ``make bench-scaling``).
Prints a table and writes ``bench/results/scaling.json``.

Each point is a sweep of ``bench.throughput`` (the same ``Network``, ``setup``
and ``measure``: separate node processes on 127.0.0.1, durable LevelDB,
signatures on, an open-loop load generator in its own process): the offered
rate rises until the network stops keeping up, the best committed rate is the
saturation, and the commit latency p50/p99 is then measured at 50% of it on a
fresh network. Points:

* ``--validators 4 7`` (n = 3f+1 with f = 1 and f = 2) with 400-byte
  ``access.log`` transactions (``--base-payload``);
* ``--payloads 200 1024 8192`` with 4 validators. A payload up to 640 bytes is
  an ``access.log`` whose reason (researcher's words) fills it; the smallest
  such transaction is about 250 bytes (the signed envelope and the body's fixed
  fields), so "200" gives that. An access reason is at most 512 bytes
  (registry/kinds.py), so larger payloads are ``dataset.register`` transactions
  of a new one-series dataset each, their instance leaves (UID and three
  SHA-256 digests) making up the size (``bench.throughput.RegisterWorkload``);
  8 KiB is far below the node's 32 KiB ``max_tx_bytes``.

The offered rates start lower for larger transactions (``--ladder`` overrides
them). ``--repeats K`` measures each point K times on fresh networks and
reports medians. All processes share this machine's cores: compare ratios
within one run, never absolute figures across machines.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.throughput import (
    ACCESS,
    BUILDS,
    REGISTER,
    RESULTS,
    SWEEP_RATES,
    machine,
    run_points,
    use_build,
)

#: Payloads up to this many bytes are access logs; above, dataset registrations.
MAX_ACCESS_PAYLOAD: Final = 640
BASE_PAYLOAD: Final = 400


def kind_for(payload: int) -> str:
    return ACCESS if payload <= MAX_ACCESS_PAYLOAD else REGISTER


def ladder(payload: int, kind: str) -> list[float]:
    """Offered rates for a sweep: the throughput sweep's, scaled down for big registrations."""
    scale = 1.0 if kind == ACCESS else min(1.0, BASE_PAYLOAD / payload)
    return [max(5.0, round(rate * scale)) for rate in SWEEP_RATES]


def _label(validators: int, payload: int, kind: str) -> str:
    size = f"{payload // 1024} KiB" if payload % 1024 == 0 else f"{payload} B"
    return f"{validators} validators (f={(validators - 1) // 3}), {size} {kind}"


def measure_point(
    *,
    validators: int,
    payload: int,
    duration: float,
    repeats: int,
    tmp: Path,
    rates: Sequence[float] | None = None,
) -> dict[str, Any]:
    kind = kind_for(payload)
    label = _label(validators, payload, kind)
    print(f"== {label}", flush=True)
    series = run_points(
        validators=validators,
        payload=payload,
        rates=list(rates) if rates else ladder(payload, kind),
        duration=duration,
        tmp=tmp,
        sweep=True,
        fractions=(0.5,),
        repeats=repeats,
        kind=kind,
        label=label,
    )
    rows = series["rows"]
    half = rows[-1]
    sweep_rows = rows[:-1]
    best = max(sweep_rows, key=lambda r: float(r["committed_tx_s"]))
    return {
        "name": label,
        "validators": validators,
        "f": (validators - 1) // 3,
        "payload": payload,
        "kind": kind,
        "tx_bytes": half["tx_bytes"],
        "saturation_tx_s": series["saturation_tx_s"],
        "saturation_runs": series["saturation_runs"],
        "at_saturation": {
            "cpu_ms_per_tx_per_node": best["cpu_ms_per_tx_per_node"],
            "avg_block_txs": best["avg_block_txs"],
            "view_changes": best["view_changes"],
        },
        "at_half": {
            "offered_tx_s": half["offered_tx_s"],
            "committed_tx_s": half["committed_tx_s"],
            "latency_ms": half["latency_ms"],
            "blocks_s": half["blocks_s"],
            "avg_block_txs": half["avg_block_txs"],
            "min": half.get("min"),
            "max": half.get("max"),
        },
        "rows": rows,
    }


def table(points: Sequence[dict[str, Any]]) -> list[str]:
    lines = [
        "| point | tx bytes | saturation tx/s | p50 ms at 50% | p99 ms at 50% "
        "| CPU ms/tx/node at saturation |",
        "|---|---|---|---|---|---|",
    ]
    for p in points:
        lat = p["at_half"]["latency_ms"]
        cpu = p["at_saturation"]["cpu_ms_per_tx_per_node"]
        lines.append(
            f"| {p['name']} | {p['tx_bytes']:.0f} | {p['saturation_tx_s']:.0f} "
            f"| {lat['p50']:.0f} | {lat['p99']:.0f} | {sum(cpu) / len(cpu):.2f} |"
        )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--validators",
        type=int,
        nargs="*",
        default=[4, 7],
        help="validator counts measured with --base-payload (default: 4 7)",
    )
    parser.add_argument("--base-payload", type=int, default=BASE_PAYLOAD)
    parser.add_argument(
        "--payloads",
        type=int,
        nargs="*",
        default=[200, 1024, 8192],
        help="payload sizes (bytes) measured with 4 validators (default: 200 1024 8192)",
    )
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per offered rate")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument(
        "--ladder", type=float, nargs="+", default=None, help="offered rates for every sweep"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "scaling.json")
    parser.add_argument(
        "--build",
        choices=BUILDS,
        default="native",
        help="run the nodes compiled with mypyc (native, the default, as bench.throughput) "
        "or interpreted",
    )
    args = parser.parse_args(argv)
    use_build(args.build)
    points_wanted = [(n, args.base_payload) for n in args.validators]
    points_wanted += [(4, b) for b in args.payloads if (4, b) not in points_wanted]
    if not points_wanted:
        parser.error("nothing to measure: give --validators or --payloads")
    print(f"machine: {machine()}")
    points = []
    with tempfile.TemporaryDirectory(prefix="radledger-scaling-") as tmp_name:
        for k, (validators, payload) in enumerate(points_wanted):
            where = Path(tmp_name) / f"point{k}"
            where.mkdir()
            points.append(
                measure_point(
                    validators=validators,
                    payload=payload,
                    duration=args.duration,
                    repeats=args.repeats,
                    tmp=where,
                    rates=args.ladder,
                )
            )
    print(f"machine: {machine()}")
    for line in table(points):
        print(line)
    base = next(
        (p for p in points if (p["validators"], p["payload"]) == (4, args.base_payload)),
        points[0],
    )
    for p in points:
        if p is not base and base["saturation_tx_s"]:
            ratio = p["saturation_tx_s"] / base["saturation_tx_s"]
            p["saturation_over_base"] = ratio
            print(f"saturation of {p['name']}: {ratio:.2f} x that of {base['name']}")
    result = {
        "machine": machine(),
        "duration_s": args.duration,
        "repeats": args.repeats,
        "base": base["name"],
        "points": points,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
