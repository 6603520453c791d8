"""Byzantine validators: each behaviour alone, and the two with a visible signature."""

from __future__ import annotations

from typing import Final

import pytest

from ledger.keys import SigningKey
from ledger.messages import (
    BlockRequest,
    BlockResponse,
    Checkpoint,
    Message,
    NewView,
    Proposal,
    Status,
    ViewChange,
)
from ledger.types import Block, CommitCertificate, Vote, VoteKind, sha256
from node.sim import Behaviour, SignatureCache, SimOptions, run
from node.sim.byzantine import corrupt
from node.sim.network import Boundary
from tests.sim.conftest import explain

QUIET: Final = SimOptions(crashes=False, partitions=False, weather=False)
CHAIN: Final = "radledger-sim"
KEYS: Final = [SigningKey(sha256(b"byzantine test %d" % i)) for i in range(4)]
VALIDATORS: Final = tuple(k.public_key for k in KEYS)


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_an_equivocating_primary_is_caught_and_replaced(seed: int) -> None:
    """v0, primary of view 0, sends different valid blocks to different replicas: the
    replicas echo its PROPOSE votes, report the pair as evidence, change view, and the
    chain still reaches the target under the next primaries."""
    options = SimOptions(
        behaviours=(Behaviour.EQUIVOCATE,), crashes=False, partitions=False, weather=False
    )
    result = run(seed, byzantine_nodes=[0], options=options)
    assert result.ok, explain([result])
    assert result.evidence_reported > 0
    assert result.view_changes > 0
    assert result.max_view >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_garbage_signatures_are_dropped_at_the_boundary(seed: int) -> None:
    options = SimOptions(
        behaviours=(Behaviour.GARBAGE,), crashes=False, partitions=False, weather=False
    )
    result = run(seed, byzantine=1, options=options)
    assert result.ok, explain([result])
    assert result.boundary_rejected > 0
    assert result.messages_dropped >= result.boundary_rejected


@pytest.mark.parametrize("seed", [1, 2])
def test_a_silent_primary_is_replaced(seed: int) -> None:
    options = SimOptions(behaviours=(Behaviour.SILENT,), crashes=False, partitions=False)
    result = run(seed, byzantine_nodes=[0], options=options)
    assert result.ok, explain([result])
    assert result.view_changes > 0


@pytest.mark.parametrize("behaviour", list(Behaviour))
def test_each_behaviour_alone_with_faults(behaviour: Behaviour) -> None:
    options = SimOptions(behaviours=(behaviour,))
    failures = [
        result for seed in range(1, 5) if not (result := run(seed, byzantine=1, options=options)).ok
    ]
    assert not failures, explain(failures)


def _block() -> Block:
    return Block.build(
        chain_id=CHAIN,
        height=1,
        view=0,
        prev_hash=sha256(b"genesis"),
        time_ms=1,
        proposer=VALIDATORS[0],
        state_root=sha256(b"root"),
    )


def _messages() -> list[Message]:
    block = _block()
    vote = Vote.create(
        KEYS[1], chain_id=CHAIN, kind=VoteKind.COMMIT, height=1, view=0, block_hash=block.hash
    )
    cert = CommitCertificate.from_votes(
        Vote.create(
            k, chain_id=CHAIN, kind=VoteKind.COMMIT, height=1, view=0, block_hash=block.hash
        )
        for k in KEYS[:3]
    )
    vc = ViewChange.create(
        KEYS[1], chain_id=CHAIN, new_view=1, committed=None, prepared=None, block=None
    )
    vcs = [
        ViewChange.create(k, chain_id=CHAIN, new_view=1, committed=None, prepared=None, block=None)
        for k in KEYS[:3]
    ]
    new_block = Block.build(
        chain_id=CHAIN,
        height=1,
        view=1,
        prev_hash=sha256(b"genesis"),
        time_ms=2,
        proposer=VALIDATORS[1],
        state_root=sha256(b"root"),
    )
    return [
        Proposal.create(KEYS[0], view=0, block=block),
        vote,
        vc,
        NewView.create(KEYS[1], chain_id=CHAIN, view=1, view_changes=vcs, block=new_block),
        Checkpoint.create(
            KEYS[2], chain_id=CHAIN, height=4, block_hash=block.hash, state_root=sha256(b"r")
        ),
        Status(CHAIN, cert),
        Status(CHAIN, None),
        BlockRequest(CHAIN, 1, 4),
        BlockResponse(CHAIN, (block,), (cert,)),
        BlockResponse(CHAIN, (), ()),
    ]


@pytest.mark.parametrize("message", _messages(), ids=lambda m: type(m).__name__)
def test_every_corrupted_message_fails_verification(message: Message) -> None:
    boundary = Boundary(CHAIN, VALIDATORS, SignatureCache(CHAIN))
    assert boundary.check(message) is None
    problem = boundary.check(corrupt(message))
    assert problem is not None


def test_the_boundary_remembers_verdicts_per_message_object() -> None:
    boundary = Boundary(CHAIN, VALIDATORS, SignatureCache(CHAIN))
    message = _messages()[1]
    for _ in range(3):
        assert boundary.check(message) is None
    assert boundary.verify_calls == 1
    forged = corrupt(message)
    assert boundary.check(forged) is not None
    assert boundary.check(forged) is not None
    assert boundary.verify_calls == 2
