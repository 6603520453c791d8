"""Throughput of the authenticated, encrypted peer link against raw aiohttp websockets.

Run: ``.venv/bin/python -m bench.p2p_bench``. Prints a table and writes
``bench/results/p2p.json``.

Two endpoints in one process talk over 127.0.0.1 (one event loop, so one
core does both ends, for every variant alike):

* ``raw``: aiohttp websockets, one websocket message per message, no crypto;
* ``secure``: the real link (``p2p.link``): mutual handshake, then per-peer
  queues drained by the writer, small messages batched into frames of up to
  ``batch_max_bytes``, each frame ChaCha20-Poly1305 sealed, opened and split
  on the other side;
* ``secure, 1 msg/frame``: the same channel and framing, one message per
  sealed frame (what batching saves);
* ``node, validated txs``: two ``PeerNetwork`` nodes gossiping signed
  transactions, each decoded and signature-checked before delivery (the
  ed25519 verification bounds this one; shown for scale).

Each figure is the median of several runs; compare ratios within one run.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import socket
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from ledger.genesis import ConsensusParams
from ledger.handshake import Role
from ledger.keys import SigningKey
from ledger.types import Tx
from p2p.config import Limits, PeerAddress, PeerConfig, SystemClock, consensus_limits
from p2p.flow import Outgoing, PeerQueues
from p2p.frames import Kind, decode_batch, encode_batch
from p2p.link import WS_PATH, Link, run_handshake
from p2p.network import ConsensusMessage, PeerInfo, PeerNetwork, SyncMessage
from p2p.secure import Handshake, PeerPolicy, SecureChannel
from p2p.stats import Counters

RESULTS = Path(__file__).resolve().parent / "results"
CHAIN = "radledger-bench"
RUNS = 5
SMALL_BYTES = 200
LARGE_BYTES = 1024 * 1024
COUNTS = {SMALL_BYTES: 100_000, LARGE_BYTES: 150}
UNBATCHED_COUNT = 30_000
TX_COUNT = 3_000


def machine() -> dict[str, Any]:
    return {
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "aiohttp": aiohttp.__version__,
    }


@dataclass
class Sink:
    """Counts what arrives and signals when the expected number is in."""

    target: int = 0
    received: int = 0
    bytes: int = 0
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def expect(self, target: int) -> None:
        self.target, self.received, self.bytes = target, 0, 0
        self.done.clear()

    def take(self, size: int) -> None:
        self.received += 1
        self.bytes += size
        if self.received >= self.target:
            self.done.set()


async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, int]:
    app = web.Application()
    app.router.add_get(WS_PATH, handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    return runner, sock.getsockname()[1]


def rate(count: int, size: int, seconds: float) -> dict[str, float]:
    return {
        "seconds": seconds,
        "msgs_per_s": count / seconds,
        "mb_per_s": count * size / seconds / 1e6,
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    middle = statistics.median(r["seconds"] for r in runs)
    best = next(r for r in runs if r["seconds"] == middle)
    return {**best, "runs": len(runs)}


# --------------------------------------------------------------------------- raw


async def bench_raw(size: int, count: int) -> dict[str, float]:
    sink = Sink()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=size + 1024, compress=False)
        await ws.prepare(request)
        async for msg in ws:
            sink.take(len(msg.data))
        return ws

    runner, port = await serve(handler)
    runs = []
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"ws://127.0.0.1:{port}{WS_PATH}", compress=0, max_msg_size=size + 1024
            ) as ws,
        ):
            payload = os.urandom(size)
            for _ in range(RUNS):
                sink.expect(count)
                started = time.perf_counter()
                for _ in range(count):
                    await ws.send_bytes(payload)
                await sink.done.wait()
                runs.append(rate(count, size, time.perf_counter() - started))
    finally:
        await runner.cleanup()
    return median_of(runs)


# --------------------------------------------------------------------------- secure


def bench_limits(size: int, count: int) -> Limits:
    consensus = replace(
        consensus_limits(max(size, 64 * 1024)),
        max_queue_msgs=count,
        max_queue_bytes=count * size,
    )
    return replace(Limits.for_params(ConsensusParams()), consensus=consensus)


async def secure_link(
    limits: Limits, sink: Sink
) -> tuple[Link, PeerQueues, asyncio.Event, Callable[[], Awaitable[None]]]:
    """A dialer-side Link to a listener whose items go to ``sink``."""
    clock = SystemClock()
    dialer_key, listener_key = SigningKey(b"\x01" * 32), SigningKey(b"\x02" * 32)
    allowed = frozenset({dialer_key.public_key, listener_key.public_key})
    bounds = {k: (limits.of(k).max_queue_msgs, limits.of(k).max_queue_bytes) for k in Kind}
    tasks: list[asyncio.Task[str]] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=limits.max_frame_bytes, compress=False)
        await ws.prepare(request)
        handshake = Handshake(
            PeerPolicy(CHAIN, listener_key, allowed), Role.LISTENER, clock.wall_ms()
        )
        session = await run_handshake(
            ws, handshake, [], clock=clock, max_msg_bytes=1024, admit=lambda key: None
        )
        link = Link(
            ws,
            session,
            remote="dialer",
            queues=PeerQueues(bounds),
            wake=asyncio.Event(),
            limits=limits,
            counters=Counters(),
            deliver=lambda _link, _kind, payload: sink.take(len(payload)),
            on_sent=lambda _kind, _item: None,
        )
        await link.run()
        return ws

    runner, port = await serve(handler)
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(
        f"ws://127.0.0.1:{port}{WS_PATH}", compress=0, max_msg_size=limits.max_frame_bytes
    )
    handshake = Handshake(
        PeerPolicy(CHAIN, dialer_key, allowed),
        Role.DIALER,
        clock.wall_ms(),
        expected_peer=listener_key.public_key,
    )
    session = await run_handshake(
        ws, handshake, handshake.start(), clock=clock, max_msg_bytes=1024, admit=lambda key: None
    )
    queues, wake = PeerQueues(bounds), asyncio.Event()
    link = Link(
        ws,
        session,
        remote="listener",
        queues=queues,
        wake=wake,
        limits=limits,
        counters=Counters(),
        deliver=lambda _link, _kind, _payload: None,
        on_sent=lambda _kind, _item: None,
    )
    tasks.append(asyncio.create_task(link.run()))

    async def close() -> None:
        link.stop("shutdown")
        await asyncio.gather(*tasks, return_exceptions=True)
        await http.close()
        await runner.cleanup()

    return link, queues, wake, close


async def bench_secure(size: int, count: int) -> dict[str, float]:
    sink = Sink()
    _, queues, wake, close = await secure_link(bench_limits(size, count), sink)
    item = Outgoing("bench", os.urandom(size))
    runs = []
    try:
        for _ in range(RUNS):
            sink.expect(count)
            started = time.perf_counter()
            for _ in range(count):
                queues.push(Kind.CONSENSUS, item, 0)
            wake.set()
            await sink.done.wait()
            runs.append(rate(count, size, time.perf_counter() - started))
    finally:
        await close()
    return median_of(runs)


async def bench_unbatched(size: int, count: int) -> dict[str, float]:
    """The same seal and framing, one message per frame and websocket message."""
    sink = Sink()
    channel_pair: list[SecureChannel] = []

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=size + 1024, compress=False)
        await ws.prepare(request)
        receiver = channel_pair[1]
        async for msg in ws:
            for _, payload in decode_batch(receiver.open(msg.data)):
                sink.take(len(payload))
        return ws

    key_a, key_b = os.urandom(32), os.urandom(32)
    channel_pair.extend([SecureChannel(key_a, key_b), SecureChannel(key_b, key_a)])
    runner, port = await serve(handler)
    runs = []
    try:
        async with (
            aiohttp.ClientSession() as http,
            http.ws_connect(
                f"ws://127.0.0.1:{port}{WS_PATH}", compress=0, max_msg_size=size + 1024
            ) as ws,
        ):
            payload = os.urandom(size)
            sender = channel_pair[0]
            for _ in range(RUNS):
                sink.expect(count)
                started = time.perf_counter()
                for _ in range(count):
                    await ws.send_bytes(sender.seal(encode_batch([(Kind.CONSENSUS, payload)])))
                await sink.done.wait()
                runs.append(rate(count, size, time.perf_counter() - started))
    finally:
        await runner.cleanup()
    return median_of(runs)


# --------------------------------------------------------------------------- node level


class TxSink:
    def __init__(self, sink: Sink) -> None:
        self.sink = sink

    def on_consensus(self, sender: bytes, message: ConsensusMessage) -> None:
        return None

    def on_tx(self, sender: bytes, tx: Tx) -> None:
        self.sink.take(len(tx.encode()))

    def on_sync(self, sender: PeerInfo, message: SyncMessage) -> None:
        return None

    def on_peer_connected(self, peer: PeerInfo) -> None:
        return None

    def on_peer_disconnected(self, peer: PeerInfo) -> None:
        return None


async def bench_node_txs(count: int) -> dict[str, float]:
    keys = [SigningKey(bytes([i + 1]) * 32) for i in range(2)]
    signer = SigningKey(b"\x09" * 32)
    sink = Sink()
    tx_limits = replace(
        Limits.for_params(ConsensusParams()).tx,
        max_queue_msgs=count,
        rate_msgs_per_s=1e9,
        burst_msgs=10**9,
        rate_bytes_per_s=1e12,
        burst_bytes=10**12,
    )
    limits = replace(Limits.for_params(ConsensusParams()), tx=tx_limits, seen_cache_txs=10 * count)
    receiver = PeerNetwork(
        PeerConfig(
            chain_id=CHAIN,
            node_key=keys[1],
            allowed_node_keys=frozenset({keys[0].public_key}),
            limits=limits,
        ),
        TxSink(sink),
    )
    await receiver.start()
    sender = PeerNetwork(
        PeerConfig(
            chain_id=CHAIN,
            node_key=keys[0],
            persistent_peers=(
                PeerAddress(keys[1].public_key, f"127.0.0.1:{receiver.listen_port}"),
            ),
            allowed_node_keys=frozenset({keys[1].public_key}),
            limits=limits,
        ),
        TxSink(Sink()),
    )
    await sender.start()
    runs = []
    try:
        while not sender.is_connected(keys[1].public_key):
            await asyncio.sleep(0.01)
        size = 0
        for run in range(3):
            txs = [
                Tx.create(
                    signer,
                    chain_id=CHAIN,
                    kind="access.log",
                    nonce=run * count + n,
                    body={"dataset": "ds-2026-000142", "purpose": "bench", "n": n},
                )
                for n in range(count)
            ]
            size = len(txs[0].encode())
            sink.expect(count)
            started = time.perf_counter()
            for t in txs:
                sender.gossip_tx(t)
            await sink.done.wait()
            runs.append(rate(count, size, time.perf_counter() - started))
    finally:
        await sender.stop()
        await receiver.stop()
    return {**median_of(runs), "tx_bytes": size}


# --------------------------------------------------------------------------- main


async def run() -> dict[str, Any]:
    rows: dict[str, dict[str, float]] = {}
    for size in (SMALL_BYTES, LARGE_BYTES):
        count = COUNTS[size]
        label = "200 B" if size == SMALL_BYTES else "1 MiB"
        rows[f"raw websocket, {label}"] = await bench_raw(size, count)
        rows[f"secure link, {label}"] = await bench_secure(size, count)
        if size == SMALL_BYTES:
            rows[f"secure, 1 msg/frame, {label}"] = await bench_unbatched(size, UNBATCHED_COUNT)
    rows["node, validated tx gossip"] = await bench_node_txs(TX_COUNT)
    ratios = {
        "secure/raw msgs/s, 200 B": rows["secure link, 200 B"]["msgs_per_s"]
        / rows["raw websocket, 200 B"]["msgs_per_s"],
        "secure/raw msgs/s, 1 MiB": rows["secure link, 1 MiB"]["msgs_per_s"]
        / rows["raw websocket, 1 MiB"]["msgs_per_s"],
        "unbatched/raw msgs/s, 200 B": rows["secure, 1 msg/frame, 200 B"]["msgs_per_s"]
        / rows["raw websocket, 200 B"]["msgs_per_s"],
    }
    return {
        "machine": machine(),
        "runs_per_figure": RUNS,
        "batch_max_bytes": Limits().batch_max_bytes,
        "results": rows,
        "ratios": ratios,
        "target": "secure/raw >= 0.40 for 200 B messages",
        "target_met": ratios["secure/raw msgs/s, 200 B"] >= 0.40,
    }


def main() -> None:
    result = asyncio.run(run())
    print(f"machine: {result['machine']}")
    print(f"{'':38} {'msgs/s':>12} {'MB/s':>10}")
    for name, row in result["results"].items():
        print(f"  {name:<36} {row['msgs_per_s']:>12,.0f} {row['mb_per_s']:>10.1f}")
    for name, value in result["ratios"].items():
        print(f"  ratio {name:<32} {value:>6.2f}")
    print(f"  target (secure/raw >= 0.40, 200 B): {'met' if result['target_met'] else 'NOT met'}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "p2p.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {RESULTS / 'p2p.json'}")


if __name__ == "__main__":
    main()
