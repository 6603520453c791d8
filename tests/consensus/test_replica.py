"""Unit tests of the PBFT replica: the rules, one at a time, on a reliable cluster.

The randomized fault simulation lives in tests/sim/; here each test drives one
rule and looks at the effects.
"""

from __future__ import annotations

import dataclasses

from consensus.config import (
    PHASE_COMMIT,
    PHASE_PREPARE,
    PHASE_PROPOSE,
    PHASE_VIEW_CHANGE,
)
from consensus.events import (
    BlockValidated,
    Broadcast,
    CommitBlock,
    Effect,
    MessageIn,
    Persist,
    PersistPrepared,
    PruneSafety,
    ReportEvidence,
    SetTimer,
    StableCheckpoint,
    Start,
    TimerFired,
    TimerKind,
    WorkPending,
)
from consensus.replica import Replica
from ledger.messages import NewView, Proposal, ViewChange
from ledger.types import Block, SafetyRecord, Vote, VoteKind, sha256
from tests.consensus.harness import CHAIN, GENESIS_HASH, KEYS, VALIDATORS, Cluster, config


def signed_slot(message: object) -> tuple[int, int, int, bytes] | None:
    """The safety slot a message of ours occupies, or None if it is unsigned."""
    if isinstance(message, Proposal):
        return (message.height, message.view, PHASE_PROPOSE, message.vote.block_hash)
    if isinstance(message, Vote) and message.kind in (VoteKind.PREPARE, VoteKind.COMMIT):
        phase = PHASE_PREPARE if message.kind == VoteKind.PREPARE else PHASE_COMMIT
        return (message.height, message.view, phase, message.block_hash)
    if isinstance(message, ViewChange):
        return (message.committed_height + 1, message.new_view, PHASE_VIEW_CHANGE, message.digest)
    return None


def block_at(height: int, view: int = 0, proposer: int = 0, salt: bytes = b"") -> Block:
    return Block.build(
        chain_id=CHAIN,
        height=height,
        view=view,
        prev_hash=GENESIS_HASH,
        time_ms=2_000 + len(salt),
        proposer=VALIDATORS[proposer],
        state_root=sha256(b"state" + salt),
    )


def started(index: int, records: tuple[SafetyRecord, ...] = ()) -> Replica:
    replica = Replica(config(index))
    replica.step(Start(None, None, records), 2_000)
    return replica


def test_normal_case_commits_the_same_chain_everywhere() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=6)
    assert min(cluster.heights()) >= 6
    for height in range(1, 7):
        hashes = {node.store.block_hash(height) for node in cluster.nodes}
        assert len(hashes) == 1
        for node in cluster.nodes:
            cert = node.store.certificate(height)
            assert cert is not None
            cert.verify(CHAIN, VALIDATORS)
            assert len(cert.signatures) >= 3


def test_every_signed_message_is_persisted_before_it_is_sent() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=3)
    for index, node in enumerate(cluster.nodes):
        persisted: set[tuple[int, int, int, bytes]] = set()
        for effect in node.effects:
            if isinstance(effect, Persist):
                r = effect.record
                persisted.add((r.height, r.view, r.phase, r.digest))
            elif isinstance(effect, Broadcast):
                slot = signed_slot(effect.message)
                signer = getattr(effect.message, "validator", None) or getattr(
                    effect.message, "sender", None
                )
                if slot is not None and signer == VALIDATORS[index]:
                    assert slot in persisted, (index, effect.message)


def test_prepared_certificate_is_saved_before_commit_vote() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=1)
    effects = cluster.nodes[1].effects
    commit_at = next(
        i
        for i, e in enumerate(effects)
        if isinstance(e, Broadcast)
        and isinstance(e.message, Vote)
        and e.message.kind == VoteKind.COMMIT
    )
    saved_at = next(i for i, e in enumerate(effects) if isinstance(e, PersistPrepared))
    assert saved_at < commit_at
    assert cluster.nodes[1].store.safety.load_prepared() is not None


def _proposal_effects(replica: Replica, block: Block, view: int = 0) -> list[Effect]:
    proposal = Proposal.create(KEYS[view % 4], view=view, block=block)
    effects = replica.step(MessageIn(VALIDATORS[view % 4], proposal), 2_500)
    effects += replica.step(BlockValidated(block.hash, True), 2_500)
    return effects


def _prepares(effects: list[Effect]) -> list[Vote]:
    return [
        e.message
        for e in effects
        if isinstance(e, Broadcast)
        and isinstance(e.message, Vote)
        and e.message.kind == VoteKind.PREPARE
    ]


