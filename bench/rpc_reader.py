"""Closed-loop reader for bench.rpc_read (run as its own process).

``--concurrency`` workers share one keep-alive HTTP session (one connection
each) and loop: pick a random committed transaction hash, ``GET
/v1/txs/{hash}``, read the whole answer, record the latency. Connections are
opened before the timed window. Writes a JSON summary: requests, errors by
status, requests/s, latency p50/p90/p99, this process's own CPU seconds (it
shares the machine with the node) and, over the same window, the CPU seconds
of the processes named by ``--pid`` (the nodes).

Usage: python -m bench.rpc_reader --url URL --hashes FILE --concurrency C
       --duration S --out FILE
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.throughput import cpu_seconds, percentile


async def _worker(
    session: aiohttp.ClientSession,
    base: str,
    hashes: list[str],
    *,
    rng: random.Random,
    until: float,
    latencies: list[float],
    errors: dict[str, int],
) -> None:
    while time.monotonic() < until:
        url = f"{base}/v1/txs/{rng.choice(hashes)}"
        started = time.perf_counter()
        try:
            async with session.get(url) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            continue
        if status == 200:
            latencies.append((time.perf_counter() - started) * 1000)
        else:
            errors[str(status)] = errors.get(str(status), 0) + 1


async def run(
    url: str,
    hashes: list[str],
    concurrency: int,
    duration: float,
    *,
    seed: int = 8,
    pids: Sequence[int] = (),
) -> dict[str, Any]:
    base = url.rstrip("/")
    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def warm(i: int) -> None:
            async with session.get(f"{base}/v1/txs/{hashes[i % len(hashes)]}") as response:
                await response.read()

        # one request per connection, so every connection is open before timing
        await asyncio.gather(*(warm(i) for i in range(concurrency)))
        latencies: list[float] = []
        errors: dict[str, int] = {}
        cpu_before = time.process_time()
        pids_before = [cpu_seconds(pid) for pid in pids]
        started = time.monotonic()
        until = started + duration
        await asyncio.gather(
            *(
                _worker(
                    session,
                    base,
                    hashes,
                    rng=random.Random(seed + i),
                    until=until,
                    latencies=latencies,
                    errors=errors,
                )
                for i in range(concurrency)
            )
        )
        seconds = time.monotonic() - started
        cpu = time.process_time() - cpu_before
        pids_cpu = [cpu_seconds(pid) - b for pid, b in zip(pids, pids_before, strict=True)]
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "seconds": seconds,
        "requests_s": len(latencies) / seconds,
        "latency_ms": {
            "p50": percentile(latencies, 0.5),
            "p90": percentile(latencies, 0.9),
            "p99": percentile(latencies, 0.99),
        },
        "reader_cpu_s": cpu,
        "pids": list(pids),
        "pids_cpu_s": pids_cpu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--hashes", required=True, type=Path)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=8)
    parser.add_argument(
        "--pid", type=int, action="append", default=[], help="also report this process's CPU"
    )
    parser.add_argument("--out", required=True, type=Path)
    args = parser.parse_args()
    hashes = args.hashes.read_text().split()
    result = asyncio.run(
        run(args.url, hashes, args.concurrency, args.duration, seed=args.seed, pids=args.pid)
    )
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
