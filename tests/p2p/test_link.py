"""One link over a real websocket (p2p/link.py): batching, priority, large frames, endings."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from ledger.handshake import Role
from ledger.keys import SigningKey
from p2p.config import Limits, SystemClock, consensus_limits
from p2p.flow import Outgoing, PeerQueues
from p2p.frames import Kind
from p2p.link import OFFLOAD_BYTES, WS_PATH, HandshakeFailed, Link, run_handshake
from p2p.secure import Handshake, PeerPolicy
from p2p.stats import Counters

CHAIN = "radledger-link-test"
DIALER, LISTENER = SigningKey(b"\x01" * 32), SigningKey(b"\x02" * 32)
ALLOWED = frozenset({DIALER.public_key, LISTENER.public_key})
LIMITS = dataclasses.replace(Limits(), consensus=consensus_limits(8 * 1024 * 1024))


def bounds(limits: Limits) -> dict[Kind, tuple[int, int]]:
    return {k: (limits.of(k).max_queue_msgs, limits.of(k).max_queue_bytes) for k in Kind}


@dataclass
class Pair:
    """A dialer-side link (we fill its queues) and what the listener received."""

    link: Link
    queues: PeerQueues
    wake: asyncio.Event
    counters: Counters
    received: list[tuple[Kind, bytes]] = field(default_factory=list)
    frames: list[int] = field(default_factory=list)  # items per received frame
    listener_ended: asyncio.Future[str] | None = None

    def send(self, kind: Kind, payload: bytes) -> None:
        assert self.queues.push(kind, Outgoing("x", payload), 0)
        self.wake.set()


@pytest.fixture
async def pair() -> AsyncIterator[Pair]:
    clock = SystemClock()
    state: dict[str, Pair] = {}
    ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def handler(request: web.Request) -> web.StreamResponse:
        ws = web.WebSocketResponse(max_msg_size=LIMITS.max_frame_bytes, compress=False)
        await ws.prepare(request)
        handshake = Handshake(PeerPolicy(CHAIN, LISTENER, ALLOWED), Role.LISTENER, clock.wall_ms())
        session = await run_handshake(
            ws, handshake, [], clock=clock, max_msg_bytes=1024, admit=lambda key: None
        )
        counters = Counters()

        def deliver(link: Link, kind: Kind, payload: bytes) -> None:
            state["pair"].received.append((kind, payload))

        link = Link(
            ws,
            session,
            remote="dialer",
            queues=PeerQueues(bounds(LIMITS)),
            wake=asyncio.Event(),
            limits=LIMITS,
            counters=counters,
            deliver=deliver,
            on_sent=lambda kind, item: None,
        )
        ended.set_result(await link.run())
        return ws

    app = web.Application()
    app.router.add_get(WS_PATH, handler)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    await web.SockSite(runner, sock).start()
    http = aiohttp.ClientSession()
    ws = await http.ws_connect(
        f"ws://127.0.0.1:{sock.getsockname()[1]}{WS_PATH}",
        max_msg_size=LIMITS.max_frame_bytes,
        compress=0,
    )
    handshake = Handshake(
        PeerPolicy(CHAIN, DIALER, ALLOWED),
        Role.DIALER,
        clock.wall_ms(),
        expected_peer=LISTENER.public_key,
    )
    session = await run_handshake(
        ws, handshake, handshake.start(), clock=clock, max_msg_bytes=1024, admit=lambda k: None
    )
    queues, wake, counters = PeerQueues(bounds(LIMITS)), asyncio.Event(), Counters()
    link = Link(
        ws,
        session,
        remote="listener",
        queues=queues,
        wake=wake,
        limits=LIMITS,
        counters=counters,
        deliver=lambda link, kind, payload: None,
        on_sent=lambda kind, item: None,
    )
    state["pair"] = Pair(link, queues, wake, counters, listener_ended=ended)
    task = asyncio.create_task(link.run())
    try:
        yield state["pair"]
    finally:
        link.stop("shutdown")
        await asyncio.gather(task, return_exceptions=True)
        await http.close()
        await runner.cleanup()


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


async def test_small_messages_are_batched_into_few_frames(pair: Pair) -> None:
    payloads = [os.urandom(200) for _ in range(2000)]
    for payload in payloads:
        pair.send(Kind.TX, payload)
    await until(lambda: len(pair.received) == len(payloads))
    assert [p for _, p in pair.received] == payloads  # in order, intact
    # 2000 x 205 bytes in frames of at most 64 KiB: a handful of frames, not 2000.
    assert pair.counters.frames_sent <= 10
    assert pair.counters.wire_bytes_sent < 2000 * 205 + 16 * pair.counters.frames_sent + 1


async def test_consensus_overtakes_queued_gossip(pair: Pair) -> None:
    for n in range(5):
        pair.queues.push(Kind.TX, Outgoing("tx", b"t%d" % n), 0)
    pair.queues.push(Kind.SYNC, Outgoing("sync", b"s"), 0)
    pair.queues.push(Kind.CONSENSUS, Outgoing("vote", b"c"), 0)
    pair.wake.set()
    await until(lambda: len(pair.received) == 7)
    assert [k for k, _ in pair.received] == [Kind.CONSENSUS, Kind.SYNC] + [Kind.TX] * 5


async def test_a_frame_larger_than_the_offload_threshold(pair: Pair) -> None:
    """Large frames are sealed and opened off the event loop; they arrive intact."""
    big = os.urandom(OFFLOAD_BYTES + 12345)
    pair.send(Kind.CONSENSUS, big)
    pair.send(Kind.CONSENSUS, b"after")
    await until(lambda: len(pair.received) == 2)
    assert pair.received == [(Kind.CONSENSUS, big), (Kind.CONSENSUS, b"after")]


async def test_stopping_one_end_ends_the_other(pair: Pair) -> None:
    pair.link.stop("shutdown")
    assert pair.listener_ended is not None
    async with asyncio.timeout(10):
        assert await pair.listener_ended == "closed"


async def test_admission_is_asked_before_the_last_handshake_message() -> None:
    """A refused peer (e.g. banned) gets a HandshakeFailed with that reason, and
    the listener's Auth, which would name it, never goes out."""
    clock = SystemClock()
    dialer = Handshake(PeerPolicy(CHAIN, DIALER, ALLOWED), Role.DIALER, clock.wall_ms())
    listener = Handshake(PeerPolicy(CHAIN, LISTENER, ALLOWED), Role.LISTENER, clock.wall_ms())
    (hello,) = dialer.start()
    inbox = [hello]
    sent: list[bytes] = []

    class Relay:
        """Just enough of a websocket: what we send goes to the dialer, and back."""

        async def send_bytes(self, data: bytes) -> None:
            sent.append(data)
            if len(sent) == 1:  # our Hello: the dialer answers with its Auth
                inbox.extend(dialer.receive(data, clock.wall_ms()))

        async def receive(self) -> aiohttp.WSMessage:
            return aiohttp.WSMessage(aiohttp.WSMsgType.BINARY, inbox.pop(0), None)

    asked: list[bytes] = []

    def admit(key: bytes) -> str | None:
        asked.append(key)
        return "banned"

    with pytest.raises(HandshakeFailed) as info:
        await run_handshake(
            Relay(),  # type: ignore[arg-type]
            listener,
            [],
            clock=clock,
            max_msg_bytes=1024,
            admit=admit,
        )
    assert info.value.reason == "banned"
    assert asked == [DIALER.public_key]
    assert len(sent) == 1  # only our Hello
