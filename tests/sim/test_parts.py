"""The simulator's parts on their own: application, network, liveness verdicts."""

from __future__ import annotations

import dataclasses
import random

from ledger.messages import Status
from ledger.types import Block, BlockHeader, CommitCertificate, Vote, VoteKind, sha256
from node.sim import LinkProfile, SimOptions, run
from node.sim.app import App, TxPool, default_pool
from node.sim.network import Network
from node.sim.world import Simulation
from storage import MemoryStore

CHAIN = "radledger-sim"
GENESIS = sha256(b"parts genesis")


def _app(pool: TxPool | None = None) -> App:
    store = MemoryStore(chain_id=CHAIN, genesis_hash=GENESIS)
    return App(
        store,
        proposer=sha256(b"proposer"),
        pool=pool or default_pool(CHAIN),
        rng=random.Random(1),
        max_txs=3,
        sequential=True,
    )


def test_a_built_block_executes_to_its_own_root() -> None:
    app = _app()
    block = app.build(height=1, view=0, prev_hash=GENESIS, time_ms=5)
    assert len(block.txs) == 3
    execution = app.execute(block)
    assert execution.valid, execution.reason
    assert execution.root == block.header.state_root
    assert app.execute(block) is execution  # cached per (block, parent state)


def _reheader(block: Block, header: BlockHeader) -> Block:
    return Block(header, block.txs)


def test_invalid_blocks_are_refused_with_a_reason() -> None:
    app = _app()
    good = app.build(height=1, view=0, prev_hash=GENESIS, time_ms=5)
    wrong_root = _reheader(good, dataclasses.replace(good.header, state_root=sha256(b"other")))
    assert not app.execute(wrong_root).valid
    assert "state root" in app.execute(wrong_root).reason
    too_high = _reheader(good, dataclasses.replace(good.header, height=2))
    assert "does not follow" in app.execute(too_high).reason
    elsewhere = _reheader(good, dataclasses.replace(good.header, prev_hash=sha256(b"x")))
    assert "does not extend" in app.execute(elsewhere).reason
    forged_tx = dataclasses.replace(good.txs[0], sig=bytes(64))
    bad_sig = Block.build(
        chain_id=CHAIN,
        height=1,
        view=0,
        prev_hash=GENESIS,
        time_ms=5,
        proposer=good.header.proposer,
        state_root=good.header.state_root,
        txs=[forged_tx],
    )
    assert "bad signature" in app.execute(bad_sig).reason


def test_a_committed_transaction_cannot_be_committed_again() -> None:
    app = _app()
    first = app.build(height=1, view=0, prev_hash=GENESIS, time_ms=5)
    sim = Simulation.create(1, byzantine=0)
    certificate = _certificate_for(sim, first)
    app.store.commit_block(first, certificate, app.execute(first).writes)
    again = Block.build(
        chain_id=CHAIN,
        height=2,
        view=0,
        prev_hash=first.hash,
        time_ms=6,
        proposer=first.header.proposer,
        state_root=first.header.state_root,
        txs=first.txs[:1],
    )
    assert "already committed" in app.execute(again).reason
    assert app.pick_txs()[0] not in first.txs
    assert app.committed_count() == 3


def _certificate_for(sim: Simulation, block: Block) -> CommitCertificate:
    return CommitCertificate.from_votes(
        Vote.create(
            node.key,
            chain_id=CHAIN,
            kind=VoteKind.COMMIT,
            height=block.height,
            view=0,
            block_hash=block.hash,
        )
        for node in sim.nodes[:3]
    )


def test_partitions_cut_links_symmetrically_or_one_way() -> None:
    net = Network(4, random.Random(1))
    message = Status(CHAIN, None)
    net.partition([(0, 1), (2, 3)])
    assert net.plan(0, 2, message) == []
    assert net.plan(2, 0, message) == []
    assert len(net.plan(0, 1, message)) == 1
    net.cut([(0, 3)])
    assert net.plan(0, 3, message) == []
    assert len(net.plan(3, 0, message)) == 1
    net.heal()
    assert len(net.plan(0, 3, message)) == 1
    assert net.stats.cut == 3


def test_loss_duplication_delay_and_the_in_flight_bound() -> None:
    message = Status(CHAIN, None)
    lossy = Network(2, random.Random(1), LinkProfile(loss=1.0))
    assert lossy.plan(0, 1, message) == []
    assert lossy.stats.lost == 1
    doubled = Network(2, random.Random(1), LinkProfile(5, 9, duplicate=1.0))
    delays = doubled.plan(0, 1, message)
    assert len(delays) == 2
    assert all(5 <= d <= 9 for d in delays)
    bounded = Network(2, random.Random(1), max_in_flight_per_link=3)
    sent = [bounded.plan(0, 1, message) for _ in range(5)]
    assert [len(d) for d in sent] == [1, 1, 1, 0, 0]
    assert bounded.stats.overflow == 2
    bounded.arrived(0, 1)
    assert len(bounded.plan(0, 1, message)) == 1


def test_a_run_that_cannot_reach_the_target_is_a_liveness_failure() -> None:
    result = run(5, heights=60, options=SimOptions(liveness_bound_ms=50, max_fault_ms=600))
    assert not result.liveness_ok
    assert not result.ok
    assert result.violations == ()
    assert "not all honest replicas reached height 60 within 50ms" in result.liveness_detail
    assert result.first_problem().startswith("liveness: ")


def test_a_message_storm_exhausts_the_step_budget() -> None:
    result = run(5, options=SimOptions(max_steps=200))
    assert not result.liveness_ok
    assert "step budget of 200 exhausted" in result.liveness_detail
    assert result.steps == 200


def test_a_run_reports_what_happened() -> None:
    result = run(21, validators=7, byzantine=2, heights=6)
    assert result.ok, result.first_problem()
    assert len(result.byzantine) == 2
    assert len(result.behaviours) == 2
    assert result.target_height == 6
    assert result.honest_min_height >= 6
    assert result.messages_delivered > 0
    assert result.steps > 0
    assert result.heal_time_ms <= result.sim_time_ms
    assert len(result.transcript_digest) == 64
    assert result.transcript == ()
