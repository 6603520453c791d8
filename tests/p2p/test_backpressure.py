"""A peer that stops reading must not delay anyone else, and is eventually dropped."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import statistics
import time
from collections.abc import Callable

from ledger.messages import BlockResponse
from p2p.config import consensus_limits, sync_limits
from p2p.network import PeerNetwork
from tests.p2p.helpers import (
    CHAIN,
    Member,
    Nets,
    Recorder,
    block,
    certify,
    config_for,
    eventually,
    fast_limits,
    make_members,
    tx,
    vote,
)


def arrived(recorder: Recorder, block_hash: bytes) -> Callable[[], bool]:
    return lambda: block_hash in recorder.arrival


async def latencies_to(
    node: PeerNetwork, member: Member, fast: Recorder, tag: bytes, count: int
) -> tuple[list[float], float]:
    """Broadcast ``count`` votes one at a time; the fast peer's delivery latency of
    each (seconds), and the longest time one broadcast call took."""
    out: list[float] = []
    longest_call = 0.0
    for height in range(1, count + 1):
        v = vote(member, height, tag)
        started = time.perf_counter()
        node.broadcast_consensus(v)
        longest_call = max(longest_call, time.perf_counter() - started)
        await eventually(arrived(fast, v.block_hash), what="the fast peer's vote")
        out.append(fast.arrival[v.block_hash] - started)
    return out, longest_call


async def test_a_slow_reader_does_not_delay_a_fast_peer(nets: Nets) -> None:
    members = make_members(3)
    me, fast_member, slow_member = members
    limits = fast_limits(
        consensus=dataclasses.replace(consensus_limits(1024 * 1024), max_queue_bytes=2 << 20),
        sync=dataclasses.replace(sync_limits(1024 * 1024), max_queue_bytes=2 << 20),
        slow_peer_grace_ms=1_500,
    )
    node, _ = nets.make(config_for(members, 0, dial=[1], limits=limits))
    _, fast = nets.make(config_for(members, 1, dial=[], limits=limits))
    for net in nets.networks:
        await net.start()
    await eventually(lambda: node.is_connected(fast_member.node.public_key))

    # Without the slow peer.
    baseline, _ = await latencies_to(node, me, fast, b"base", 30)

    # A peer that completes the handshake, then never reads again.
    slow = await nets.raw_connect(me.port, slow_member.node, me.node.public_key)
    sock = slow.ws.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    await eventually(lambda: node.is_connected(slow_member.node.public_key))
    blk = block(me, 1, [tx(n) for n in range(400)])
    filler = BlockResponse(CHAIN, (blk,), (certify(members, blk),))
    slow_key = slow_member.node.public_key

    async def keep_feeding_the_slow_peer() -> None:
        while node.is_connected(slow_key):
            node.send_sync(slow_key, filler)
            await asyncio.sleep(0.005)

    feeder = asyncio.create_task(keep_feeding_the_slow_peer())
    # Once the socket buffers are full, the writer stops draining and the queue fills.
    await eventually(
        lambda: node.stats().peer(slow_key).queue_bytes.get("sync", 0) > 1 << 20,
        what="the slow peer's queue to fill",
    )

    with_slow, longest_call = await latencies_to(node, me, fast, b"slow", 30)
    base_p50, slow_p50 = statistics.median(baseline), statistics.median(with_slow)
    print(
        f"fast-peer latency p50: {base_p50 * 1000:.2f} ms alone, "
        f"{slow_p50 * 1000:.2f} ms beside a stalled peer; "
        f"longest broadcast call {longest_call * 1000:.2f} ms"
    )
    assert slow_p50 < 10 * base_p50 + 0.05
    assert max(with_slow) < 2.0
    assert longest_call < 0.25  # sending never waits for a peer

    # The stalled peer is dropped once its queue has stayed full for the grace period.
    await eventually(lambda: not node.is_connected(slow_key), what="the slow peer dropped")
    await feeder
    stats = node.stats()
    assert stats.drops[("sync", "queue_full")] > 0
    assert stats.disconnects.get("slow", 0) + stats.disconnects.get("send_timeout", 0) == 1
    assert stats.peer(slow_member.node.public_key).queue_msgs == {}
    assert node.is_connected(fast_member.node.public_key)
    assert stats.penalties == {}  # slowness is not misbehaviour
