"""Hostile and broken peers: refused handshakes, bad frames, bad messages, floods, bans.

The node under test always keeps serving a well-behaved peer meanwhile.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import aiohttp
import pytest
from aiohttp import WSMsgType
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.handshake import Role
from ledger.keys import SigningKey
from ledger.messages import BlockResponse, Status, encode_message
from ledger.types import Vote, VoteKind
from p2p.config import consensus_limits, sync_limits
from p2p.frames import Kind, encode_batch
from p2p.network import PeerNetwork
from p2p.secure import Handshake, PeerPolicy
from tests.p2p.helpers import (
    CHAIN,
    Member,
    Nets,
    RawPeer,
    Recorder,
    config_for,
    eventually,
    fast_limits,
    make_members,
    tx,
    vote,
)

STRANGER = SigningKey(b"\x99" * 32)


@dataclasses.dataclass
class Setup:
    """Node 0 (under test) connected to node 1 (a good peer); member 2 is free
    for a hand-driven raw peer."""

    node: PeerNetwork
    seen: Recorder  # what node 0 delivered
    good: Recorder  # what node 1 received
    members: list[Member]

    async def still_serves(self) -> None:
        """The node still delivers to its good peer."""
        before = len(self.good.consensus)
        self.node.broadcast_consensus(vote(self.members[0], 100 + before))
        await eventually(lambda: len(self.good.consensus) > before, what="the good peer served")

    async def raw(self, nets: Nets) -> RawPeer:
        """An authenticated raw peer with member 2's node key."""
        members = self.members
        return await nets.raw_connect(members[0].port, members[2].node, members[0].node.public_key)


async def setup(nets: Nets, **limit_changes: object) -> Setup:
    members = make_members(3)
    limits = fast_limits(**limit_changes)
    node, seen = nets.make(config_for(members, 0, dial=[1], limits=limits))
    other, good = nets.make(config_for(members, 1, dial=[], limits=limits))
    await node.start()
    await other.start()
    await eventually(lambda: node.is_connected(members[1].node.public_key))
    return Setup(node, seen, good, members)


def failures(node: PeerNetwork) -> dict[str, int]:
    return dict(node.stats().handshake_failures)


def penalties(node: PeerNetwork) -> dict[str, int]:
    return dict(node.stats().penalties)


def batch_of(*items: tuple[Kind, bytes]) -> bytes:
    return encode_batch(items)


# --------------------------------------------------------------------------- handshake


async def test_unknown_key_is_refused_and_logged(
    nets: Nets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="radledger.p2p")
    s = await setup(nets)
    with pytest.raises(ConnectionError):
        await RawPeer.connect(s.members[0].port, STRANGER, s.members[0].node.public_key)
    await eventually(lambda: failures(s.node).get("unknown_key") == 1)
    assert any("(unknown_key)" in r.getMessage() for r in caplog.records)
    await s.still_serves()


async def test_wrong_chain_id_is_refused(nets: Nets) -> None:
    s = await setup(nets)
    with pytest.raises(ConnectionError):
        await RawPeer.connect(
            s.members[0].port,
            s.members[2].node,
            s.members[0].node.public_key,
            chain_id="other-chain",
        )
    await eventually(lambda: failures(s.node).get("chain_id") == 1)
    await s.still_serves()


@pytest.mark.parametrize("skew_ms", [-600_000, 600_000])
async def test_stale_or_future_clock_is_refused(nets: Nets, skew_ms: int) -> None:
    s = await setup(nets)
    with pytest.raises(ConnectionError):
        await RawPeer.connect(
            s.members[0].port,
            s.members[2].node,
            s.members[0].node.public_key,
            now_ms=time.time_ns() // 1_000_000 + skew_ms,
        )
    await eventually(lambda: failures(s.node).get("clock") == 1)
    await s.still_serves()