def test_restored_record_forbids_a_conflicting_prepare() -> None:
    first, second = block_at(1, salt=b"a"), block_at(1, salt=b"bb")
    record = SafetyRecord(height=1, view=0, phase=PHASE_PREPARE, digest=first.hash)
    replica = started(1, (record,))
    effects = _proposal_effects(replica, second)
    assert _prepares(effects) == []
    assert replica.snapshot().refused_signatures == 1
    # The same digest may be signed again (a resend after restart).
    again = started(1, (record,))
    assert [v.block_hash for v in _prepares(_proposal_effects(again, first))] == [first.hash]


def test_a_valid_proposal_is_echoed_executed_then_prepared() -> None:
    replica = started(1)
    block = block_at(1)
    proposal = Proposal.create(KEYS[0], view=0, block=block)
    effects = replica.step(MessageIn(VALIDATORS[0], proposal), 2_500)
    echoed = [e for e in effects if isinstance(e, Broadcast) and e.message == proposal.vote]
    assert echoed
    assert _prepares(effects) == []  # not before execution
    effects = replica.step(BlockValidated(block.hash, True), 2_500)
    assert [v.block_hash for v in _prepares(effects)] == [block.hash]


def test_proposals_from_a_non_primary_or_for_a_bad_parent_are_not_prepared() -> None:
    replica = started(1)
    wrong_sender = Proposal.create(KEYS[2], view=0, block=block_at(1, proposer=2))
    assert replica.step(MessageIn(VALIDATORS[2], wrong_sender), 2_500) == []
    orphan = Block.build(
        chain_id=CHAIN,
        height=1,
        view=0,
        prev_hash=b"\x09" * 32,
        time_ms=2_000,
        proposer=VALIDATORS[0],
        state_root=b"\x00" * 32,
    )
    effects = replica.step(
        MessageIn(VALIDATORS[0], Proposal.create(KEYS[0], view=0, block=orphan)), 2_500
    )
    assert any(isinstance(e, Broadcast) and isinstance(e.message, ViewChange) for e in effects)


def test_block_from_the_future_is_rejected_by_time_bound() -> None:
    replica = started(1)
    far = Block.build(
        chain_id=CHAIN,
        height=1,
        view=0,
        prev_hash=GENESIS_HASH,
        time_ms=2_500 + 3_600_000,
        proposer=VALIDATORS[0],
        state_root=b"\x00" * 32,
    )
    effects = replica.step(
        MessageIn(VALIDATORS[0], Proposal.create(KEYS[0], view=0, block=far)), 2_500
    )
    assert _prepares(effects) == []
    assert any(isinstance(e, Broadcast) and isinstance(e.message, ViewChange) for e in effects)


def test_invalid_execution_triggers_a_view_change() -> None:
    replica = started(1)
    block = block_at(1)
    replica.step(MessageIn(VALIDATORS[0], Proposal.create(KEYS[0], view=0, block=block)), 2_500)
    effects = replica.step(BlockValidated(block.hash, False, "state root differs"), 2_500)
    changes = [e.message for e in effects if isinstance(e, Broadcast)]
    assert [type(m) for m in changes] == [ViewChange]
    assert replica.snapshot().in_view_change


def test_equivocating_primary_yields_evidence_and_a_view_change() -> None:
    replica = started(1)
    a, b = block_at(1, salt=b"a"), block_at(1, salt=b"bb")
    replica.step(MessageIn(VALIDATORS[0], Proposal.create(KEYS[0], view=0, block=a)), 2_500)
    other = Proposal.create(KEYS[0], view=0, block=b).vote  # echoed to us by validator 2
    effects = replica.step(MessageIn(VALIDATORS[2], other), 2_500)
    evidence = [e.evidence for e in effects if isinstance(e, ReportEvidence)]
    assert len(evidence) == 1
    assert {evidence[0].vote_a.block_hash, evidence[0].vote_b.block_hash} == {a.hash, b.hash}
    assert replica.snapshot().in_view_change


def test_conflicting_votes_are_reported_once() -> None:
    replica = started(1)
    votes = [
        Vote.create(KEYS[3], chain_id=CHAIN, kind=VoteKind.PREPARE, height=1, view=0, block_hash=h)
        for h in (b"\x01" * 32, b"\x02" * 32, b"\x03" * 32)
    ]
    reports = [
        e
        for vote in votes
        for e in replica.step(MessageIn(VALIDATORS[3], vote), 2_500)
        if isinstance(e, ReportEvidence)
    ]
    assert len(reports) == 1
    reports[0].evidence.verify(VALIDATORS)


