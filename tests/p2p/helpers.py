"""Builders for the peer-layer tests: keys, configs, recorders, a raw peer."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import WSMsgType

from ledger.genesis import ConsensusParams
from ledger.handshake import Role
from ledger.keys import SigningKey
from ledger.types import Block, CommitCertificate, Tx, Vote, VoteKind, sha256
from p2p.config import Limits, PeerAddress, PeerConfig
from p2p.frames import Kind, encode_batch
from p2p.link import WS_PATH
from p2p.network import ConsensusMessage, PeerInfo, PeerNetwork, SyncMessage
from p2p.secure import Handshake, PeerPolicy, SecureChannel, Session

CHAIN = "radledger-p2p-test"


def free_ports(n: int) -> list[int]:
    """Ports on 127.0.0.1 that were free a moment ago (the OS picks them)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def fast_limits(**changes: Any) -> Limits:
    """Default limits with quick redials, for tests."""
    base = Limits.for_params(ConsensusParams())
    defaults: dict[str, Any] = {
        "backoff_base_ms": 40,
        "backoff_cap_ms": 400,
        "backoff_reset_after_ms": 1_000,
        "housekeeping_interval_ms": 50,
    }
    defaults.update(changes)
    return dataclasses.replace(base, **defaults)


@dataclass(frozen=True, slots=True)
class Member:
    """One validator of a test network: its keys and its port."""

    validator: SigningKey
    node: SigningKey
    port: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def make_members(n: int, seed: int = 0) -> list[Member]:
    ports = free_ports(n)
    return [
        Member(
            SigningKey(bytes([seed + i + 1]) * 32),
            SigningKey(bytes([seed + i + 101]) * 32),
            ports[i],
        )
        for i in range(n)
    ]


def config_for(
    members: Sequence[Member],
    index: int,
    *,
    dial: Iterable[int] | None = None,
    limits: Limits | None = None,
    chain_id: str = CHAIN,
    allowed: Iterable[bytes] = (),
    **extra: Any,
) -> PeerConfig:
    """Config of ``members[index]``; it dials ``dial`` (default: every other member)."""
    me = members[index]
    targets = [i for i in range(len(members)) if i != index] if dial is None else list(dial)
    return PeerConfig(
        chain_id=chain_id,
        node_key=me.node,
        listen_host="127.0.0.1",
        listen_port=me.port,
        persistent_peers=tuple(
            PeerAddress(members[i].node.public_key, members[i].address) for i in targets
        ),
        validators={m.node.public_key: m.validator.public_key for m in members},
        validator_keys=tuple(m.validator.public_key for m in members),
        allowed_node_keys=frozenset(allowed),
        limits=limits if limits is not None else fast_limits(),
        **extra,
    )


@dataclass
class Recorder:
    """A PeerHandler that records everything it is given."""

    consensus: list[tuple[bytes, ConsensusMessage]] = field(default_factory=list)
    txs: list[tuple[bytes, Tx]] = field(default_factory=list)
    sync: list[tuple[PeerInfo, SyncMessage]] = field(default_factory=list)
    ups: list[PeerInfo] = field(default_factory=list)
    downs: list[PeerInfo] = field(default_factory=list)
    arrival: dict[bytes, float] = field(default_factory=dict)
    on_tx_hook: Callable[[bytes, Tx], None] | None = None
    on_consensus_hook: Callable[[bytes, ConsensusMessage], None] | None = None
    on_sync_hook: Callable[[PeerInfo, SyncMessage], None] | None = None

    def on_consensus(self, sender: bytes, message: ConsensusMessage) -> None:
        self.consensus.append((sender, message))
        if isinstance(message, Vote):
            self.arrival[message.block_hash] = time.perf_counter()
        if self.on_consensus_hook is not None:
            self.on_consensus_hook(sender, message)

    def on_tx(self, sender: bytes, tx: Tx) -> None:
        self.txs.append((sender, tx))
        if self.on_tx_hook is not None:
            self.on_tx_hook(sender, tx)

    def on_sync(self, sender: PeerInfo, message: SyncMessage) -> None:
        self.sync.append((sender, message))
        if self.on_sync_hook is not None:
            self.on_sync_hook(sender, message)

    def on_peer_connected(self, peer: PeerInfo) -> None:
        self.ups.append(peer)

    def on_peer_disconnected(self, peer: PeerInfo) -> None:
        self.downs.append(peer)


#: The networks of the running test: described in the failure message when
#: :func:`eventually` times out, so a flaky failure says who was linked to whom.
CURRENT_NETWORKS: list[PeerNetwork] = []