async def test_a_node_with_a_skewed_clock_cannot_join(nets: Nets) -> None:
    """The same refusal between two real networks, one of them with a bad clock."""

    class Late:
        def wall_ms(self) -> int:
            return time.time_ns() // 1_000_000 - 3_600_000

        def monotonic_ms(self) -> int:
            return time.monotonic_ns() // 1_000_000

    s = await setup(nets)
    late, _ = nets.make(config_for(s.members, 2, dial=[0]), clock=Late())
    await late.start()
    await eventually(lambda: failures(s.node).get("clock", 0) >= 1)
    assert not s.node.is_connected(s.members[2].node.public_key)
    await s.still_serves()


async def test_a_replayed_handshake_is_refused(nets: Nets) -> None:
    s = await setup(nets)
    target = s.members[0]
    wall = time.time_ns() // 1_000_000
    policy = PeerPolicy(CHAIN, s.members[2].node, frozenset({target.node.public_key}))
    handshake = Handshake(policy, Role.DIALER, wall, expected_peer=target.node.public_key)
    recorded = await nets.raw_open(target.port)
    (hello,) = handshake.start()
    await recorded.ws.send_bytes(hello)
    (auth,) = handshake.receive((await recorded.ws.receive(timeout=5)).data, wall)
    await recorded.ws.send_bytes(auth)
    handshake.receive((await recorded.ws.receive(timeout=5)).data, wall)
    assert handshake.session is not None  # a genuine session, now recorded

    replay = await nets.raw_open(target.port)
    await replay.ws.send_bytes(hello)
    reply = await replay.ws.receive(timeout=5)
    assert reply.type is WSMsgType.BINARY  # the node answers with a fresh Hello
    await replay.ws.send_bytes(auth)
    assert await replay.closed_by_node()
    await eventually(lambda: failures(s.node).get("decrypt") == 1)
    await s.still_serves()


async def test_garbage_oversized_text_and_silence_during_the_handshake(nets: Nets) -> None:
    s = await setup(nets, handshake_timeout_ms=400)
    port = s.members[0].port
    garbage = await nets.raw_open(port)
    await garbage.ws.send_bytes(b"\xffnot a hello")
    assert await garbage.closed_by_node()
    big = await nets.raw_open(port)
    await big.ws.send_bytes(b"\x00" * 5000)
    assert await big.closed_by_node()
    text = await nets.raw_open(port)
    await text.ws.send_str("hello?")
    assert await text.closed_by_node()
    silent = await nets.raw_open(port)
    assert await silent.closed_by_node()
    await eventually(
        lambda: failures(s.node) == {"malformed": 1, "too_large": 1, "not_binary": 1, "timeout": 1},
        what="four refusals",
    )
    await s.still_serves()


async def test_refusals_cannot_flood_the_logs(nets: Nets, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="radledger.p2p")
    s = await setup(nets)
    started = time.monotonic()
    for _ in range(40):
        garbage = await nets.raw_open(s.members[0].port)
        await garbage.ws.send_bytes(b"\xff")
        assert await garbage.closed_by_node()
    await eventually(lambda: failures(s.node).get("malformed") == 40)
    elapsed_s = time.monotonic() - started
    warnings = [r for r in caplog.records if "(malformed)" in r.getMessage()]
    assert 20 <= len(warnings) <= 21 + elapsed_s  # a burst of 20, then one a second
    await s.still_serves()


async def test_too_many_pending_handshakes_from_one_address(nets: Nets) -> None:
    s = await setup(nets, max_pending_handshakes_per_ip=2, handshake_timeout_ms=3000)
    held = [await nets.raw_open(s.members[0].port) for _ in range(2)]
    with pytest.raises(aiohttp.WSServerHandshakeError, match="503"):
        await nets.raw_open(s.members[0].port)
    assert failures(s.node) == {"busy": 1}
    assert not any(p.ws.closed for p in held)
    await s.still_serves()


# --------------------------------------------------------------------------- frames


async def test_tampered_frame_closes_and_scores(nets: Nets) -> None:
    s = await setup(nets)
    raw = await s.raw(nets)
    frame = bytearray(raw.channel.seal(batch_of((Kind.TX, b"x"))))
    frame[-1] ^= 0x80
    await raw.ws.send_bytes(bytes(frame))
    assert await raw.closed_by_node()
    await eventually(lambda: penalties(s.node) == {"frame_auth": 1})
    assert s.node.stats().peer(s.members[2].node.public_key).score_points > 0
    await s.still_serves()


