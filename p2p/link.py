"""One authenticated, encrypted websocket connection to a peer.

:func:`run_handshake` drives the sans-I/O :class:`~p2p.secure.Handshake` over
a websocket (binary messages: the two Hellos in clear, then the sealed Auths).
A :class:`Link` then runs two loops on the resulting session:

* the reader opens every websocket message with the session's
  :class:`~p2p.secure.SecureChannel`, splits it with :func:`~p2p.frames.decode_batch`
  and hands each item to ``deliver``; a frame that fails authentication or
  framing ends the link with a reason the caller turns into a penalty;
* the writer drains the peer's :class:`~p2p.flow.PeerQueues` in priority
  order, batching small messages into one sealed frame, and gives up on a
  frame the peer does not take within its send timeout.

Whatever ends first (reader, writer, or :meth:`Link.stop`) ends the link.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import Final, TypeAlias

import aiohttp
from aiohttp import WebSocketError, WSCloseCode, WSMsgType, web

from p2p.config import Clock, Limits
from p2p.flow import Outgoing, PeerQueues
from p2p.frames import FrameError, Kind, decode_batch, encode_batch
from p2p.secure import ChannelError, Handshake, HandshakeError, Session
from p2p.stats import Counters

log = logging.getLogger("radledger.p2p")

#: The websocket endpoint every node serves.
WS_PATH: Final = "/p2p/v1"

WebSocket: TypeAlias = web.WebSocketResponse | aiohttp.ClientWebSocketResponse

#: Frames at least this large are sealed and opened on a worker thread (libsodium
#: releases the GIL), so a large block does not hold up the event loop.
OFFLOAD_BYTES: Final = 2 * 1024 * 1024
#: A link superseded by another connection to the same peer ends without losing
#: what is in flight (see :meth:`Link.run`).
GRACEFUL: Final = frozenset({"replaced", "duplicate"})
#: Reasons a link ends because of what the peer sent (each costs it a frame penalty).
FRAME_FAULTS: Final = frozenset({"frame_auth", "frame_format", "oversized", "not_binary"})

#: Websocket close codes we send, by reason (informational: the close frame is not
#: authenticated, so a peer must never act on it beyond closing).
CLOSE_CODES: Final[Mapping[str, int]] = {
    "duplicate": 4000,
    "replaced": 4000,
    "banned": 4001,
    "slow": 4002,
    "send_timeout": 4002,
    "shutdown": int(WSCloseCode.GOING_AWAY),
    "oversized": int(WSCloseCode.MESSAGE_TOO_BIG),
    "refused": int(WSCloseCode.POLICY_VIOLATION),
}


class HandshakeFailed(Exception):
    """A handshake did not complete; ``reason`` is a metric label.

    ``peer_hello`` is the first message the peer sent, if any (used to recognise
    a connection to ourselves from the listening side).
    """

    def __init__(self, reason: str, detail: str, peer_hello: bytes | None = None) -> None:
        self.reason = reason
        self.detail = detail
        self.peer_hello = peer_hello
        super().__init__(f"handshake failed ({reason}): {detail}")


async def run_handshake(
    ws: WebSocket,
    handshake: Handshake,
    initial: Sequence[bytes],
    *,
    clock: Clock,
    max_msg_bytes: int,
    admit: Callable[[bytes], str | None],
) -> Session:
    """Run ``handshake`` over ``ws`` to completion.

    ``initial`` is what ``handshake.start()`` returned. ``admit`` is asked about
    the authenticated peer key before our last message goes out: a non-None
    answer refuses the peer with that reason (a banned peer never learns who we
    are). The caller bounds the whole exchange with a timeout.
    """
    peer_hello: bytes | None = None
    session: Session | None = None
    try:
        for message in initial:
            await ws.send_bytes(message)
        while session is None:
            msg = await ws.receive()
            if msg.type is not WSMsgType.BINARY:
                reason = "not_binary" if msg.type is WSMsgType.TEXT else "closed"
                raise HandshakeFailed(
                    reason, f"got {msg.type.name} during the handshake", peer_hello
                )
            data: bytes = msg.data
            if len(data) > max_msg_bytes:
                raise HandshakeFailed(
                    "too_large", f"handshake message of {len(data)} bytes", peer_hello
                )
            if peer_hello is None:
                peer_hello = data
            replies = handshake.receive(data, clock.wall_ms())
            session = handshake.session
            if session is not None:
                refusal = admit(session.peer_key)
                if refusal is not None:
                    raise HandshakeFailed(
                        refusal, f"peer {session.peer_key.hex()[:16]} not admitted", peer_hello
                    )
            for reply in replies:
                await ws.send_bytes(reply)
        return session
    except HandshakeError as exc:
        raise HandshakeFailed(exc.reason.value, exc.detail, peer_hello) from None
    except (aiohttp.ClientError, ConnectionError, RuntimeError) as exc:
        raise HandshakeFailed("transport", str(exc) or type(exc).__name__, peer_hello) from None


def abort(ws: WebSocket) -> None:
    """Reset the TCP connection under ``ws`` without waiting for anything.

    Used when a graceful close cannot finish (a peer that stopped reading keeps
    our write buffer full, and a normal close would wait on it forever).
    """
    sock = ws.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


async def close_ws(ws: WebSocket, reason: str, timeout_ms: int) -> None:
    """Close ``ws`` with the code for ``reason``; reset the connection if that stalls."""
    if reason in ("slow", "send_timeout"):
        abort(ws)
        return
    code = CLOSE_CODES.get(reason, int(WSCloseCode.OK))
    try:
        async with asyncio.timeout(timeout_ms / 1000):
            await ws.close(code=code)
    except (TimeoutError, aiohttp.ClientError, ConnectionError, RuntimeError):
        abort(ws)


class Link:
    """A live, authenticated connection to one peer (see the module docstring)."""

    def __init__(
        self,
        ws: WebSocket,
        session: Session,
        *,
        remote: str,
        queues: PeerQueues,
        wake: asyncio.Event,
        limits: Limits,
        counters: Counters,
        deliver: Callable[[Link, Kind, bytes], None],
        on_sent: Callable[[Kind, Outgoing], None],
        skip: Callable[[Outgoing], bool] | None = None,
        on_skipped: Callable[[int], None] | None = None,
    ) -> None:
        self.ws = ws
        self.peer_key = session.peer_key
        self.role = session.role
        self.remote = remote
        self._channel = session.channel
        self._queues = queues
        self._wake = wake
        self._limits = limits
        self._counters = counters
        self._deliver = deliver
        self._on_sent = on_sent
        self._skip = skip
        self._on_skipped = on_skipped
        self._max_payload = limits.max_payload_bytes
        self._stop = asyncio.Event()
        self._hurry = asyncio.Event()
        self._stop_reason: str | None = None
        self.finished = asyncio.Event()

    @property
    def stopping(self) -> bool:
        return self._stop_reason is not None

    def stop(self, reason: str) -> None:
        """Ask the link to end (idempotent; the first reason wins)."""
        if self._stop_reason is None:
            self._stop_reason = reason
            self._stop.set()
            self._wake.set()  # a writer waiting for work notices at once
        elif self._stop_reason in GRACEFUL and reason not in GRACEFUL:
            self._hurry.set()  # e.g. shutting down: stop draining a superseded link

    async def run(self) -> str:
        """Run until the peer leaves, misbehaves, stalls, or :meth:`stop`; the reason.

        A link superseded by another connection to the same peer (``replaced``
        or ``duplicate``) ends gracefully: the writer finishes the frame it is
        sending and takes no more (the queue now feeds the other link), and the
        reader keeps delivering what the peer had already sent until the peer
        closes this connection too, or ``close_timeout_ms`` passes.
        """
        reader = asyncio.create_task(self._read_loop())
        writer = asyncio.create_task(self._write_loop())
        stopper = asyncio.create_task(self._stop.wait())
        tasks = (reader, writer, stopper)
        reason = "shutdown"
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if self._stop_reason is not None:
                reason = self._stop_reason
            else:
                finished = reader if reader in done else writer
                reason = finished.result()
                self._stop_reason = reason
            if reason in GRACEFUL:
                hurry = asyncio.create_task(self._hurry.wait())
                try:
                    for loop_task in (writer, reader):
                        await asyncio.wait(
                            (loop_task, hurry),
                            timeout=self._limits.close_timeout_ms / 1000,
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                finally:
                    hurry.cancel()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await close_ws(self.ws, reason, self._limits.close_timeout_ms)
            finally:
                self.finished.set()
        return reason

    async def _read_loop(self) -> str:
        counters = self._counters
        try:
            while True:
                msg = await self.ws.receive()
                kind = msg.type
                if kind is WSMsgType.BINARY:
                    data: bytes = msg.data
                    counters.frames_received += 1
                    counters.wire_bytes_received += len(data)
                    try:
                        plaintext = (
                            await asyncio.to_thread(self._channel.open, data)
                            if len(data) >= OFFLOAD_BYTES
                            else self._channel.open(data)
                        )
                    except ChannelError as exc:
                        log.warning("peer %s: %s", self.peer_key.hex()[:16], exc)
                        return "frame_auth"
                    try:
                        items = decode_batch(plaintext, self._max_payload)
                    except FrameError as exc:
                        log.warning("peer %s: bad frame: %s", self.peer_key.hex()[:16], exc)
                        return "frame_format"
                    for item_kind, payload in items:
                        self._deliver(self, item_kind, payload)
                        if self._stop_reason is not None and self._stop_reason not in GRACEFUL:
                            return self._stop_reason
                    # Let other peers' tasks run between frames of a busy peer.
                    await asyncio.sleep(0)
                elif kind is WSMsgType.TEXT:
                    return "not_binary"
                elif kind is WSMsgType.ERROR:
                    error = msg.data
                    if (
                        isinstance(error, WebSocketError)
                        and error.code == WSCloseCode.MESSAGE_TOO_BIG
                    ):
                        return "oversized"
                    return "transport_error"
                else:  # CLOSE, CLOSING, CLOSED
                    return "closed"
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("peer %s: reader failed", self.peer_key.hex()[:16])
            return "internal_error"

    async def _write_loop(self) -> str:
        queues = self._queues
        limits = self._limits
        counters = self._counters
        budget = limits.batch_max_bytes
        try:
            while True:
                if self._stop_reason is not None:
                    return self._stop_reason
                if not queues:
                    self._wake.clear()
                    await self._wake.wait()
                    continue
                batch, skipped = queues.take_batch(budget, self._skip)
                if skipped and self._on_skipped is not None:
                    self._on_skipped(skipped)
                if not batch:
                    continue
                plaintext = encode_batch((k, item.payload) for k, item in batch)
                frame = (
                    await asyncio.to_thread(self._channel.seal, plaintext)
                    if len(plaintext) >= OFFLOAD_BYTES
                    else self._channel.seal(plaintext)
                )
                timeout_s = limits.send_timeout_ms / 1000 + len(frame) / limits.min_send_bytes_per_s
                try:
                    async with asyncio.timeout(timeout_s):
                        await self.ws.send_bytes(frame)
                except TimeoutError:
                    log.warning(
                        "peer %s: a %d-byte frame was not taken in %.1f s",
                        self.peer_key.hex()[:16],
                        len(frame),
                        timeout_s,
                    )
                    return "send_timeout"
                except (aiohttp.ClientError, ConnectionError, RuntimeError):
                    return "closed"
                counters.frames_sent += 1
                counters.wire_bytes_sent += len(frame)
                for kind, item in batch:
                    self._on_sent(kind, item)
                # A writer with a full queue must not monopolise the event loop.
                await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("peer %s: writer failed", self.peer_key.hex()[:16])
            return "internal_error"
