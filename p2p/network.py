"""The peer network of one node: listen, dial, admit, validate, gossip, shed load.

:class:`PeerNetwork` serves a websocket endpoint (``/p2p/v1``) and dials its
persistent peers, redialing with capped, jittered exponential backoff. Every
connection runs the mutual handshake of :mod:`p2p.secure` (bounded by a
timeout and a message size) before anything else is read; a refused
handshake is logged with its reason and counted. There is at most one link
per peer: when two nodes dial each other at once, both keep the connection
dialed by the smaller node key.

Inbound messages are validated at the boundary, then handed to a
:class:`PeerHandler`:

* ``CONSENSUS``: only from validators' nodes; ``decode_message`` then
  ``verify_message`` against the validator set;
* ``SYNC``: ``Status``, ``BlockRequest``, ``BlockResponse``, verified likewise;
  a response must answer a request we sent that peer;
* ``TX``: ``Tx.decode``, the chain id, the signature; each transaction is
  delivered once (a bounded seen-cache) and never sent back to a peer known
  to have it.

Anything that fails costs the peer misbehaviour points; past the threshold it
is disconnected and banned for a while. Outbound, every peer has bounded
per-kind queues drained by its own writer (consensus before sync before
transactions); sending never waits for a peer, a full queue drops the
message, and a peer that stays congested is disconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
import time
from collections import Counter, deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Final, ParamSpec, Protocol, TypeAlias

import aiohttp
from aiohttp import web

from ledger.errors import LedgerError
from ledger.handshake import Role
from ledger.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Message,
    NewView,
    Proposal,
    Status,
    ViewChange,
    decode_message,
    encode_message,
    verify_message,
)
from ledger.types import Tx, Vote, sha256
from p2p.config import Clock, PeerAddress, PeerConfig, SystemClock, split_address
from p2p.flow import (
    BoundedSet,
    Outgoing,
    PeerQueues,
    RateLimit,
    Score,
    TokenBucket,
    backoff_ms,
)
from p2p.frames import Kind
from p2p.link import (
    FRAME_FAULTS,
    WS_PATH,
    HandshakeFailed,
    Link,
    WebSocket,
    close_ws,
    run_handshake,
)
from p2p.secure import Handshake, PeerPolicy, Session
from p2p.stats import Counters, NetworkStats, PeerStats, Traffic, frozen

log = logging.getLogger("radledger.p2p")
P = ParamSpec("P")

ConsensusMessage: TypeAlias = Proposal | Vote | ViewChange | NewView | Checkpoint
SyncMessage: TypeAlias = Status | BlockRequest | BlockResponse
CONSENSUS_TYPES: Final = (Proposal, Vote, ViewChange, NewView, Checkpoint)
SYNC_TYPES: Final = (Status, BlockRequest, BlockResponse)

_LABELS: Final[dict[type, str]] = {
    Proposal: "proposal",
    Vote: "vote",
    ViewChange: "view_change",
    NewView: "new_view",
    Checkpoint: "checkpoint",
    Status: "status",
    BlockRequest: "block_request",
    BlockResponse: "block_response",
}


def message_label(message: Message) -> str:
    """The metric label of a ledger message (``vote``, ``proposal`` ...)."""
    return _LABELS[type(message)]


@dataclass(frozen=True, slots=True)
class PeerInfo:
    """Who a peer is: its node key and, for a validator's node, its validator key."""

    node_key: bytes
    validator_key: bytes | None


class PeerHandler(Protocol):
    """Receives validated messages. Called on the event loop; must not block.

    An exception raised here is logged and counted (``handler_errors``); it never
    ends the connection it came from.
    """

    def on_consensus(self, sender: bytes, message: ConsensusMessage) -> None:
        """A verified consensus message from the node of validator ``sender``."""

    def on_tx(self, sender: bytes, tx: Tx) -> None:
        """A new, well-signed transaction of our chain from node ``sender``.

        Relaying is the node's choice: call ``gossip_tx(tx, origin=sender)``
        once the mempool has admitted it.
        """

    def on_sync(self, sender: PeerInfo, message: SyncMessage) -> None:
        """A verified ``Status``, ``BlockRequest`` or solicited ``BlockResponse``."""

    def on_peer_connected(self, peer: PeerInfo) -> None:
        """A peer now has a live link (not called when a link replaces another)."""

    def on_peer_disconnected(self, peer: PeerInfo) -> None:
        """A peer's last link ended."""


class SyncError(Exception):
    """A block request could not be answered."""


class SyncTimeout(SyncError, TimeoutError):
    """No answer within the request's timeout."""


class PeerUnavailable(SyncError):
    """The peer is not connected (or went away before answering)."""


@dataclass(eq=False, slots=True)
class _PendingSync:
    request: BlockRequest
    deadline_ms: int
    future: asyncio.Future[BlockResponse] | None


class _DialTarget:
    __slots__ = ("address", "is_self", "node_key")

    def __init__(self, peer: PeerAddress) -> None:
        self.node_key = peer.node_key
        self.address = peer.address
        self.is_self = False