async def eventually(
    condition: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(
                f"timed out after {timeout_s} s waiting for {what}\n{describe(CURRENT_NETWORKS)}"
            )
        await asyncio.sleep(0.01)


def vote(member: Member, height: int, tag: bytes = b"", chain_id: str = CHAIN) -> Vote:
    return Vote.create(
        member.validator,
        chain_id=chain_id,
        kind=VoteKind.PREPARE,
        height=height,
        view=0,
        block_hash=sha256(tag + height.to_bytes(8, "big")),
    )


def tx(nonce: int, chain_id: str = CHAIN, signer: SigningKey | None = None) -> Tx:
    key = signer if signer is not None else SigningKey(b"\x42" * 32)
    return Tx.create(
        key,
        chain_id=chain_id,
        kind="access.log",
        nonce=nonce,
        body={"dataset": "ds-1", "n": nonce},
    )


async def start_all(nets: Iterable[PeerNetwork]) -> None:
    for net in nets:
        await net.start()


async def stop_all(nets: Iterable[PeerNetwork]) -> None:
    for net in nets:
        await net.stop()


def describe(nets: Sequence[PeerNetwork]) -> str:
    """Who is connected to whom, in which role: for failure messages."""
    names = {net.node_key: f"n{i}" for i, net in enumerate(nets)}
    lines = []
    for net in nets:
        stats = net.stats()
        links = [
            f"{names.get(p.node_key, p.node_key.hex()[:8])}:{p.role or '-'}" for p in stats.peers
        ]
        lines.append(
            f"{names[net.node_key]} links={links} disconnects={dict(stats.disconnects)} "
            f"refused={dict(stats.handshake_failures)} dial_failures={stats.dial_failures} "
            f"drops={dict(stats.drops)} sent={dict(stats.messages_sent)} "
            f"recv={dict(stats.messages_received)}"
        )
    return "\n".join(lines)


def full_mesh(nets: Sequence[PeerNetwork]) -> Callable[[], bool]:
    return lambda: all(net.stats().peers_connected == len(nets) - 1 for net in nets)


class RawPeer:
    """A hand-driven peer: does the handshake itself, then sends whatever a test wants."""

    def __init__(
        self,
        ws: aiohttp.ClientWebSocketResponse,
        http: aiohttp.ClientSession,
        session: Session | None,
    ) -> None:
        self.ws = ws
        self._http = http
        self.session = session

    @property
    def channel(self) -> SecureChannel:
        assert self.session is not None
        return self.session.channel

    @classmethod
    async def open(cls, port: int, *, max_msg_size: int = 0) -> RawPeer:
        """A websocket to the node, before any handshake."""
        http = aiohttp.ClientSession()
        try:
            ws = await http.ws_connect(
                f"ws://127.0.0.1:{port}{WS_PATH}",
                max_msg_size=max_msg_size,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=2.0),
            )
        except BaseException:
            await http.close()
            raise
        return cls(ws, http, None)

    @classmethod
    async def connect(
        cls,
        port: int,
        key: SigningKey,
        expected: bytes,
        *,
        chain_id: str = CHAIN,
        now_ms: int | None = None,
        allowed: Iterable[bytes] = (),
    ) -> RawPeer:
        """Open and complete the handshake as ``key``; raises if the node refuses."""
        peer = await cls.open(port)
        wall = now_ms if now_ms is not None else time.time_ns() // 1_000_000
        policy = PeerPolicy(chain_id, key, frozenset(allowed) | {expected})
        handshake = Handshake(policy, Role.DIALER, wall, expected_peer=expected)
        try:
            for message in handshake.start():
                await peer.ws.send_bytes(message)
            while handshake.session is None:
                msg = await peer.ws.receive(timeout=10)
                if msg.type is not WSMsgType.BINARY:
                    raise ConnectionError(f"node closed the handshake ({msg.type.name})")
                for reply in handshake.receive(msg.data, wall):
                    await peer.ws.send_bytes(reply)
        except BaseException:
            await peer.close()
            raise
        peer.session = handshake.session
        return peer

    async def send_items(self, items: Iterable[tuple[Kind, bytes]]) -> None:
        await self.ws.send_bytes(self.channel.seal(encode_batch(items)))

    async def closed_by_node(self, timeout_s: float = 10.0) -> bool:
        """Read (and discard) until the node closes the websocket."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                msg = await self.ws.receive(timeout=max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                return False
            if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                return True
            if msg.type is WSMsgType.ERROR:
                return True
        return False

    async def close(self) -> None:
        await self.ws.close()
        await self._http.close()


def block(proposer: Member, height: int, txs: Sequence[Tx] = (), prev: bytes = bytes(32)) -> Block:
    return Block.build(
        chain_id=CHAIN,
        height=height,
        view=0,
        prev_hash=prev,
        time_ms=1_767_225_600_000 + height,
        proposer=proposer.validator.public_key,
        state_root=sha256(b"state %d" % height),
        txs=txs,
    )


def certify(members: Sequence[Member], blk: Block) -> CommitCertificate:
    votes = [
        Vote.create(
            m.validator,
            chain_id=CHAIN,
            kind=VoteKind.COMMIT,
            height=blk.height,
            view=0,
            block_hash=blk.hash,
        )
        for m in members
    ]
    return CommitCertificate.from_votes(votes)


class Nets:
    """Networks and raw peers made by a test, all stopped at teardown."""

    def __init__(self) -> None:
        self.networks: list[PeerNetwork] = []
        self.raw: list[RawPeer] = []
        self.context: dict[str, Any] = {}

    def make(
        self, config: PeerConfig, recorder: Recorder | None = None, **kwargs: Any
    ) -> tuple[PeerNetwork, Recorder]:
        rec = recorder if recorder is not None else Recorder()
        net = PeerNetwork(config, rec, **kwargs)
        self.networks.append(net)
        CURRENT_NETWORKS[:] = self.networks
        return net, rec

    async def cluster(
        self, members: Sequence[Member], **config_args: Any
    ) -> tuple[list[PeerNetwork], list[Recorder]]:
        """A started full mesh of ``members`` (each dials all others)."""
        pairs = [self.make(config_for(members, i, **config_args)) for i in range(len(members))]
        nets = [n for n, _ in pairs]
        await start_all(nets)
        try:
            await eventually(full_mesh(nets), what="a full mesh")
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{describe(nets)}") from None
        return nets, [r for _, r in pairs]

    async def raw_connect(self, port: int, key: SigningKey, expected: bytes, **kw: Any) -> RawPeer:
        peer = await RawPeer.connect(port, key, expected, **kw)
        self.raw.append(peer)
        return peer

    async def raw_open(self, port: int) -> RawPeer:
        peer = await RawPeer.open(port)
        self.raw.append(peer)
        return peer

    async def close(self) -> None:
        for peer in self.raw:
            await peer.close()
        await stop_all(self.networks)
        CURRENT_NETWORKS.clear()