def test_stale_timers_are_ignored_and_progress_timer_starts_view_change() -> None:
    replica = Replica(config(1))
    effects = replica.step(Start(None, None), 2_000)
    progress = next(e for e in effects if getattr(e, "kind", None) is TimerKind.PROGRESS)
    assert replica.step(TimerFired(TimerKind.PROGRESS, progress.token + 7), 9_000) == []  # type: ignore[union-attr]
    effects = replica.step(TimerFired(TimerKind.PROGRESS, progress.token), 9_000)  # type: ignore[union-attr]
    persisted = [e.record for e in effects if isinstance(e, Persist)]
    assert [r.phase for r in persisted] == [PHASE_VIEW_CHANGE]
    sent = [e.message for e in effects if isinstance(e, Broadcast)]
    assert isinstance(sent[0], ViewChange)
    assert sent[0].new_view == 1
    assert effects.index(next(e for e in effects if isinstance(e, Persist))) < effects.index(
        next(e for e in effects if isinstance(e, Broadcast))
    )


def test_restart_after_view_change_never_returns_to_the_old_view() -> None:
    replica = Replica(config(2))
    effects = replica.step(Start(None, None), 2_000)
    token = next(e.token for e in effects if getattr(e, "kind", None) is TimerKind.PROGRESS)  # type: ignore[union-attr]
    records = [
        e.record
        for e in replica.step(TimerFired(TimerKind.PROGRESS, token), 9_000)
        if isinstance(e, Persist)
    ]
    restarted = Replica(config(2))
    restarted.step(Start(None, None, tuple(records)), 10_000)
    snap = restarted.snapshot()
    assert snap.in_view_change
    assert snap.view_change_target == 1
    # A proposal in the old view 0 is not prepared.
    assert _prepares(_proposal_effects(restarted, block_at(1))) == []


def test_primary_crash_leads_to_a_view_change_and_progress() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=2)
    cluster.down.add(0)
    cluster.queue.clear()
    for _ in range(6):
        cluster.fire_timers(1_500)
        cluster.run(until_height=5)
    live = [cluster.nodes[i] for i in (1, 2, 3)]
    assert all(node.store.latest_height() >= 5 for node in live)
    assert all(node.replica.snapshot().view >= 1 for node in live)
    assert all(node.replica.view == node.replica.snapshot().view for node in cluster.nodes)
    assert len({node.store.block_hash(5) for node in live}) == 1


def test_prepared_block_is_carried_across_a_view_change() -> None:
    """Replicas prepare block 1 in view 0 but every COMMIT is lost; the new primary
    must re-propose the same block, which then commits in view 1."""
    cluster = Cluster()
    cluster.start()
    # Deliver everything except COMMIT votes until all replicas are prepared.
    cluster.run_dropping_commit_votes()
    prepared = [node.replica.snapshot().prepared for node in cluster.nodes]
    assert all(prepared)
    prepared_hash = cluster.nodes[1].replica.snapshot().proposal_hash
    cluster.down.add(0)
    cluster.queue.clear()
    for _ in range(6):
        cluster.fire_timers(1_500)
        cluster.run(until_height=1)
    committed = cluster.nodes[1].store.block(1)
    assert committed is not None
    assert committed.hash == prepared_hash
    cert = cluster.nodes[1].store.certificate(1)
    assert cert is not None
    assert cert.view >= 1
    assert committed.header.view == 0


def test_new_view_that_ignores_a_prepared_certificate_is_rejected() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run_dropping_commit_votes()
    vcs = []
    for i in (1, 2, 3):
        node = cluster.nodes[i]
        prepared = node.store.safety.load_prepared()
        assert prepared is not None
        vcs.append(
            ViewChange.create(
                KEYS[i],
                chain_id=CHAIN,
                new_view=1,
                committed=None,
                prepared=prepared[0],
                block=None,
            )
        )
    fresh = Block.build(
        chain_id=CHAIN,
        height=1,
        view=1,
        prev_hash=GENESIS_HASH,
        time_ms=2_000,
        proposer=VALIDATORS[1],
        state_root=b"\x00" * 32,
    )
    bad = NewView.create(KEYS[1], chain_id=CHAIN, view=1, view_changes=vcs, block=fresh)
    replica = cluster.nodes[2].replica
    effects = replica.step(MessageIn(VALIDATORS[1], bad), cluster.now)
    assert effects == []
    assert replica.snapshot().view == 0


def test_lagging_replica_catches_up_and_rejoins() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.down.add(3)
    cluster.run(until_height=12)
    assert cluster.nodes[3].store.latest_height() == 0
    cluster.down.discard(3)
    for _ in range(5):
        cluster.fire_timers(2_100)  # status broadcasts reveal the gap
        cluster.run(max_events=20_000, until_height=14)
    heights = cluster.heights()
    assert heights[3] >= 12
    assert cluster.nodes[3].store.block_hash(12) == cluster.nodes[0].store.block_hash(12)


