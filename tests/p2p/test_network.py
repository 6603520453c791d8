"""Peer networks on 127.0.0.1 in one process: delivery, topology, reconnection, gossip."""

from __future__ import annotations

import asyncio
import dataclasses
import logging

import pytest

from ledger.messages import BlockRequest, BlockResponse, Status, encode_message
from ledger.types import Tx, Vote
from p2p.config import PeerAddress, PeerConfig
from p2p.network import ConsensusMessage, PeerInfo, PeerNetwork, SyncMessage, SyncTimeout
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


def one_link_per_pair(nets: list[PeerNetwork], members: list[Member]) -> list[tuple[int, int]]:
    """Both ends of every pair hold the same single link; returns (dialer, listener) pairs."""
    links = []
    for i, net in enumerate(nets):
        for j, other in enumerate(nets):
            if i < j:
                mine = net.stats().peer(members[j].node.public_key)
                theirs = other.stats().peer(members[i].node.public_key)
                assert mine.connected
                assert theirs.connected
                assert {mine.role, theirs.role} == {"dialer", "listener"}
                links.append((i, j) if mine.role == "dialer" else (j, i))
    return links


async def test_two_nodes_exchange_every_kind_of_message(nets: Nets) -> None:
    members = make_members(2)
    (a, b), (rec_a, rec_b) = await nets.cluster(members)

    v = vote(members[0], 1)
    assert a.broadcast_consensus(v) == 1
    assert a.send_consensus(members[1].validator.public_key, vote(members[0], 2))
    t = tx(1)
    assert b.gossip_tx(t) == 1
    status = Status(CHAIN, None)
    assert a.send_sync(members[1].node.public_key, status)
    await eventually(lambda: len(rec_b.consensus) == 2 and bool(rec_a.txs) and bool(rec_b.sync))

    assert rec_b.consensus[0] == (members[0].validator.public_key, v)
    assert rec_a.txs == [(members[1].node.public_key, t)]
    assert rec_b.sync == [
        (PeerInfo(members[0].node.public_key, members[0].validator.public_key), status)
    ]
    stats_a, stats_b = a.stats(), b.stats()
    assert stats_a.messages_sent == {"vote": 2, "status": 1}
    assert stats_b.messages_received == {"vote": 2, "status": 1}
    assert stats_b.messages_sent == {"tx": 1}
    assert stats_a.messages_received == {"tx": 1}
    assert stats_b.bytes_received["vote"] == 2 * len(encode_message(v))
    assert stats_a.frames_sent >= 1
    assert stats_b.wire_bytes_received >= stats_b.bytes_received["vote"] + 16
    assert stats_a.handshakes_ok >= 1
    assert stats_a.handshake_failures == {}
    assert [p.node_key for p in rec_a.ups] == [members[1].node.public_key]


async def test_block_sync_request_and_response(nets: Nets) -> None:
    members = make_members(2)
    (a, b), (rec_a, rec_b) = await nets.cluster(members)
    blocks = [block(members[0], 1), block(members[0], 2)]
    certs = [certify(members, blk) for blk in blocks]

    def serve(sender: PeerInfo, message: SyncMessage) -> None:
        if isinstance(message, BlockRequest):
            first = message.from_height - 1
            response = BlockResponse(
                CHAIN,
                tuple(blocks[first : first + message.count]),
                tuple(certs[first : first + message.count]),
            )
            b.send_sync(sender.node_key, response)

    rec_b.on_sync_hook = serve
    response = await a.request_blocks(members[1].node.public_key, BlockRequest(CHAIN, 1, 2))
    assert response.blocks == tuple(blocks)
    assert response.certificates == tuple(certs)
    assert not any(isinstance(m, BlockResponse) for _, m in rec_a.sync)  # went to the caller

    # Fire-and-forget (how the replica asks): the answer reaches on_sync.
    assert a.send_sync(members[1].validator.public_key, BlockRequest(CHAIN, 2, 1))
    await eventually(lambda: any(isinstance(m, BlockResponse) for _, m in rec_a.sync))
    assert a.stats().penalties == {}


async def test_block_request_times_out(nets: Nets) -> None:
    members = make_members(2)
    limits = fast_limits(sync_timeout_ms=200)
    (a, _), _ = await nets.cluster(members, limits=limits)
    with pytest.raises(SyncTimeout):
        await a.request_blocks(members[1].node.public_key, BlockRequest(CHAIN, 1, 1))
    assert a.send_sync(members[1].node.public_key, BlockRequest(CHAIN, 5, 1))
    await eventually(lambda: a.stats().sync_timeouts == 2, what="the second timeout")


