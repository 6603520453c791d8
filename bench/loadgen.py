"""Open-loop load generator for bench.throughput (run as its own process).

Reads pre-signed transactions (hex, one per line), sends transaction *i* at
``t0 + i / rate`` to node ``i mod n`` (``POST /v1/txs``, no waiting), whatever
happened to earlier ones (open loop: a slow network does not slow the offered
load). A websocket on ``/v1/events`` of one node records when each block
commits. Writes a JSON summary: per-transaction send time, admission status,
answer time and commit time; the harness computes the figures.

With ``--senders N`` (one request per transaction only), each node gets N
sender tasks that take its transactions from a FIFO queue, so a node sees its
transactions in the order they were due, at most N in flight; the send time
recorded is still when a transaction was due (time waiting in the queue counts
as latency). Without it (the default), every transaction is its own task
sharing 256 connections, which a saturated node serves out of order: a
signer's later transaction can then commit before its earlier one is even
admitted, and the earlier one is refused ``nonce_reused``, an artefact of one
generator standing in for many sequential clients.

Usage: python -m bench.loadgen --txs FILE --rate R --rpc URL [--rpc URL ...]
       --events URL --out FILE [--drain S] [--batch-ms MS | --senders N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import aiohttp


async def _events(url: str, commits: dict[str, float], blocks: list[dict[str, Any]]) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(url.rstrip("/") + "/v1/events", heartbeat=10) as ws,
    ):
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(message.data)
            if event.get("type") != "block":
                continue
            now = time.monotonic()
            blocks.append({"height": event["height"], "at": now, "txs": len(event["txs"])})
            for tx in event["txs"]:
                commits.setdefault(tx["hash"], now)


async def _send(
    session: aiohttp.ClientSession, url: str, body: bytes, record: dict[str, Any]
) -> None:
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            record["status"] = r.status
            if r.status >= 400:
                record["error"] = (await r.json()).get("error", {}).get("code")
    except (aiohttp.ClientError, TimeoutError) as exc:
        record["status"] = 0
        record["error"] = type(exc).__name__
    record["answered"] = time.monotonic()


async def _send_batch(
    session: aiohttp.ClientSession, url: str, txs: list[str], records: list[dict[str, Any]]
) -> None:
    body = json.dumps({"txs": txs}).encode()
    try:
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
            answer = await r.json()
            for record, result in zip(records, answer.get("results", []), strict=False):
                if "error" in result:
                    record["status"], record["error"] = 400, result["error"]["code"]
                else:
                    record["status"] = 202
    except (aiohttp.ClientError, TimeoutError) as exc:
        for record in records:
            record["status"], record["error"] = 0, type(exc).__name__
    answered = time.monotonic()
    for record in records:
        record["answered"] = answered


Job = tuple[str, bytes, dict[str, Any]]


async def _sender(session: aiohttp.ClientSession, queue: asyncio.Queue[Job | None]) -> None:
    while (job := await queue.get()) is not None:
        await _send(session, *job)


async def run(
    txs: list[str],
    hashes: list[str],
    rate: float,
    rpcs: list[str],
    *,
    events: str,
    drain_s: float,
    batch_ms: float = 0.0,
    senders: int = 0,
) -> dict[str, Any]:
    commits: dict[str, float] = {}
    blocks: list[dict[str, Any]] = []
    watcher = asyncio.create_task(_events(events, commits, blocks))
    await asyncio.sleep(0.5)  # the subscription is live before the first send
    records: list[dict[str, Any]] = [{"hash": h} for h in hashes]
    ordered = senders > 0 and batch_ms <= 0
    connector = aiohttp.TCPConnector(limit=max(256, senders * len(rpcs) if ordered else 0))
    timeout = aiohttp.ClientTimeout(total=30)  # ordered: from when a sender takes it
    pending: set[asyncio.Task[None]] = set()
    queues: list[asyncio.Queue[Job | None]] = [asyncio.Queue() for _ in rpcs]
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workers = [
            asyncio.create_task(_sender(session, queue))
            for queue in (queues if ordered else [])
            for _ in range(senders)
        ]
        start = time.monotonic()
        if batch_ms > 0:  # every tick, each node gets the transactions now due, in one request
            i = 0
            while i < len(txs):
                await asyncio.sleep(batch_ms / 1000)
                due = min(len(txs), int((time.monotonic() - start) * rate) + 1)
                groups: dict[int, list[int]] = {}
                for j in range(i, due):
                    groups.setdefault(j % len(rpcs), []).append(j)
                now = time.monotonic()
                for node, indices in groups.items():
                    for j in indices:
                        records[j]["sent"] = now
                    task = asyncio.create_task(
                        _send_batch(
                            session,
                            rpcs[node] + "/v1/txs/batch",
                            [txs[j] for j in indices],
                            [records[j] for j in indices],
                        )
                    )
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                i = due
        for i, (tx, record) in enumerate(zip(txs, records, strict=True)):
            if batch_ms > 0:
                break
            send_at = start + i / rate
            delay = send_at - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            record["sent"] = time.monotonic()
            url = rpcs[i % len(rpcs)] + "/v1/txs"
            body = json.dumps({"tx": tx}).encode()
            if ordered:
                queues[i % len(rpcs)].put_nowait((url, body, record))
                continue
            task = asyncio.create_task(_send(session, url, body, record))
            pending.add(task)
            task.add_done_callback(pending.discard)
        offered_s = time.monotonic() - start
        for queue in queues if ordered else []:
            for _ in range(senders):
                queue.put_nowait(None)
        if workers:
            await asyncio.gather(*workers)
        if pending:
            await asyncio.wait(pending)
        deadline = time.monotonic() + drain_s
        admitted = {r["hash"] for r in records if r.get("status") == 202}
        while time.monotonic() < deadline and not admitted <= commits.keys():
            await asyncio.sleep(0.1)
    watcher.cancel()
    for record in records:
        committed = commits.get(record["hash"])
        if committed is not None:
            record["committed"] = committed
    return {"start": start, "offered_s": offered_s, "records": records, "blocks": blocks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--txs", required=True, type=Path)
    parser.add_argument("--rate", required=True, type=float)
    parser.add_argument("--rpc", action="append", required=True)
    parser.add_argument("--events", required=True)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--drain", type=float, default=10.0)
    parser.add_argument("--batch-ms", type=float, default=0.0)
    parser.add_argument("--senders", type=int, default=0)
    args = parser.parse_args()
    lines = [line.split() for line in args.txs.read_text().splitlines() if line]
    hashes, txs = [h for h, _ in lines], [t for _, t in lines]
    result = asyncio.run(
        run(
            txs,
            hashes,
            args.rate,
            args.rpc,
            events=args.events,
            drain_s=args.drain,
            batch_ms=args.batch_ms,
            senders=args.senders,
        )
    )
    args.out.write_text(json.dumps(result))


if __name__ == "__main__":
    main()