def test_future_messages_are_bounded_per_peer() -> None:
    replica = started(1)
    limit = config(1).limits.max_buffered_per_peer
    for i in range(limit * 3):
        vote = Vote.create(
            KEYS[3],
            chain_id=CHAIN,
            kind=VoteKind.PREPARE,
            height=2 + i % 5,
            view=0,
            block_hash=sha256(b"%d" % i),
        )
        replica.step(MessageIn(VALIDATORS[3], vote), 2_500)
    assert sum(len(v) for v in replica._future.values()) == limit
    far = Vote.create(
        KEYS[3],
        chain_id=CHAIN,
        kind=VoteKind.PREPARE,
        height=1_000,
        view=0,
        block_hash=b"\x01" * 32,
    )
    replica.step(MessageIn(VALIDATORS[2], far), 2_500)
    assert 1_000 not in replica._future


def test_checkpoint_becomes_stable_and_prunes_safety_records() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=6)
    stable = [e for e in cluster.nodes[2].effects if isinstance(e, StableCheckpoint)]
    assert stable
    assert stable[0].height == 5
    assert len(stable[0].signatures) >= 3
    assert any(isinstance(e, PruneSafety) and e.below_height == 5 for e in cluster.nodes[2].effects)


def test_messages_from_strangers_are_ignored() -> None:
    replica = started(1)
    stranger = b"\x42" * 32
    assert (
        replica.step(
            MessageIn(stranger, Proposal.create(KEYS[0], view=0, block=block_at(1))), 2_500
        )
        == []
    )


def test_commit_requires_execution_of_the_block() -> None:
    replica = started(1)
    block = block_at(1)
    replica.step(MessageIn(VALIDATORS[0], Proposal.create(KEYS[0], view=0, block=block)), 2_500)
    effects: list[Effect] = []
    for i in (0, 2, 3):
        vote = Vote.create(
            KEYS[i], chain_id=CHAIN, kind=VoteKind.COMMIT, height=1, view=0, block_hash=block.hash
        )
        effects += replica.step(MessageIn(VALIDATORS[i], vote), 2_500)
    assert not any(isinstance(e, CommitBlock) for e in effects)
    effects = replica.step(BlockValidated(block.hash, True), 2_500)
    commits = [e for e in effects if isinstance(e, CommitBlock)]
    assert len(commits) == 1
    assert commits[0].certificate.view == 0


def test_restarted_replica_still_reports_what_it_prepared() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run_dropping_commit_votes()
    prepared_hash = cluster.nodes[2].replica.snapshot().proposal_hash
    cluster.queue.clear()
    cluster.restart(2)  # memory is gone; only the store survives
    replica = cluster.nodes[2].replica
    token = cluster.nodes[2].timers[TimerKind.PROGRESS][0]
    effects = replica.step(TimerFired(TimerKind.PROGRESS, token), cluster.now + 5_000)
    changes = [
        e.message for e in effects if isinstance(e, Broadcast) and isinstance(e.message, ViewChange)
    ]
    assert len(changes) == 1
    assert changes[0].prepared is not None
    assert changes[0].prepared.block_hash == prepared_hash
    assert changes[0].block is not None


def test_f_plus_one_view_changes_pull_a_replica_along() -> None:
    replica = started(1)
    for i in (2,):
        vc = ViewChange.create(
            KEYS[i], chain_id=CHAIN, new_view=3, committed=None, prepared=None, block=None
        )
        assert replica.step(MessageIn(VALIDATORS[i], vc), 2_500) == []  # f = 1: one is not enough
    vc = ViewChange.create(
        KEYS[3], chain_id=CHAIN, new_view=2, committed=None, prepared=None, block=None
    )
    effects = replica.step(MessageIn(VALIDATORS[3], vc), 2_500)
    joined = [e.message for e in effects if isinstance(e, Broadcast)]
    assert len(joined) == 1
    assert isinstance(joined[0], ViewChange)
    assert joined[0].new_view == 2  # the smallest of the later views


def test_seven_validators_tolerate_two_silent_ones() -> None:
    cluster = Cluster(n=7)
    cluster.down.update({5, 6})
    cluster.start()
    cluster.run(until_height=4)
    live = cluster.heights()[:5]
    assert min(live) >= 4
    cert = cluster.nodes[0].store.certificate(4)
    assert cert is not None
    assert len(cert.signatures) >= 5