async def test_four_nodes_full_mesh(nets: Nets) -> None:
    members = make_members(4)
    nets_, recs = await nets.cluster(members)
    assert len(one_link_per_pair(nets_, members)) == 6
    for i, net in enumerate(nets_):
        assert net.broadcast_consensus(vote(members[i], 1)) == 3
    await eventually(lambda: all(len(r.consensus) == 3 for r in recs))
    for i, rec in enumerate(recs):
        senders = {sender for sender, _ in rec.consensus}
        assert senders == {m.validator.public_key for j, m in enumerate(members) if j != i}


async def test_simultaneous_dial_leaves_exactly_one_connection(nets: Nets) -> None:
    members = make_members(2)
    pairs = [nets.make(config_for(members, i)) for i in range(2)]
    a, b = (n for n, _ in pairs)
    await asyncio.gather(a.start(), b.start())  # both dial at once
    await eventually(lambda: a.stats().peers_connected == b.stats().peers_connected == 1)
    await asyncio.sleep(0.3)  # let any losing duplicate finish closing
    ((dialer, _),) = one_link_per_pair([a, b], members)
    # Both dialed at once: both ends kept the link dialed by the smaller node key.
    assert members[dialer].node.public_key == min(m.node.public_key for m in members)
    assert a.stats().peers_connected == b.stats().peers_connected == 1
    assert set(a.stats().disconnects) <= {"duplicate", "replaced", "closed"}
    a.broadcast_consensus(vote(members[0], 7))
    await eventually(lambda: len(pairs[1][1].consensus) == 1)


async def test_restarted_peer_is_redialed_automatically(nets: Nets) -> None:
    members = make_members(2)
    a, rec_a = nets.make(config_for(members, 0))
    b, _ = nets.make(config_for(members, 1, dial=[]))  # only a dials
    await a.start()
    await b.start()
    await eventually(lambda: a.is_connected(members[1].node.public_key))
    await b.stop()
    await eventually(lambda: not a.is_connected(members[1].node.public_key))
    assert rec_a.downs
    assert rec_a.downs[-1].node_key == members[1].node.public_key

    b2, rec_b2 = nets.make(config_for(members, 1, dial=[]))
    await b2.start()
    await eventually(lambda: a.is_connected(members[1].node.public_key), what="a redial")
    a.broadcast_consensus(vote(members[0], 3))
    await eventually(lambda: len(rec_b2.consensus) == 1)
    assert len(rec_a.ups) == 2


async def test_redial_backs_off_while_the_peer_is_down(nets: Nets) -> None:
    members = make_members(2)
    limits = fast_limits(backoff_base_ms=50, backoff_cap_ms=200)
    a, _ = nets.make(config_for(members, 0, limits=limits))
    await a.start()
    await asyncio.sleep(1.0)
    failures = a.stats().dial_failures
    # Delays 25-50, 50-100, 100-200, then capped at 100-200 ms: a handful, not hundreds.
    assert 3 <= failures <= 20


async def test_dialing_our_own_address_is_detected_and_dropped(
    nets: Nets, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="radledger.p2p")
    members = make_members(2)
    # Member 1's key, but our own port: the dial reaches ourselves.
    wrong = dataclasses.replace(members[1], port=members[0].port)
    a, _ = nets.make(config_for([members[0], wrong], 0))
    await a.start()
    await eventually(lambda: a.stats().handshake_failures.get("self", 0) >= 1)
    await asyncio.sleep(0.5)
    assert a.stats().handshake_failures["self"] == 1  # no redial after detection
    assert a.stats().peers_connected == 0
    assert any("own address" in r.getMessage() for r in caplog.records)


async def test_broadcast_to_a_disconnected_validator_is_a_counted_drop(nets: Nets) -> None:
    members = make_members(3)
    a, _ = nets.make(config_for(members, 0, dial=[]))
    await a.start()
    assert a.broadcast_consensus(vote(members[0], 1)) == 0
    assert a.stats().drops == {("consensus", "not_connected"): 2}