class _Peer:
    """What we keep about one accepted peer, across its connections."""

    __slots__ = (
        "banned_until_ms",
        "down",
        "down_since_ms",
        "has_txs",
        "info",
        "link",
        "pending_sync",
        "queues",
        "rates",
        "score",
        "sent_txs",
        "traffic",
        "wake",
    )

    def __init__(self, info: PeerInfo, config: PeerConfig, now_ms: int) -> None:
        limits = config.limits
        self.info = info
        self.queues = PeerQueues(
            {
                kind: (limits.of(kind).max_queue_msgs, limits.of(kind).max_queue_bytes)
                for kind in Kind
            }
        )
        self.wake = asyncio.Event()
        self.down = asyncio.Event()
        self.down.set()
        self.down_since_ms: int | None = None  # set while queued messages await a new link
        self.link: Link | None = None
        self.score = Score(limits.score_decay_points_per_s)
        self.banned_until_ms = 0
        self.rates = {
            kind: RateLimit(
                msgs_per_s=limits.of(kind).rate_msgs_per_s,
                burst_msgs=limits.of(kind).burst_msgs,
                bytes_per_s=limits.of(kind).rate_bytes_per_s,
                burst_bytes=limits.of(kind).burst_bytes,
                now_ms=now_ms,
            )
            for kind in Kind
        }
        self.has_txs = BoundedSet(limits.known_txs_per_peer)
        self.sent_txs = BoundedSet(limits.known_txs_per_peer)
        self.traffic = Traffic()
        self.pending_sync: list[_PendingSync] = []

    @property
    def connected(self) -> bool:
        return self.link is not None and not self.link.stopping

    def reachable(self, now_ms: int, grace_ms: int) -> bool:
        """Connected, or lost its link less than ``grace_ms`` ago (and not banned)."""
        if self.connected:
            return True
        if self.banned_until_ms > now_ms or self.down_since_ms is None:
            return False
        return now_ms - self.down_since_ms < grace_ms


def _bound_buffers(sock: socket.socket, size_bytes: int) -> None:
    """Cap the kernel's send and receive buffers (``Limits.socket_buffer_bytes``)."""
    if size_bytes:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size_bytes)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size_bytes)


def _dial_socket_factory(size_bytes: int) -> Callable[[Any], socket.socket]:
    """aiohttp's ``socket_factory``: dialled peer sockets with bounded buffers."""

    def make(addr_info: Any) -> socket.socket:
        family, kind, proto, _, _ = addr_info
        sock = socket.socket(family=family, type=kind, proto=proto)
        _bound_buffers(sock, size_bytes)
        return sock

    return make