def test_a_byzantine_voter_cannot_grow_the_tallies() -> None:
    replica = started(1)
    for i in range(500):
        vote = Vote.create(
            KEYS[3],
            chain_id=CHAIN,
            kind=VoteKind.PREPARE,
            height=1,
            view=0,
            block_hash=sha256(b"junk %d" % i),
        )
        replica.step(MessageIn(VALIDATORS[3], vote), 2_500)
    tallied = [v for votes in replica._round.prepares.values() for v in votes.values()]
    assert len(tallied) == 1
    far_view = Vote.create(
        KEYS[3],
        chain_id=CHAIN,
        kind=VoteKind.COMMIT,
        height=1,
        view=10_000,
        block_hash=b"\x05" * 32,
    )
    replica.step(MessageIn(VALIDATORS[3], far_view), 2_500)
    assert all(view < 10_000 for view, _ in replica._round.commits)


def test_view_change_sent_at_an_older_height_still_binds_after_restart() -> None:
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=2)
    store = cluster.nodes[2].store
    committed = store.latest_height()
    # At some earlier height this replica asked to leave for view 3, then
    # caught up through certificates from view 0.
    store.safety.record(
        SafetyRecord(height=committed, view=3, phase=PHASE_VIEW_CHANGE, digest=b"\x01" * 32)
    )
    cluster.queue.clear()
    cluster.restart(2)
    snap = cluster.nodes[2].replica.snapshot()
    assert snap.in_view_change
    assert snap.view_change_target >= 3
    assert snap.height == committed + 1


def _progress_timers(effects: list[Effect]) -> list[int]:
    return [e.token for e in effects if isinstance(e, SetTimer) and e.kind is TimerKind.PROGRESS]


def test_wait_for_work_keeps_an_idle_replica_from_suspecting_the_primary() -> None:
    idle = Replica(dataclasses.replace(config(1), wait_for_work=True))
    assert _progress_timers(idle.step(Start(None, None), 2_000)) == []
    # Work arrives: now the primary owes a block, within the view timeout.
    tokens = _progress_timers(idle.step(WorkPending(True), 2_100))
    assert len(tokens) == 1
    effects = idle.step(TimerFired(TimerKind.PROGRESS, tokens[0]), 9_000)
    assert any(isinstance(e, Broadcast) and isinstance(e.message, ViewChange) for e in effects)


def test_wait_for_work_arms_the_timer_for_a_proposal_in_flight() -> None:
    idle = Replica(dataclasses.replace(config(1), wait_for_work=True))
    idle.step(Start(None, None), 2_000)
    proposal = Proposal.create(KEYS[0], view=0, block=block_at(1))
    effects = idle.step(MessageIn(VALIDATORS[0], proposal), 2_500)
    assert len(_progress_timers(effects)) == 1
    assert _progress_timers(idle.step(WorkPending(True), 2_600)) == []  # armed once


def test_without_wait_for_work_every_height_is_timed() -> None:
    eager = Replica(config(1))
    assert len(_progress_timers(eager.step(Start(None, None), 2_000))) == 1


def _deliver_except_commits(cluster: Cluster) -> int:
    """Deliver every queued event but COMMIT votes (they are dropped); how many dropped."""
    dropped = 0
    while cluster.queue:
        to, _, event = cluster.queue.popleft()
        message = getattr(event, "message", None)
        if isinstance(message, Vote) and message.kind is VoteKind.COMMIT:
            dropped += 1
            continue
        if to not in cluster.down:
            cluster.apply(to, event)
    return dropped


def test_a_height_that_progresses_restarts_its_timer_once_per_phase() -> None:
    """A valid proposal and a prepared certificate each restart the progress timer
    once: a height advancing slowly under load is not abandoned for a view change,
    yet a height stuck after preparing still changes view within a bounded time."""
    cluster = Cluster()
    cluster.start()
    cluster.run(until_height=1)
    started = cluster.now  # height 2 is under way (its proposal is queued)
    cluster.fire_timers(700)  # 700 of the 1,000 ms pass before the votes get through
    assert _deliver_except_commits(cluster) > 0
    for node in cluster.nodes:
        _, deadline = node.timers[TimerKind.PROGRESS]
        assert deadline == cluster.now + 1_000  # restarted when it prepared
        assert not node.replica.snapshot().in_view_change
    cluster.fire_timers(400)  # past the first deadline: no view change yet
    assert not any(node.replica.snapshot().in_view_change for node in cluster.nodes)
    cluster.fire_timers(700)  # past the restarted one: commits never came, views change
    assert all(node.replica.snapshot().in_view_change for node in cluster.nodes)
    assert cluster.now - started <= 3 * 1_000