async def test_replayed_frame_closes_and_scores(nets: Nets) -> None:
    s = await setup(nets)
    raw = await s.raw(nets)
    frame = raw.channel.seal(batch_of((Kind.CONSENSUS, encode_message(vote(s.members[2], 1)))))
    await raw.ws.send_bytes(frame)
    await raw.ws.send_bytes(frame)
    assert await raw.closed_by_node()
    await eventually(lambda: penalties(s.node) == {"frame_auth": 1})
    assert len(s.seen.consensus) == 1  # the first copy was fine
    await s.still_serves()


async def test_reordered_frames_close_and_score(nets: Nets) -> None:
    s = await setup(nets)
    raw = await s.raw(nets)
    first = raw.channel.seal(batch_of((Kind.TX, b"")))
    second = raw.channel.seal(batch_of((Kind.TX, b"")))
    await raw.ws.send_bytes(second)
    await raw.ws.send_bytes(first)
    assert await raw.closed_by_node()
    await eventually(lambda: penalties(s.node) == {"frame_auth": 1})
    await s.still_serves()


async def test_oversized_websocket_message_closes_and_scores(nets: Nets) -> None:
    s = await setup(nets, consensus=consensus_limits(64 * 1024), sync=sync_limits(64 * 1024))
    raw = await s.raw(nets)
    await raw.ws.send_bytes(b"\x00" * (70 * 1024))
    assert await raw.closed_by_node()
    await eventually(lambda: penalties(s.node) == {"oversized": 1})
    await s.still_serves()


async def test_message_over_its_kind_limit_closes_and_scores(nets: Nets) -> None:
    s = await setup(nets)
    raw = await s.raw(nets)
    # Over the 32 KiB transaction limit, well under the frame limit.
    await raw.send_items([(Kind.TX, b"\x00" * (64 * 1024))])
    assert await raw.closed_by_node()
    await eventually(lambda: penalties(s.node) == {"frame_format": 1})
    await s.still_serves()


async def test_text_message_after_the_handshake_closes_and_scores(nets: Nets) -> None:
    s = await setup(nets)
    raw = await s.raw(nets)
    await raw.ws.send_str("plain text")
    assert await raw.closed_by_node()
    await eventually(lambda: penalties(s.node) == {"not_binary": 1})


async def test_repeat_offender_is_banned_then_refused(nets: Nets) -> None:
    s = await setup(nets, ban_seconds=60, score_decay_points_per_s=0.0)
    for _ in range(2):  # two frame faults: 2 x 50 points reach the threshold of 100
        raw = await s.raw(nets)
        await raw.ws.send_bytes(b"\x00" * 40)
        assert await raw.closed_by_node()
    await eventually(lambda: s.node.stats().bans == 1)
    stats = s.node.stats()
    assert stats.peers_banned == 1
    assert stats.peer(s.members[2].node.public_key).banned_for_ms > 50_000
    with pytest.raises(ConnectionError):
        await s.raw(nets)
    await eventually(lambda: failures(s.node).get("banned") == 1)
    await s.still_serves()


async def test_a_ban_expires(nets: Nets) -> None:
    s = await setup(nets, ban_seconds=1, ban_score_points=40.0)
    raw = await s.raw(nets)
    await raw.ws.send_bytes(b"\x00" * 40)
    assert await raw.closed_by_node()
    await eventually(lambda: s.node.stats().bans == 1)
    await eventually(lambda: s.node.stats().peers_banned == 0, timeout_s=5)
    assert (await s.raw(nets)).session is not None


async def test_an_operator_ban_disconnects_a_peer(nets: Nets) -> None:
    s = await setup(nets)
    raw = await s.raw(nets)
    s.node.ban(s.members[2].validator.public_key, seconds=60)
    assert await raw.closed_by_node()
    assert s.node.stats().bans == 1
    await s.still_serves()