async def test_consensus_goes_to_validators_only(nets: Nets) -> None:
    members = make_members(3)
    observer = make_members(1, seed=50)[0]
    validators = members[:2]
    a, _ = nets.make(config_for(validators, 0, allowed=[observer.node.public_key]))
    b, rec_b = nets.make(config_for(validators, 1))
    obs_config = PeerConfig(
        chain_id=CHAIN,
        node_key=observer.node,
        listen_port=observer.port,
        persistent_peers=(PeerAddress(validators[0].node.public_key, validators[0].address),),
        validators={m.node.public_key: m.validator.public_key for m in validators},
        validator_keys=tuple(m.validator.public_key for m in validators),
        limits=fast_limits(),
    )
    obs, rec_obs = nets.make(obs_config)
    for net in (a, b, obs):
        await net.start()
    await eventually(lambda: a.stats().peers_connected == 2)
    assert a.broadcast_consensus(vote(validators[0], 1)) == 1
    assert a.gossip_tx(tx(5)) == 2  # transactions go to every peer
    await eventually(lambda: len(rec_b.consensus) == 1 and len(rec_obs.txs) == 1)
    await asyncio.sleep(0.1)
    assert rec_obs.consensus == []
    # Leaving out validators' nodes reaches the observer only.
    assert a.gossip_tx(tx(6), validators=False) == 1
    await eventually(lambda: len(rec_obs.txs) == 2)
    await asyncio.sleep(0.1)
    assert len(rec_b.txs) == 1


async def test_a_raising_handler_is_counted_and_the_link_survives(nets: Nets) -> None:
    members = make_members(2)
    (a, b), (_, rec_b) = await nets.cluster(members)

    def explode(sender: bytes, message: ConsensusMessage) -> None:
        raise RuntimeError("handler bug")

    rec_b.on_consensus_hook = explode
    a.broadcast_consensus(vote(members[0], 1))
    await eventually(lambda: b.stats().handler_errors == 1)
    rec_b.on_consensus_hook = None
    a.broadcast_consensus(vote(members[0], 2))
    await eventually(lambda: len(rec_b.consensus) == 2)
    assert b.is_connected(members[0].node.public_key)
    assert b.stats().penalties == {}


async def test_stats_snapshot_is_immutable(nets: Nets) -> None:
    members = make_members(2)
    (a, _), _ = await nets.cluster(members)
    stats = a.stats()
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.bans = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        stats.messages_sent["vote"] = 1  # type: ignore[index]
    assert stats.peers_connected == 1
    assert stats.queue_msgs("tx") == 0


# --------------------------------------------------------------------------- gossip


def relay(net: PeerNetwork, rec: Recorder) -> None:
    """What the node does once its mempool admits a transaction: pass it on."""

    def admitted(sender: bytes, t: Tx) -> None:
        net.gossip_tx(t, origin=sender)

    rec.on_tx_hook = admitted


def tx_crossings(nets_: list[PeerNetwork], members: list[Member]) -> dict[tuple[int, int], int]:
    """How many times a transaction went from node i to node j."""
    out: dict[tuple[int, int], int] = {}
    for j, net in enumerate(nets_):
        for i, m in enumerate(members):
            if i != j:
                received = net.stats().peer(m.node.public_key).messages_received.get("tx", 0)
                if received:
                    out[(i, j)] = received
    return out


async def test_gossip_on_a_line_crosses_each_link_once(nets: Nets) -> None:
    members = make_members(4)
    pairs = [
        nets.make(config_for(members, i, dial=[j for j in (i - 1, i + 1) if 0 <= j < 4]))
        for i in range(4)
    ]
    nets_ = [n for n, _ in pairs]
    for net, rec in pairs:
        relay(net, rec)
    for net in nets_:
        await net.start()
    await eventually(lambda: [n.stats().peers_connected for n in nets_] == [1, 2, 2, 1])

    t = tx(11)
    assert nets_[0].gossip_tx(t) == 1
    await eventually(lambda: all(len(rec.txs) == 1 for _, rec in pairs[1:]))
    await asyncio.sleep(0.2)
    assert tx_crossings(nets_, members) == {(0, 1): 1, (1, 2): 1, (2, 3): 1}
    assert nets_[0].gossip_tx(t) == 0  # steady state: nothing crosses again
    assert pairs[0][1].txs == []  # never echoed back to its origin


