"""RPC read throughput: ``GET /v1/txs/{hash}`` against one node.

Run: ``python -m bench.rpc_read`` (part of ``make bench``; ``make bench-rpc``).
Prints a table and writes ``bench/results/rpc_read.json``.

1. Start a network of ``--validators`` node processes and commit ``--txs``
   pre-signed ``access.log`` transactions through it (``bench.throughput``'s
   ``fresh_network`` and ``measure``, sent in bulk, ``/v1/txs/batch`` every
   20 ms, so loading is quick); keep the hashes that node0's event stream
   reported committed.
2. For each ``--concurrency`` C, a reader process (``bench.rpc_reader``)
   keeps C requests in flight over C keep-alive connections to node
   ``--node`` for ``--duration`` seconds, each a random committed hash (the
   node answers from LevelDB: the tx index, then the transaction, as JSON).

Reported per concurrency: requests/s, latency p50/p90/p99, errors, the
serving node's CPU (share of one core, and CPU ms per request), the reader's
own CPU and the other nodes' (the network keeps making an empty block a
second). Client and node share this machine's cores, so at high concurrency
the reader can be what limits: read the CPU columns. Compare ratios within
one run; this machine is shared.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.throughput import BUILDS, RESULTS, ROOT, fresh_network, machine, measure, use_build
from node.client import RpcClient


def committed_hashes(raw: dict[str, Any]) -> list[str]:
    return [str(r["hash"]) for r in raw["records"] if "committed" in r]


def read_point(
    url: str,
    hashes_file: Path,
    pids: Sequence[int],
    *,
    concurrency: int,
    duration: float,
    tmp: Path,
) -> dict[str, Any]:
    out = tmp / f"read-{concurrency}.json"
    command = [
        sys.executable,
        "-m",
        "bench.rpc_reader",
        "--url",
        url,
        "--hashes",
        str(hashes_file),
        "--concurrency",
        str(concurrency),
        "--duration",
        str(duration),
        "--out",
        str(out),
    ]
    for pid in pids:
        command += ["--pid", str(pid)]
    subprocess.run(command, check=True, cwd=ROOT, timeout=duration + 120)
    result: dict[str, Any] = json.loads(out.read_text())
    seconds = result["seconds"]
    served, *others = result["pids_cpu_s"]
    result["node_cpu_share"] = served / seconds
    result["node_cpu_ms_per_request"] = served * 1000 / max(1, result["requests"])
    result["reader_cpu_share"] = result["reader_cpu_s"] / seconds
    result["other_nodes_cpu_share"] = [c / seconds for c in others]
    return result


def _row(r: dict[str, Any]) -> str:
    lat = r["latency_ms"]
    errors = f"  errors {r['errors']}" if r["errors"] else ""
    others = "/".join(f"{c:.0%}" for c in r["other_nodes_cpu_share"])
    return (
        f"  concurrency {r['concurrency']:4d}  {r['requests_s']:7.0f} req/s  "
        f"p50 {lat['p50']:6.2f}  p90 {lat['p90']:6.2f}  p99 {lat['p99']:6.2f} ms  "
        f"node CPU {r['node_cpu_share']:4.0%} ({r['node_cpu_ms_per_request']:.3f} ms/req)  "
        f"reader CPU {r['reader_cpu_share']:4.0%}  other nodes {others}{errors}"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", type=int, default=5000, help="committed transactions to read")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument("--payload", type=int, default=400)
    parser.add_argument("--node", type=int, default=0, help="the node read from")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 8, 32], help="requests in flight"
    )
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per concurrency")
    parser.add_argument("--load-rate", type=float, default=1000.0, help="tx/s while loading")
    parser.add_argument("--out", type=Path, default=RESULTS / "rpc_read.json")
    parser.add_argument(
        "--build",
        choices=BUILDS,
        default="native",
        help="run the nodes compiled with mypyc (native, the default, as bench.throughput) "
        "or interpreted",
    )
    args = parser.parse_args(argv)
    use_build(args.build)
    print(f"machine: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="radledger-rpc-read-") as tmp_name:
        tmp = Path(tmp_name)
        with fresh_network(tmp, "net", args.validators, args.payload) as (net, work):
            raw: list[dict[str, Any]] = []
            load = measure(
                net, work, args.load_rate, args.txs / args.load_rate, tmp, batch_ms=20, raw=raw
            )
            hashes = committed_hashes(raw[0])
            if not hashes:
                raise SystemExit("no transaction committed while loading")
            answer = RpcClient(net.rpc(args.node)).get(f"/v1/txs/{hashes[-1]}")
            if answer["status"] != "committed":
                raise SystemExit(f"node{args.node} does not have {hashes[-1]} committed yet")
            height = RpcClient(net.rpc(args.node)).status()["height"]
            print(
                f"loaded {len(hashes)} committed txs ({load['tx_bytes']:.0f} bytes each) "
                f"in {height} blocks; reading from node{args.node}",
                flush=True,
            )
            hashes_file = tmp / "hashes.txt"
            hashes_file.write_text("\n".join(hashes) + "\n")
            served = net.processes[args.node].pid
            pids = [served] + [p.pid for i, p in enumerate(net.processes) if i != args.node]
            for concurrency in args.concurrency:
                row = read_point(
                    net.rpc(args.node),
                    hashes_file,
                    pids,
                    concurrency=concurrency,
                    duration=args.duration,
                    tmp=tmp,
                )
                rows.append(row)
                print(_row(row), flush=True)
    print(f"machine: {machine()}")
    result = {
        "machine": machine(),
        "validators": args.validators,
        "node": args.node,
        "committed_txs": len(hashes),
        "height": height,
        "tx_bytes": load["tx_bytes"],
        "duration_s": args.duration,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