# --------------------------------------------------------------------------- messages


async def test_invalid_messages_are_scored_and_never_delivered(nets: Nets) -> None:
    s = await setup(nets, ban_score_points=10_000.0)
    raw = await s.raw(nets)
    bad_sig = dataclasses.replace(vote(s.members[2], 1), sig=bytes(64))
    unknown_signer = Vote.create(
        STRANGER, chain_id=CHAIN, kind=VoteKind.PREPARE, height=1, view=0, block_hash=bytes(32)
    )
    await raw.send_items(
        [
            (Kind.CONSENSUS, b"\xa0"),  # not a message
            (Kind.CONSENSUS, encode_message(bad_sig)),
            (Kind.CONSENSUS, encode_message(unknown_signer)),
            (Kind.CONSENSUS, encode_message(Status(CHAIN, None))),  # sync under CONSENSUS
            (Kind.SYNC, encode_message(vote(s.members[2], 1))),  # consensus under SYNC
            (Kind.SYNC, encode_message(BlockResponse(CHAIN, (), ()))),  # nobody asked
            (Kind.TX, b"\x00garbage"),
            (Kind.TX, tx(1, chain_id="other-chain").encode()),
            (Kind.TX, dataclasses.replace(tx(2), sig=bytes(64)).encode()),
        ]
    )
    await eventually(lambda: sum(penalties(s.node).values()) == 9)
    assert penalties(s.node) == {"malformed": 2, "invalid": 4, "wrong_kind": 2, "unsolicited": 1}
    assert s.seen.consensus == []
    assert s.seen.txs == []
    assert s.seen.sync == []
    # The link is still up: a valid vote now gets through.
    good_vote = vote(s.members[2], 9)
    await raw.send_items([(Kind.CONSENSUS, encode_message(good_vote))])
    await eventually(lambda: s.seen.consensus == [(s.members[2].validator.public_key, good_vote)])
    await s.still_serves()


async def test_consensus_from_a_non_validator_is_refused(nets: Nets) -> None:
    members = make_members(2)
    observer = SigningKey(b"\x98" * 32)
    node, rec = nets.make(config_for(members, 0, dial=[], allowed=[observer.public_key]))
    await node.start()
    raw = await nets.raw_connect(members[0].port, observer, members[0].node.public_key)
    await raw.send_items([(Kind.CONSENSUS, encode_message(vote(members[1], 1)))])
    await eventually(lambda: penalties(node) == {"not_validator": 1})
    assert rec.consensus == []


async def test_a_flood_is_rate_limited_then_banned(nets: Nets) -> None:
    limits = dataclasses.replace(consensus_limits(1024 * 1024), rate_msgs_per_s=10.0, burst_msgs=20)
    s = await setup(nets, consensus=limits)
    raw = await s.raw(nets)
    await raw.send_items([(Kind.CONSENSUS, encode_message(vote(s.members[2], 1)))] * 200)
    await eventually(lambda: s.node.stats().bans == 1)
    assert s.node.stats().drops[("consensus", "rate_limited")] >= 50
    assert len(s.seen.consensus) <= 22  # the burst, and a token or two of refill
    assert await raw.closed_by_node()
    await s.still_serves()


# --------------------------------------------------------------------------- fuzz


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.binary(min_size=1, max_size=300), sealed=st.booleans())
async def test_random_bytes_after_the_handshake(nets: Nets, data: bytes, sealed: bool) -> None:
    """Random bytes, raw or validly encrypted: the node scores, closes or drops,
    never fails, and keeps serving its good peer. (One node for all examples.)"""
    if "setup" not in nets.context:
        nets.context["setup"] = await setup(nets, ban_score_points=1e12)
    s: Setup = nets.context["setup"]
    raw = await s.raw(nets)
    await raw.ws.send_bytes(raw.channel.seal(data) if sealed else data)
    await raw.ws.send_bytes(raw.channel.seal(batch_of((Kind.TX, data))) if sealed else data)
    await s.still_serves()
    assert s.node.stats().handler_errors == 0