async def test_gossip_in_a_full_mesh_delivers_once_and_never_repeats_a_link(nets: Nets) -> None:
    members = make_members(4)
    nets_, recs = await nets.cluster(members)
    for net, rec in zip(nets_, recs, strict=True):
        relay(net, rec)

    # One transaction: no directed link carries it twice, and none carries it
    # back to its origin.
    assert nets_[0].gossip_tx(tx(99)) == 3
    await eventually(lambda: all(len(r.txs) == 1 for r in recs[1:]))
    await asyncio.sleep(0.2)
    crossings = tx_crossings(nets_, members)
    assert all(count == 1 for count in crossings.values())
    assert {(0, j) for j in (1, 2, 3)} <= set(crossings)
    assert not any(j == 0 for _, j in crossings)
    assert recs[0].txs == []

    # Many at once, from every node: each delivered exactly once everywhere;
    # every crossing is either a first delivery or a counted duplicate.
    before = sum(crossings.values())
    duplicates_before = sum(n.stats().drops.get(("tx", "duplicate"), 0) for n in nets_)
    assert before == 3 + duplicates_before
    sent: list[Tx] = [tx(100 + n) for n in range(20)]
    for n, t in enumerate(sent):
        nets_[n % 4].gossip_tx(t)
    await eventually(lambda: sum(len(r.txs) for r in recs) == 3 + 3 * len(sent))
    await asyncio.sleep(0.3)
    for i, rec in enumerate(recs):
        got = [t.hash for _, t in rec.txs if t in sent]
        assert len(got) == len(set(got)) == 15
        assert all(sent.index(t) % 4 != i for _, t in rec.txs if t in sent)
    crossings = tx_crossings(nets_, members)
    duplicates = sum(n.stats().drops.get(("tx", "duplicate"), 0) for n in nets_)
    assert sum(crossings.values()) - before == 3 * len(sent) + duplicates - duplicates_before
    # Steady state: gossiping them all again sends nothing anywhere.
    frames_before = [n.stats().frames_sent for n in nets_]
    assert sum(nets_[n % 4].gossip_tx(t) for n, t in enumerate(sent)) == 0
    await asyncio.sleep(0.1)
    assert [n.stats().frames_sent for n in nets_] == frames_before


async def test_invalid_relayed_vote_never_reaches_the_handler(nets: Nets) -> None:
    """Boundary validation: a vote of another chain is dropped and scored."""
    members = make_members(2)
    (a, b), (_, rec_b) = await nets.cluster(members)
    other_chain = vote(members[0], 1, chain_id="another-chain")
    assert isinstance(other_chain, Vote)
    a.broadcast_consensus(other_chain)
    await eventually(lambda: b.stats().penalties.get("invalid") == 1)
    assert rec_b.consensus == []


async def test_a_busy_port_fails_start_cleanly(nets: Nets) -> None:
    members = make_members(2)
    a, _ = nets.make(config_for(members, 0, dial=[]))
    await a.start()
    clash, _ = nets.make(config_for(members, 0, dial=[]))
    with pytest.raises(OSError):
        await clash.start()
    assert a.stats().peers_connected == 0


async def test_a_vote_overtakes_transactions_waiting_for_validation(nets: Nets) -> None:
    """Reading a link only queues transactions; a separate task validates them in
    slices. So a vote read after thousands of transactions is delivered at once."""
    members = make_members(2)
    (_, b), (_, rec_b) = await nets.cluster(members)
    peer = b._peers[members[0].node.public_key]
    flood = [tx(n) for n in range(1, 3001)]
    for t in flood:  # as if one frame brought them all
        b._receive_tx(peer, t.encode())
    v = vote(members[0], 1)
    b._receive_consensus(peer, encode_message(v))
    assert rec_b.consensus == [(members[0].validator.public_key, v)]
    assert rec_b.txs == []  # not one validated yet: the vote did not wait
    await eventually(lambda: len(rec_b.txs) == len(flood), timeout_s=30)
    assert [t for _, t in rec_b.txs] == flood  # none lost or reordered


async def test_the_intake_queue_is_bounded_and_sheds_transactions(nets: Nets) -> None:
    members = make_members(2)
    limits = fast_limits(max_intake_txs=5)
    b, _ = nets.make(dataclasses.replace(config_for(members, 1), limits=limits))
    peer = b._peers[members[0].node.public_key]
    for n in range(1, 9):
        b._receive_tx(peer, tx(n).encode())
    b._receive_tx(peer, tx(1).encode())  # already waiting: a duplicate
    assert len(b._intake) == 5
    drops = b.stats().drops
    assert drops[("tx", "intake_full")] == 3
    assert drops[("tx", "duplicate")] == 1
