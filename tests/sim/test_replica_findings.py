"""Consensus bugs the simulator found, each as the smallest scripted scenario that shows it.

Each was first seen with a seed (``radledger sim --seeds S-S ...``) and is fixed; the
scenarios stay as regression tests. The scenarios use the stories' fixed
timing (10 ms links, 1 ms execution, no clock skew) and four validators.
"""

from __future__ import annotations

import dataclasses

import pytest

from consensus.config import PHASE_PROPOSE
from ledger.messages import BlockResponse, Message, Status
from ledger.types import Vote, VoteKind
from node.sim import Behaviour, Simulation, run
from node.sim.stories import STORY_LINK, STORY_OPTIONS, story_simulation


def _no_commit_votes_at_height_2(src: int, dst: int, message: Message) -> bool:
    return isinstance(message, Vote) and message.kind == VoteKind.COMMIT and message.height == 2


def test_a_replica_that_prepared_after_a_view_change_can_restart() -> None:
    """All COMMITs at height 2 are lost: the block is prepared in view 0, carried into view
    1 and prepared again there. v2 crashes right after saving the view-1 certificate and
    restarts from its store."""
    sim = story_simulation()
    v2 = sim.nodes[2]
    sim.network.rules.append(_no_commit_votes_at_height_2)
    sim.start()

    def prepared_in_view_1() -> bool:
        prepared = v2.store.safety.load_prepared()
        return prepared is not None and prepared[0].view == 1

    assert sim.run_until(prepared_in_view_1, 5_000)
    sim.crash(2)
    sim.restart(2)
    assert sim.checker.ok, sim.checker.violations
    assert v2.up


def test_a_replica_behind_a_stable_checkpoint_keeps_its_safety_records() -> None:
    """v0 signs the PROPOSE for height 1, crashes, and restarts at once, but cannot catch
    up (every STATUS and BLOCK-RESPONSE to it is lost) while the others commit past the
    checkpoint at height 4. Then it crashes and restarts again."""
    sim = story_simulation()
    v0 = sim.nodes[0]
    sim.network.rules.append(
        lambda src, dst, message: dst == 0 and isinstance(message, (Status, BlockResponse))
    )
    sim.start()
    assert sim.run_until(lambda: v0.store.safety.get(1, 0, PHASE_PROPOSE) is not None, 1_000)
    sim.crash(0)
    sim.restart(0)
    assert sim.run_until(lambda: all(sim.committed(n) >= 4 for n in sim.nodes[1:]), 20_000)
    sim.run_until(lambda: False, sim.now + 100)
    assert v0.store.safety.get(1, 0, PHASE_PROPOSE) is not None, (
        f"v0 is at height {sim.committed(v0) + 1} but pruned its records below {v0.pruned_below}"
    )
    sim.crash(0)
    sim.restart(0)
    sim.run_until(lambda: not sim.checker.ok, sim.now + 2_000)
    assert sim.checker.ok, sim.checker.violations


def test_view_changes_converge_after_a_restart() -> None:
    """v0 is silent (Byzantine), so views keep failing. v3 spends 3.6 s cut off, crashes,
    and restarts as the partition heals; v1, v2, v3 must then agree on a view."""
    options = dataclasses.replace(STORY_OPTIONS, behaviours=(Behaviour.SILENT,))
    sim = Simulation.create(2026, byzantine_nodes=[0], options=options, keep_transcript=True)
    sim.network.profile = STORY_LINK
    sim.start()
    sim.network.partition([(0, 1, 2), (3,)])
    sim.run_until(lambda: False, 3_600)
    sim.crash(3)
    sim.network.heal()
    sim.restart(3)
    honest = sim.nodes[1:]
    decided = sim.run_until(lambda: all(sim.committed(n) >= 1 for n in honest), 120_000)
    assert sim.checker.ok, sim.checker.violations
    assert decided, "; ".join(sim.describe_node(n) for n in honest)


@pytest.mark.parametrize(
    ("seed", "validators", "byzantine"),
    [(100_119, 4, None), (300_271, 7, None), (200_050, 4, 1)],
)
def test_a_replayed_own_view_change_is_ignored(
    seed: int, validators: int, byzantine: int | None
) -> None:
    """Found by the soak: a Byzantine replayer sent v1 its own VIEW-CHANGE for the view
    v1 was already in, and v1 answered by sending its NEW-VIEW to itself."""
    result = run(seed, validators=validators, byzantine=byzantine)
    assert result.ok, result.first_problem()
