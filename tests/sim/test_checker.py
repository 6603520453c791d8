"""The checker is not vacuous: each kind of violation, fed to it, is reported.

The first tests feed the checker forged events directly; the last ones run the whole
simulator with a deliberately broken replica and expect the run to fail.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from consensus.config import PHASE_PREPARE, ReplicaConfig
from consensus.events import (
    Broadcast,
    CommitBlock,
    Effect,
    Input,
    Persist,
    StableCheckpoint,
)
from consensus.replica import Replica
from ledger.keys import SigningKey
from ledger.messages import Checkpoint, Status, ViewChange
from ledger.types import (
    Block,
    CommitCertificate,
    DuplicateVoteEvidence,
    PreparedCertificate,
    SafetyRecord,
    ValidatorSignature,
    Vote,
    VoteKind,
    sha256,
)
from node.sim import Checker, SimOptions, run
from node.sim import world as sim_world

CHAIN = "radledger-sim"
GENESIS = sha256(b"checker test genesis")
KEYS = [SigningKey(sha256(b"checker key %d" % i)) for i in range(4)]
VALIDATORS = tuple(k.public_key for k in KEYS)
NAMES = {k.public_key: f"v{i}" for i, k in enumerate(KEYS)}
QUIET = SimOptions(crashes=False, partitions=False, weather=False, liveness_bound_ms=5_000)


def checker(honest: Sequence[int] = (0, 1, 2, 3)) -> Checker:
    return Checker(
        chain_id=CHAIN,
        genesis_hash=GENESIS,
        validators=VALIDATORS,
        honest=[VALIDATORS[i] for i in honest],
        names=NAMES,
    )


def block(height: int = 1, view: int = 0, *, time_ms: int = 1_000, proposer: int = -1) -> Block:
    return Block.build(
        chain_id=CHAIN,
        height=height,
        view=view,
        prev_hash=GENESIS,
        time_ms=time_ms,
        proposer=VALIDATORS[view % 4] if proposer < 0 else VALIDATORS[proposer],
        state_root=sha256(b"root %d" % time_ms),
    )


def vote(signer: int, kind: VoteKind, b: Block, view: int = 0) -> Vote:
    return Vote.create(
        KEYS[signer], chain_id=CHAIN, kind=kind, height=b.height, view=view, block_hash=b.hash
    )


def cert(b: Block, signers: Sequence[int] = (0, 1, 2), view: int = 0) -> CommitCertificate:
    return CommitCertificate.from_votes(vote(i, VoteKind.COMMIT, b, view) for i in signers)


def _bad_signature(b: Block) -> CommitCertificate:
    good = cert(b)
    first = good.signatures[0]
    broken = ValidatorSignature(first.validator, bytes(64))
    return dataclasses.replace(good, signatures=(broken, *good.signatures[1:]))


def commit(c: Checker, node: int, b: Block, certificate: CommitCertificate) -> None:
    c.on_commit(
        VALIDATORS[node],
        b,
        certificate,
        executed_root=b.header.state_root,
        execution_problem="",
    )


def kinds(c: Checker) -> list[str]:
    return [v.split(": ")[1] for v in c.violations]


# --------------------------------------------------------------------------- commits


def test_a_correct_commit_is_accepted_by_every_check() -> None:
    c = checker()
    b = block()
    for node in range(4):
        commit(c, node, b, cert(b))
    assert c.ok, c.violations
    assert c.first_commit[1][0] == b.hash


def test_a_forged_conflicting_commit_breaks_agreement() -> None:
    c = checker()
    a, b = block(time_ms=1_000), block(time_ms=2_000)
    c.at(7, 120)
    commit(c, 0, a, cert(a))
    c.at(9, 130)
    commit(c, 1, b, cert(b, (1, 2, 3)))
    assert kinds(c) == ["agreement"]
    assert c.violations[0].startswith("step 9 t=130ms: agreement: v1 commits h=1")
    assert "v0 committed" in c.violations[0]
    assert "step 7" in c.violations[0]


def test_a_commit_that_does_not_extend_the_committed_chain_is_reported() -> None:
    c = checker()
    orphan = dataclasses.replace(block(), header=dataclasses.replace(block().header))
    first = Block.build(
        chain_id=CHAIN,
        height=2,
        view=0,
        prev_hash=sha256(b"not block 1"),
        time_ms=5,
        proposer=VALIDATORS[0],
        state_root=sha256(b"r"),
    )
    commit(c, 0, orphan, cert(orphan))
    commit(c, 0, first, cert(first))
    assert kinds(c) == ["agreement"]
    assert "is not the committed h=1" in c.violations[0]


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda b: cert(b, (0, 1)), "2 signers, a quorum is 3"),
        (lambda b: cert(block(time_ms=9)), "certificate names h=1"),
        (_bad_signature, "does not verify"),
        (
            lambda b: CommitCertificate.from_votes(
                [
                    vote(0, VoteKind.COMMIT, b),
                    vote(1, VoteKind.COMMIT, b),
                    Vote.create(
                        SigningKey(sha256(b"outsider")),
                        chain_id=CHAIN,
                        kind=VoteKind.COMMIT,
                        height=1,
                        view=0,
                        block_hash=b.hash,
                    ),
                ]
            ),
            "is not a validator",
        ),
    ],
    ids=["too-few", "other-block", "bad-signature", "outsider"],
)
def test_bad_certificates_are_reported(make: object, expected: str) -> None:
    assert callable(make)
    c = checker()
    b = block()
    commit(c, 0, b, make(b))
    assert kinds(c) == ["certificate"]
    assert expected in c.violations[0]


def test_a_block_from_the_wrong_proposer_is_invalid() -> None:
    c = checker()
    b = block(view=1, proposer=0)  # view 1's primary is v1
    commit(c, 2, b, cert(b, view=1))
    assert kinds(c) == ["validity"]
    assert "the primary of view 1 is v1" in c.violations[0]


def test_a_block_that_does_not_execute_to_its_root_is_invalid() -> None:
    c = checker()
    b = block()
    c.on_commit(
        VALIDATORS[0],
        b,
        cert(b),
        executed_root=sha256(b"something else"),
        execution_problem="state root differs",
    )
    assert kinds(c) == ["validity"]
    c.on_store_error(VALIDATORS[0], b, "cannot commit block 1")
    assert kinds(c) == ["validity", "validity"]


# --------------------------------------------------------------------------- double signing


def test_two_votes_for_one_slot_are_a_double_sign() -> None:
    c = checker()
    a, b = block(time_ms=1), block(time_ms=2)
    c.on_emit(VALIDATORS[1], vote(1, VoteKind.PREPARE, a))
    c.on_emit(VALIDATORS[1], vote(1, VoteKind.PREPARE, a))  # a resend is fine
    c.on_emit(VALIDATORS[1], vote(1, VoteKind.COMMIT, a))  # another kind is another slot
    c.on_emit(VALIDATORS[1], vote(1, VoteKind.PREPARE, b, view=1))  # another view too
    assert c.ok
    c.on_emit(VALIDATORS[1], vote(1, VoteKind.PREPARE, b))
    assert kinds(c) == ["double-sign"]
    assert "honest v1 signed PREPARE h=1 v=0" in c.violations[0]


def test_forwarded_and_byzantine_signatures_are_not_charged() -> None:
    c = checker(honest=(1, 2, 3))
    a, b = block(time_ms=1), block(time_ms=2)
    c.on_emit(VALIDATORS[0], vote(0, VoteKind.PREPARE, a))  # v0 is Byzantine
    c.on_emit(VALIDATORS[0], vote(0, VoteKind.PREPARE, b))
    c.on_emit(VALIDATORS[1], vote(2, VoteKind.PROPOSE, a))  # v1 echoes v2's vote
    c.on_emit(VALIDATORS[3], vote(2, VoteKind.PROPOSE, b))
    assert c.ok


def test_a_double_sign_hidden_in_a_forwarded_certificate_is_found() -> None:
    c = checker()
    a, b = block(time_ms=1), block(time_ms=2)
    c.on_emit(VALIDATORS[2], vote(2, VoteKind.COMMIT, a))
    c.on_emit(VALIDATORS[2], Status(CHAIN, cert(b, (0, 1, 2))))
    assert kinds(c) == ["double-sign"]


def _view_change(prepared: PreparedCertificate | None, committed: CommitCertificate) -> ViewChange:
    return ViewChange.create(
        KEYS[3], chain_id=CHAIN, new_view=1, committed=committed, prepared=prepared, block=None
    )


def test_two_view_changes_for_one_slot_are_a_double_sign() -> None:
    c = checker()
    one = block()
    two = Block.build(
        chain_id=CHAIN,
        height=2,
        view=0,
        prev_hash=one.hash,
        time_ms=2,
        proposer=VALIDATORS[0],
        state_root=sha256(b"2"),
    )
    committed = cert(one)
    prepared = PreparedCertificate.from_votes(vote(i, VoteKind.PREPARE, two) for i in (0, 1, 2))
    c.on_emit(VALIDATORS[3], _view_change(None, committed))
    c.on_emit(VALIDATORS[3], _view_change(None, committed))
    assert c.ok
    c.on_emit(VALIDATORS[3], _view_change(prepared, committed))
    assert kinds(c) == ["double-sign"]
    assert "VIEW-CHANGE h=2 to v=1" in c.violations[0]


def test_two_checkpoints_for_one_height_are_a_double_sign() -> None:
    c = checker()
    b = block()
    for root in (b"x", b"y"):
        c.on_emit(
            VALIDATORS[0],
            Checkpoint.create(
                KEYS[0], chain_id=CHAIN, height=4, block_hash=b.hash, state_root=sha256(root)
            ),
        )
    assert kinds(c) == ["double-sign"]


def test_sending_a_signature_before_recording_it_is_reported() -> None:
    c = checker()
    b = block()
    prepare = vote(2, VoteKind.PREPARE, b)
    records: dict[tuple[int, int, int], SafetyRecord] = {}

    def lookup(height: int, view: int, phase: int) -> SafetyRecord | None:
        return records.get((height, view, phase))

    c.check_persisted(VALIDATORS[2], prepare, lookup, pruned_below=0)
    assert kinds(c) == ["persist-before-send"]
    assert "v2 sends PREPARE h=1 v=0" in c.violations[0]
    assert "no record" in c.violations[0]
    records[(1, 0, PHASE_PREPARE)] = SafetyRecord(1, 0, PHASE_PREPARE, b.hash)
    c.check_persisted(VALIDATORS[2], prepare, lookup, pruned_below=0)
    c.check_persisted(VALIDATORS[1], vote(2, VoteKind.COMMIT, b), lookup, pruned_below=0)
    c.check_persisted(VALIDATORS[2], vote(2, VoteKind.COMMIT, b), lookup, pruned_below=2)
    assert len(c.violations) == 1  # recorded; forwarded; pruned: all fine
    records[(1, 0, PHASE_PREPARE)] = SafetyRecord(1, 0, PHASE_PREPARE, sha256(b"other"))
    c.check_persisted(VALIDATORS[2], prepare, lookup, pruned_below=0)
    assert "holds a record of" in c.violations[1]


# --------------------------------------------------------------------------- evidence, checkpoints


def test_evidence_against_an_honest_validator_is_a_violation() -> None:
    a, b = block(time_ms=1), block(time_ms=2)
    evidence = DuplicateVoteEvidence.of(vote(0, VoteKind.PREPARE, a), vote(0, VoteKind.PREPARE, b))
    byzantine_v0 = checker(honest=(1, 2, 3))
    byzantine_v0.on_evidence(VALIDATORS[1], evidence)
    assert byzantine_v0.ok
    all_honest = checker()
    all_honest.on_evidence(VALIDATORS[1], evidence)
    assert kinds(all_honest) == ["evidence"]
    assert "honest v0 double-signed PREPARE h=1 v=0" in all_honest.violations[0]


def _stable(b: Block, root: bytes, signers: Sequence[int]) -> StableCheckpoint:
    signatures = []
    for i in sorted(signers, key=lambda i: VALIDATORS[i]):
        cp = Checkpoint.create(
            KEYS[i], chain_id=CHAIN, height=1, block_hash=b.hash, state_root=root
        )
        signatures.append(ValidatorSignature(cp.validator, cp.sig))
    return StableCheckpoint(1, b.hash, root, tuple(signatures))


def test_stable_checkpoints_are_checked_against_signatures_and_the_chain() -> None:
    c = checker()
    b = block()
    commit(c, 0, b, cert(b))
    c.on_stable_checkpoint(VALIDATORS[0], _stable(b, b.header.state_root, (0, 1, 2)))
    assert c.ok
    c.on_stable_checkpoint(VALIDATORS[1], _stable(b, sha256(b"wrong root"), (0, 1, 2)))
    assert kinds(c) == ["checkpoint"]
    c.on_stable_checkpoint(VALIDATORS[2], _stable(b, b.header.state_root, (0, 1)))
    assert kinds(c) == ["checkpoint", "checkpoint"]


def test_per_step_invariants() -> None:
    c = checker()
    c.after_step(VALIDATORS[0], committed_height=3, store_height=3, view=2, previous_view=1)
    assert c.ok
    c.after_step(VALIDATORS[0], committed_height=4, store_height=3, view=2, previous_view=2)
    c.after_step(VALIDATORS[0], committed_height=3, store_height=3, view=1, previous_view=2)
    assert kinds(c) == ["state", "state"]


# --------------------------------------------------------------------------- end to end


class _DoubleSigningReplica(Replica):
    """Signs a second PREPARE for a made-up block next to every real one."""

    def __init__(self, config: ReplicaConfig) -> None:
        super().__init__(config)
        self.key = config.key

    def step(self, event: Input, now_ms: int) -> list[Effect]:
        effects = super().step(event, now_ms)
        out: list[Effect] = []
        for effect in effects:
            out.append(effect)
            message = effect.message if isinstance(effect, Broadcast) else None
            if (
                isinstance(message, Vote)
                and message.kind == VoteKind.PREPARE
                and message.validator == self.key.public_key
            ):
                twin = dataclasses.replace(message, block_hash=sha256(message.block_hash))
                twin = Vote.create(
                    self.key,
                    chain_id=twin.chain_id,
                    kind=twin.kind,
                    height=twin.height,
                    view=twin.view,
                    block_hash=twin.block_hash,
                )
                out.append(Broadcast(twin))
        return out


class _ForgingReplica(Replica):
    """Commits a look-alike of the agreed block (same transactions, another time)."""

    def step(self, event: Input, now_ms: int) -> list[Effect]:
        effects = super().step(event, now_ms)
        out: list[Effect] = []
        for original in effects:
            effect = original
            if isinstance(original, CommitBlock) and original.block.height == 2:
                header = original.block.header
                forged = Block.build(
                    chain_id=header.chain_id,
                    height=header.height,
                    view=header.view,
                    prev_hash=header.prev_hash,
                    time_ms=header.time_ms + 1,
                    proposer=header.proposer,
                    state_root=header.state_root,
                    txs=original.block.txs,
                )
                effect = CommitBlock(forged, original.certificate)
            out.append(effect)
        return out


class _ForgetfulReplica(Replica):
    """Never makes its signatures durable (drops every Persist effect)."""

    def step(self, event: Input, now_ms: int) -> list[Effect]:
        return [e for e in super().step(event, now_ms) if not isinstance(e, Persist)]


def test_the_simulator_catches_a_replica_that_speaks_before_persisting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sim_world, "Replica", _ForgetfulReplica)
    result = run(4, byzantine=0, options=QUIET)
    assert not result.ok
    assert ": persist-before-send: " in result.violations[0]


def test_the_simulator_catches_a_replica_that_double_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_world, "Replica", _DoubleSigningReplica)
    result = run(3, byzantine=0, options=QUIET)
    assert not result.ok
    found = {v.split(": ")[1] for v in result.violations}
    assert "double-sign" in found
    assert "evidence" in found  # the others caught it too, and accused an honest validator
    assert (
        result.reproduce() == "radledger sim --seeds 3-3 --validators 4 --byzantine 0 --heights 8"
    )


def test_the_simulator_catches_a_forged_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sim_world, "Replica", _ForgingReplica)
    result = run(3, byzantine=0, options=QUIET)
    assert not result.ok
    first = result.violations[0]
    assert ": certificate: " in first
    assert "h=2" in first
    assert any(": validity: " in v and "store refused" in v for v in result.violations)