def _listen_socket(host: str, port: int, buffer_bytes: int = 0) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        _bound_buffers(sock, buffer_bytes)  # accepted connections inherit them
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class PeerNetwork:
    """The peer layer of one node (see the module docstring).

    ``clock`` and ``rng`` (redial jitter) are injectable for deterministic tests.
    Sending (``broadcast_consensus``, ``send_consensus``, ``send_sync``,
    ``gossip_tx``) is synchronous and never waits for a peer.
    """

    def __init__(
        self,
        config: PeerConfig,
        handler: PeerHandler,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        known_tx: Callable[[bytes], Tx | None] | None = None,
    ) -> None:
        """``known_tx`` (a transaction's hash -> the transaction, if the node holds it,
        e.g. in its mempool) lets a proposal's transactions be reused instead of
        decoded again; they are the same bytes, so the message is the same."""
        self._known_tx = known_tx
        self._config = config
        self._limits = config.limits
        self._handler = handler
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()  # noqa: S311 - jitter only
        self._own_key = config.node_key.public_key
        self._policy = PeerPolicy(
            chain_id=config.chain_id,
            node_key=config.node_key,
            allowed=config.accepted_keys,
            max_clock_skew_ms=self._limits.max_clock_skew_ms,
        )
        now = self._clock.monotonic_ms()
        self._peers: dict[bytes, _Peer] = {
            key: _Peer(PeerInfo(key, config.validators.get(key)), config, now)
            for key in sorted(config.accepted_keys)
            if key != self._own_key
        }
        self._by_validator = {v: n for n, v in config.validators.items() if n != self._own_key}
        self._validator_nodes = tuple(sorted(self._by_validator.values()))
        self._targets = [_DialTarget(p) for p in config.persistent_peers]
        self._seen = BoundedSet(self._limits.seen_cache_txs)
        #: (peer, payload, hash) of received transactions not validated yet
        self._intake: deque[tuple[_Peer, bytes, bytes]] = deque()
        self._intake_hashes: set[bytes] = set()
        self._intake_ready = asyncio.Event()
        self._counters = Counters()
        self._own_hellos: dict[bytes, _DialTarget] = {}
        self._log_budget: dict[str, TokenBucket] = {}
        self._pending_handshakes = 0
        self._pending_by_ip: Counter[str] = Counter()
        self._links: set[Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._port = 0
        self._started = False
        self._stopping = False

    # ------------------------------------------------------------------ lifecycle

    @property
    def node_key(self) -> bytes:
        return self._own_key

    @property
    def listen_port(self) -> int:
        """The bound port (useful when the configuration asked for port 0)."""
        return self._port

    async def start(self) -> None:
        """Listen, then dial every persistent peer."""
        if self._started:
            raise RuntimeError("the peer network was already started")
        self._started = True
        limits = self._limits
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=0, socket_factory=_dial_socket_factory(limits.socket_buffer_bytes)
            ),
            timeout=aiohttp.ClientTimeout(total=None, connect=limits.handshake_timeout_ms / 1000),
        )
        app = web.Application()
        app.router.add_get(WS_PATH, self._handle)
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            shutdown_timeout=limits.close_timeout_ms / 1000,
        )
        await self._runner.setup()
        try:
            sock = _listen_socket(
                self._config.listen_host,
                self._config.listen_port,
                self._limits.socket_buffer_bytes,
            )
            self._port = sock.getsockname()[1]
            await web.SockSite(self._runner, sock, ssl_context=self._config.server_ssl).start()
        except BaseException:
            await self._runner.cleanup()
            await self._session.close()
            raise
        log.info("p2p listening on %s:%d%s", self._config.listen_host, self._port, WS_PATH)
        for target in self._targets:
            self._spawn(self._dial_loop(target))
        self._spawn(self._housekeeping())
        self._spawn(self._intake_loop())

    async def stop(self) -> None:
        """Close every link, stop dialing and listening. Idempotent."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        links = list(self._links)
        for link in links:
            link.stop("shutdown")
        if links:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(2 * self._limits.close_timeout_ms / 1000 + 1):
                    await asyncio.gather(*(link.finished.wait() for link in links))
        for peer in self._peers.values():
            self._fail_pending(peer)
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ sending

    def broadcast_consensus(self, message: ConsensusMessage) -> int:
        """Queue ``message`` to every other validator's node; how many took it."""
        item = self._outgoing(Kind.CONSENSUS, message, CONSENSUS_TYPES)
        return sum(
            self._enqueue(self._peers[key], Kind.CONSENSUS, item) for key in self._validator_nodes
        )

    def send_consensus(self, key: bytes, message: ConsensusMessage) -> bool:
        """Queue ``message`` to one peer (by validator key or node key)."""
        item = self._outgoing(Kind.CONSENSUS, message, CONSENSUS_TYPES)
        return self._enqueue(self._resolve(key), Kind.CONSENSUS, item)

    def send_sync(self, key: bytes, message: SyncMessage) -> bool:
        """Queue a sync message to one peer (by validator key or node key).

        A ``BlockRequest`` is remembered until ``sync_timeout_ms``: only then is the
        peer's ``BlockResponse`` accepted (and handed to ``on_sync``).
        """
        item = self._outgoing(Kind.SYNC, message, SYNC_TYPES)
        peer = self._resolve(key)
        if not isinstance(message, BlockRequest):
            return self._enqueue(peer, Kind.SYNC, item)
        now = self._clock.monotonic_ms()
        if not self._may_request(peer, now):
            return False
        if not self._enqueue(peer, Kind.SYNC, item):
            return False
        deadline = now + self._limits.sync_timeout_ms
        peer.pending_sync.append(_PendingSync(message, deadline, None))
        return True

    async def request_blocks(
        self, key: bytes, request: BlockRequest, *, timeout_ms: int | None = None
    ) -> BlockResponse:
        """Ask one peer for blocks and wait for its verified answer.

        Raises :class:`SyncTimeout` or :class:`PeerUnavailable`. The answer goes
        to the caller only (not to ``on_sync``).
        """
        peer = self._resolve(key)
        item = self._outgoing(Kind.SYNC, request, SYNC_TYPES)
        timeout = timeout_ms if timeout_ms is not None else self._limits.sync_timeout_ms
        now = self._clock.monotonic_ms()
        if not self._may_request(peer, now):
            raise SyncError(f"too many open block requests to {peer.info.node_key.hex()[:16]}")
        future: asyncio.Future[BlockResponse] = asyncio.get_running_loop().create_future()
        entry = _PendingSync(request, now + timeout, future)
        if not self._enqueue(peer, Kind.SYNC, item):
            raise PeerUnavailable(f"cannot send to {peer.info.node_key.hex()[:16]}")
        peer.pending_sync.append(entry)
        try:
            async with asyncio.timeout(timeout / 1000):
                return await future
        except TimeoutError:
            self._counters.sync_timeouts += 1
            raise SyncTimeout(
                f"no block response from {peer.info.node_key.hex()[:16]} in {timeout} ms"
            ) from None
        finally:
            if entry in peer.pending_sync:
                peer.pending_sync.remove(entry)

    def gossip_tx(self, tx: Tx, origin: bytes | None = None, *, validators: bool = True) -> int:
        """Queue ``tx`` to every connected peer that is not known to have it
        (``origin``, the node it came from, has it); how many took it.
        ``validators=False`` leaves out validators' nodes (see the node's relay rule)."""
        payload = tx.encode()
        if len(payload) > self._limits.tx.max_payload_bytes:
            raise ValueError(f"transaction of {len(payload)} bytes exceeds the tx limit")
        tx_hash = tx.hash
        self._seen.add(tx_hash)
        item = Outgoing("tx", payload, tx_hash)
        queued = 0
        now = self._clock.monotonic_ms()
        grace = self._limits.reconnect_grace_ms
        for key, peer in self._peers.items():
            if key == origin or not peer.reachable(now, grace):
                continue
            if not validators and peer.info.validator_key is not None:
                continue
            if tx_hash in peer.has_txs or tx_hash in peer.sent_txs:
                continue
            if self._enqueue(peer, Kind.TX, item):
                peer.sent_txs.add(tx_hash)
                queued += 1
        return queued

    def _outgoing(self, kind: Kind, message: Message, allowed: tuple[type, ...]) -> Outgoing:
        if not isinstance(message, allowed):
            raise TypeError(f"{type(message).__name__} does not travel as {kind.name}")
        payload = encode_message(message)
        limit = self._limits.of(kind).max_payload_bytes
        if len(payload) > limit:
            raise ValueError(f"{message_label(message)} of {len(payload)} bytes exceeds {limit}")
        return Outgoing(message_label(message), payload)

    def _resolve(self, key: bytes) -> _Peer:
        peer = self._peers.get(key)
        if peer is None:
            node_key = self._by_validator.get(key)
            if node_key is None:
                raise KeyError(f"{key.hex()[:16]} is neither a peer's node key nor a validator key")
            peer = self._peers[node_key]
        return peer

    def _enqueue(self, peer: _Peer, kind: Kind, item: Outgoing) -> bool:
        now = self._clock.monotonic_ms()
        if not peer.reachable(now, self._limits.reconnect_grace_ms):
            self._drop(kind, "not_connected")
            return False
        if not peer.queues.push(kind, item, now):
            self._drop(kind, "queue_full")
            self._check_congestion(peer, now)
            return False
        peer.wake.set()
        return True

    def _check_congestion(self, peer: _Peer, now_ms: int) -> None:
        since = peer.queues.congested_since_ms
        link = peer.link
        if since is None or link is None or link.stopping:
            return
        if now_ms - since >= self._limits.slow_peer_grace_ms:
            log.warning(
                "peer %s: send queue full for %d ms; disconnecting a slow peer",
                peer.info.node_key.hex()[:16],
                now_ms - since,
            )
            link.stop("slow")

    def _may_request(self, peer: _Peer, now_ms: int) -> bool:
        self._expire_sync(peer, now_ms)
        if len(peer.pending_sync) >= self._limits.max_sync_requests_per_peer:
            self._drop(Kind.SYNC, "too_many_requests")
            return False
        return True

    def _drop(self, kind: Kind, reason: str, count: int = 1) -> None:
        self._counters.drops[(kind.name.lower(), reason)] += count

    # ------------------------------------------------------------------ queries

    def is_connected(self, key: bytes) -> bool:
        """Whether the peer (by node or validator key) has a live link."""
        try:
            return self._resolve(key).connected
        except KeyError:
            return False

    def connected_peers(self) -> tuple[PeerInfo, ...]:
        return tuple(p.info for p in self._peers.values() if p.connected)

    def ban(self, node_key: bytes, seconds: int | None = None, reason: str = "operator") -> None:
        """Disconnect and refuse a peer for ``seconds`` (default ``ban_seconds``)."""
        self._ban(self._resolve(node_key), reason, seconds)

    def stats(self) -> NetworkStats:
        now = self._clock.monotonic_ms()
        c = self._counters
        peers = []
        for peer in self._peers.values():
            link = peer.link if peer.connected else None
            depth = {kind.name.lower(): peer.queues.depth(kind) for kind in Kind}
            peers.append(
                PeerStats(
                    node_key=peer.info.node_key,
                    validator_key=peer.info.validator_key,
                    connected=link is not None,
                    role=None if link is None else link.role.name.lower(),
                    remote_address=None if link is None else link.remote,
                    score_points=peer.score.value(now),
                    banned_for_ms=max(0, peer.banned_until_ms - now),
                    queue_msgs=frozen({k: v[0] for k, v in depth.items()}),
                    queue_bytes=frozen({k: v[1] for k, v in depth.items()}),
                    messages_sent=frozen(peer.traffic.sent),
                    messages_received=frozen(peer.traffic.received),
                    bytes_sent=frozen(peer.traffic.bytes_sent),
                    bytes_received=frozen(peer.traffic.bytes_received),
                )
            )
        return NetworkStats(
            peers_connected=sum(p.connected for p in peers),
            peers=tuple(peers),
            messages_sent=frozen(c.traffic.sent),
            messages_received=frozen(c.traffic.received),
            bytes_sent=frozen(c.traffic.bytes_sent),
            bytes_received=frozen(c.traffic.bytes_received),
            frames_sent=c.frames_sent,
            frames_received=c.frames_received,
            wire_bytes_sent=c.wire_bytes_sent,
            wire_bytes_received=c.wire_bytes_received,
            drops=frozen(c.drops),
            penalties=frozen(c.penalties),
            disconnects=frozen(c.disconnects),
            handshake_failures=frozen(c.handshake_failures),
            handshakes_ok=c.handshakes_ok,
            dial_failures=c.dial_failures,
            bans=c.bans,
            peers_banned=sum(p.banned_for_ms > 0 for p in peers),
            handler_errors=c.handler_errors,
            sync_timeouts=c.sync_timeouts,
        )

    # ------------------------------------------------------------------ connections

    def _admit(self, node_key: bytes) -> str | None:
        if self._stopping:
            return "shutdown"
        peer = self._peers.get(node_key)
        if peer is not None and peer.banned_until_ms > self._clock.monotonic_ms():
            return "banned"
        return None

    def _refused(self, failure: HandshakeFailed, remote: str, role: Role) -> None:
        self._counters.handshake_failures[failure.reason] += 1
        if failure.reason == "self" and failure.peer_hello is not None:
            # We are the listening end of one of our own dials: tell that dial.
            target = self._own_hellos.get(failure.peer_hello)
            if target is not None:
                target.is_self = True
        self._log(
            logging.WARNING,
            f"refused:{failure.reason}",
            "handshake as %s with %s refused (%s): %s",
            role.name.lower(),
            remote,
            failure.reason,
            failure.detail,
        )

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """The websocket endpoint: admit, handshake, then serve the link."""
        ip = request.remote or "unknown"
        peername = request.transport.get_extra_info("peername") if request.transport else None
        remote = f"{ip}:{peername[1]}" if isinstance(peername, tuple) else ip
        limits = self._limits
        if self._stopping:
            return web.Response(status=503, text="shutting down")
        ws: web.WebSocketResponse = web.WebSocketResponse(
            max_msg_size=limits.max_frame_bytes,
            compress=False,
            heartbeat=limits.heartbeat_ms / 1000 if limits.heartbeat_ms else None,
            autoping=True,
            timeout=limits.close_timeout_ms / 1000,
        )
        if not ws.can_prepare(request):
            return web.Response(status=426, text="websocket upgrade required")
        if (
            self._pending_handshakes >= limits.max_pending_handshakes
            or self._pending_by_ip[ip] >= limits.max_pending_handshakes_per_ip
        ):
            self._refused(
                HandshakeFailed("busy", "too many handshakes in progress"), remote, Role.LISTENER
            )
            return web.Response(status=503, text="busy")
        self._pending_handshakes += 1
        self._pending_by_ip[ip] += 1
        handshake = Handshake(self._policy, Role.LISTENER, self._clock.wall_ms())
        try:
            async with asyncio.timeout(limits.handshake_timeout_ms / 1000):
                await ws.prepare(request)
                session = await run_handshake(
                    ws,
                    handshake,
                    handshake.start(),
                    clock=self._clock,
                    max_msg_bytes=limits.max_handshake_msg_bytes,
                    admit=self._admit,
                )
        except HandshakeFailed as failure:
            self._refused(failure, remote, Role.LISTENER)
            await close_ws(ws, "refused", limits.close_timeout_ms)
            return ws
        except TimeoutError:
            self._refused(
                HandshakeFailed("timeout", f"not done in {limits.handshake_timeout_ms} ms"),
                remote,
                Role.LISTENER,
            )
            await close_ws(ws, "refused", limits.close_timeout_ms)
            return ws
        finally:
            self._pending_handshakes -= 1
            self._pending_by_ip[ip] -= 1
            if self._pending_by_ip[ip] <= 0:
                del self._pending_by_ip[ip]
        await self._serve(session, ws, remote)
        return ws

    async def _dial_loop(self, target: _DialTarget) -> None:
        peer = self._peers[target.node_key]
        limits = self._limits
        attempt = 0
        while not self._stopping:
            await peer.down.wait()
            banned_ms = peer.banned_until_ms - self._clock.monotonic_ms()
            if banned_ms > 0:
                await asyncio.sleep(banned_ms / 1000)
                continue
            lived_ms = await self._dial_once(target)
            if target.is_self:
                log.warning("%s is this node's own address: no longer dialing it", target.address)
                return
            if lived_ms is not None and lived_ms >= limits.backoff_reset_after_ms:
                attempt = 0
            delay = backoff_ms(
                attempt, base_ms=limits.backoff_base_ms, cap_ms=limits.backoff_cap_ms, rng=self._rng
            )
            attempt += 1
            await asyncio.sleep(delay / 1000)

    async def _dial_once(self, target: _DialTarget) -> int | None:
        """One dial; how long the resulting link lived (ms), or None if none formed."""
        assert self._session is not None  # set by start()
        limits = self._limits
        host, port = split_address(target.address)
        scheme = "wss" if self._config.client_ssl is not None else "ws"
        url = f"{scheme}://{host}:{port}{WS_PATH}"
        handshake = Handshake(
            self._policy, Role.DIALER, self._clock.wall_ms(), expected_peer=target.node_key
        )
        initial = handshake.start()
        hello = initial[0]
        self._own_hellos[hello] = target
        ws: aiohttp.ClientWebSocketResponse | None = None
        try:
            async with asyncio.timeout(limits.handshake_timeout_ms / 1000):
                ws = await self._session.ws_connect(
                    url,
                    max_msg_size=limits.max_frame_bytes,
                    compress=0,
                    heartbeat=limits.heartbeat_ms / 1000 if limits.heartbeat_ms else None,
                    autoping=True,
                    timeout=aiohttp.ClientWSTimeout(
                        ws_receive=None, ws_close=limits.close_timeout_ms / 1000
                    ),
                    ssl=self._config.client_ssl if self._config.client_ssl is not None else True,
                )
                session = await run_handshake(
                    ws,
                    handshake,
                    initial,
                    clock=self._clock,
                    max_msg_bytes=limits.max_handshake_msg_bytes,
                    admit=self._admit,
                )
        except HandshakeFailed as failure:
            if failure.reason == "self":
                target.is_self = True
            self._refused(failure, target.address, Role.DIALER)
            if ws is not None:
                await close_ws(ws, "refused", limits.close_timeout_ms)
            return None
        except TimeoutError:
            if ws is None:
                self._counters.dial_failures += 1
                log.info("dial %s: timed out connecting", target.address)
            else:
                self._refused(
                    HandshakeFailed("timeout", f"not done in {limits.handshake_timeout_ms} ms"),
                    target.address,
                    Role.DIALER,
                )
                await close_ws(ws, "refused", limits.close_timeout_ms)
            return None
        except (aiohttp.ClientError, OSError) as exc:
            self._counters.dial_failures += 1
            log.info("dial %s failed: %s", target.address, exc or type(exc).__name__)
            if ws is not None:
                await close_ws(ws, "refused", limits.close_timeout_ms)
            return None
        finally:
            self._own_hellos.pop(hello, None)
        started = self._clock.monotonic_ms()
        await self._serve(session, ws, target.address)
        return self._clock.monotonic_ms() - started

    async def _serve(self, session: Session, ws: WebSocket, remote: str) -> None:
        """Attach an authenticated connection to its peer and run it to the end."""
        limits = self._limits
        self._counters.handshakes_ok += 1
        peer = self._peers[session.peer_key]
        link = Link(
            ws,
            session,
            remote=remote,
            queues=peer.queues,
            wake=peer.wake,
            limits=limits,
            counters=self._counters,
            deliver=self._deliver,
            on_sent=lambda kind, item: self._on_sent(peer, item),
            skip=lambda item: item.tx_hash in peer.has_txs,
            on_skipped=lambda n: self._drop(Kind.TX, "peer_has_it", n),
        )
        if not self._attach(peer, link):
            log.info("peer %s: duplicate connection, closing it", peer.info.node_key.hex()[:16])
            link.stop("duplicate")  # still read what the peer may have sent on it
        self._links.add(link)
        reason = "shutdown"
        try:
            reason = await link.run()
        finally:
            self._links.discard(link)
            self._detach(peer, link, reason)

    def _attach(self, peer: _Peer, link: Link) -> bool:
        """Make ``link`` the peer's link, unless the one it has should win.

        Two links with the same dialer: the newer wins (the older is stale, e.g.
        the peer restarted). Opposite dialers (a simultaneous dial): the link
        dialed by the smaller node key wins, which both ends compute alike.
        """
        existing = peer.link
        if existing is not None and not existing.stopping:
            if existing.role is not link.role:
                preferred = min(self._own_key, peer.info.node_key)
                dialer = self._own_key if link.role is Role.DIALER else peer.info.node_key
                if dialer != preferred:
                    return False
            existing.stop("replaced")
        peer.link = link
        peer.down.clear()
        peer.down_since_ms = None
        log.info(
            "peer %s connected (%s, we are the %s)",
            peer.info.node_key.hex()[:16],
            link.remote,
            link.role.name.lower(),
        )
        if existing is None:
            self._call(self._handler.on_peer_connected, peer.info)
        return True

    def _detach(self, peer: _Peer, link: Link, reason: str) -> None:
        self._counters.disconnects[reason] += 1
        if reason in FRAME_FAULTS:
            self._penalize(peer, reason, self._limits.penalty_frame_points)
        if peer.link is not link:
            return  # replaced, or a duplicate that never was the peer's link
        peer.link = None
        peer.down.set()
        if reason in ("slow", "send_timeout", "banned"):
            self._clear_queues(peer)  # what it could not take, it will not get
        else:
            peer.down_since_ms = self._clock.monotonic_ms()  # a new link may take them
        peer.has_txs = BoundedSet(self._limits.known_txs_per_peer)
        peer.sent_txs = BoundedSet(self._limits.known_txs_per_peer)
        self._fail_pending(peer)
        log.info("peer %s disconnected: %s", peer.info.node_key.hex()[:16], reason)
        self._call(self._handler.on_peer_disconnected, peer.info)

    def _clear_queues(self, peer: _Peer) -> None:
        for kind in Kind:
            waiting = peer.queues.depth(kind)[0]
            if waiting:
                self._drop(kind, "disconnected", waiting)
        peer.queues.clear()
        peer.down_since_ms = None

    def _fail_pending(self, peer: _Peer) -> None:
        for entry in peer.pending_sync:
            if entry.future is not None and not entry.future.done():
                entry.future.set_exception(PeerUnavailable("the peer disconnected"))
        peer.pending_sync.clear()

    # ------------------------------------------------------------------ misbehaviour

    def _penalize(self, peer: _Peer, reason: str, points: float) -> None:
        self._counters.penalties[reason] += 1
        now = self._clock.monotonic_ms()
        total = peer.score.add(points, now)
        self._log(
            logging.INFO,
            f"penalty:{reason}",
            "peer %s penalised for %s (+%g, score %.1f)",
            peer.info.node_key.hex()[:16],
            reason,
            points,
            total,
        )
        if total >= self._limits.ban_score_points:
            self._ban(peer, reason, None)

    def _ban(self, peer: _Peer, reason: str, seconds: int | None) -> None:
        duration_s = self._limits.ban_seconds if seconds is None else seconds
        peer.banned_until_ms = self._clock.monotonic_ms() + duration_s * 1000
        peer.score.reset()
        self._counters.bans += 1
        log.warning(
            "peer %s banned for %d s (%s)", peer.info.node_key.hex()[:16], duration_s, reason
        )
        if peer.link is not None:
            peer.link.stop("banned")
        else:
            self._clear_queues(peer)

    def _misbehaved(self, peer: _Peer, kind: Kind, reason: str, detail: object) -> None:
        self._drop(kind, reason)
        self._log(
            logging.INFO,
            f"bad:{reason}",
            "peer %s sent a bad %s message: %s",
            peer.info.node_key.hex()[:16],
            kind.name,
            detail,
        )
        self._penalize(peer, reason, self._limits.penalty_invalid_points)

    def _log(self, level: int, key: str, message: str, *args: object) -> None:
        """Log at ``level`` about once a second per ``key`` (bursts of 20), else at
        DEBUG: a hostile peer must not be able to flood the operator's logs."""
        now = self._clock.monotonic_ms()
        budget = self._log_budget.get(key)
        if budget is None:
            budget = self._log_budget[key] = TokenBucket(1.0, 20, now)
        log.log(level if budget.take(1, now) else logging.DEBUG, message, *args)

    def _call(self, fn: Callable[P, None], *args: P.args, **kwargs: P.kwargs) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:
            self._counters.handler_errors += 1
            log.exception("handler %s raised", getattr(fn, "__name__", fn))

    # ------------------------------------------------------------------ receiving

    def _deliver(self, link: Link, kind: Kind, payload: bytes) -> None:
        """One framed message from an authenticated peer: limit, validate, dispatch."""
        peer = self._peers[link.peer_key]
        if peer.banned_until_ms > self._clock.monotonic_ms():
            return
        if not peer.rates[kind].allow(len(payload), self._clock.monotonic_ms()):
            self._drop(kind, "rate_limited")
            self._penalize(peer, "flood", self._limits.penalty_flood_points)
            return
        try:
            if kind is Kind.TX:
                self._receive_tx(peer, payload)
            elif kind is Kind.CONSENSUS:
                self._receive_consensus(peer, payload)
            else:
                self._receive_sync(peer, payload)
        except Exception:
            # Our own validation path failed unexpectedly: drop the message, keep going.
            self._drop(kind, "internal_error")
            log.exception(
                "peer %s: validating a %s message failed", link.peer_key.hex()[:16], kind.name
            )

    def _received(self, peer: _Peer, label: str, size: int) -> None:
        peer.traffic.on_received(label, size)
        self._counters.traffic.on_received(label, size)

    def _on_sent(self, peer: _Peer, item: Outgoing) -> None:
        peer.traffic.on_sent(item.label, len(item.payload))
        self._counters.traffic.on_sent(item.label, len(item.payload))

    def _receive_tx(self, peer: _Peer, payload: bytes) -> None:
        """Note a transaction and queue it for :meth:`_intake_loop`; cheap on purpose."""
        tx_hash = sha256(payload)  # the tx hash, since a decoded tx is canonical
        peer.has_txs.add(tx_hash)
        self._received(peer, "tx", len(payload))
        if tx_hash in self._seen or tx_hash in self._intake_hashes:
            self._drop(Kind.TX, "duplicate")
            return
        if len(self._intake) >= self._limits.max_intake_txs:
            self._drop(Kind.TX, "intake_full")
            return
        self._intake.append((peer, payload, tx_hash))
        self._intake_hashes.add(tx_hash)
        self._intake_ready.set()

    async def _intake_loop(self) -> None:
        """Validate queued transactions in time slices, yielding to the event loop."""
        slice_s = self._limits.intake_slice_ms / 1000
        intake = self._intake
        while True:
            if not intake:
                self._intake_ready.clear()
                await self._intake_ready.wait()
                continue
            deadline = time.perf_counter() + slice_s
            while intake and time.perf_counter() < deadline:
                peer, payload, tx_hash = intake.popleft()
                self._intake_hashes.discard(tx_hash)
                if peer.banned_until_ms > self._clock.monotonic_ms():
                    continue
                try:
                    self._validate_tx(peer, payload, tx_hash)
                except Exception:
                    self._drop(Kind.TX, "internal_error")
                    log.exception(
                        "peer %s: validating a transaction failed", peer.info.node_key.hex()[:16]
                    )
            await asyncio.sleep(0)

    def _validate_tx(self, peer: _Peer, payload: bytes, tx_hash: bytes) -> None:
        if tx_hash in self._seen:
            self._drop(Kind.TX, "duplicate")
            return
        try:
            tx = Tx.decode(payload)
        except LedgerError as exc:
            self._misbehaved(peer, Kind.TX, "malformed", exc)
            return
        if tx.chain_id != self._config.chain_id:
            self._misbehaved(peer, Kind.TX, "invalid", f"transaction for chain {tx.chain_id!r}")
            return
        if not tx.verify_signature():
            self._misbehaved(peer, Kind.TX, "invalid", "transaction signature does not verify")
            return
        self._seen.add(tx_hash)
        self._call(self._handler.on_tx, peer.info.node_key, tx)

    def _decode(self, peer: _Peer, kind: Kind, payload: bytes) -> Message | None:
        try:
            return decode_message(
                payload, max_bytes=self._limits.of(kind).max_payload_bytes, known_txs=self._known_tx
            )
        except LedgerError as exc:
            self._misbehaved(peer, kind, "malformed", exc)
            return None

    def _verify(self, peer: _Peer, kind: Kind, message: Message) -> bool:
        try:
            verify_message(message, self._config.chain_id, self._config.validator_keys)
        except LedgerError as exc:
            self._misbehaved(peer, kind, "invalid", exc)
            return False
        return True

    def _receive_consensus(self, peer: _Peer, payload: bytes) -> None:
        validator = peer.info.validator_key
        if validator is None:
            self._misbehaved(
                peer, Kind.CONSENSUS, "not_validator", "consensus from a non-validator"
            )
            return
        message = self._decode(peer, Kind.CONSENSUS, payload)
        if message is None:
            return
        if not isinstance(message, CONSENSUS_TYPES):
            self._misbehaved(peer, Kind.CONSENSUS, "wrong_kind", type(message).__name__)
            return
        if not self._verify(peer, Kind.CONSENSUS, message):
            return
        self._received(peer, message_label(message), len(payload))
        self._call(self._handler.on_consensus, validator, message)

    def _receive_sync(self, peer: _Peer, payload: bytes) -> None:
        message = self._decode(peer, Kind.SYNC, payload)
        if message is None:
            return
        if not isinstance(message, SYNC_TYPES):
            self._misbehaved(peer, Kind.SYNC, "wrong_kind", type(message).__name__)
            return
        if isinstance(message, BlockResponse):
            self._expire_sync(peer, self._clock.monotonic_ms())
            if not peer.pending_sync:
                self._unsolicited(peer)
                return
        if not self._verify(peer, Kind.SYNC, message):
            return
        self._received(peer, message_label(message), len(payload))
        if isinstance(message, BlockResponse):
            entry = next((e for e in peer.pending_sync if _answers(e.request, message)), None)
            if entry is None:
                self._unsolicited(peer)
                return
            peer.pending_sync.remove(entry)
            if entry.future is not None:
                if not entry.future.done():
                    entry.future.set_result(message)
                return
        self._call(self._handler.on_sync, peer.info, message)

    def _unsolicited(self, peer: _Peer) -> None:
        self._drop(Kind.SYNC, "unsolicited")
        self._penalize(peer, "unsolicited", self._limits.penalty_unsolicited_points)

    def _expire_sync(self, peer: _Peer, now_ms: int) -> None:
        """Forget fire-and-forget block requests past their deadline."""
        expired = [e for e in peer.pending_sync if e.future is None and e.deadline_ms <= now_ms]
        for entry in expired:
            peer.pending_sync.remove(entry)
            self._counters.sync_timeouts += 1

    async def _housekeeping(self) -> None:
        interval_s = self._limits.housekeeping_interval_ms / 1000
        while True:
            await asyncio.sleep(interval_s)
            now = self._clock.monotonic_ms()
            grace = self._limits.reconnect_grace_ms
            for peer in self._peers.values():
                if peer.link is not None:
                    self._check_congestion(peer, now)
                elif peer.down_since_ms is not None and now - peer.down_since_ms >= grace:
                    self._clear_queues(peer)
                if peer.pending_sync:
                    self._expire_sync(peer, now)


def _answers(request: BlockRequest, response: BlockResponse) -> bool:
    """Whether ``response`` answers ``request`` (an empty one means "I have none")."""
    if not response.blocks:
        return True
    return (
        response.blocks[0].height == request.from_height and len(response.blocks) <= request.count
    )
