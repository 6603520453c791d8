"""Scripted scenarios: the main stories of the protocol, told by a transcript.

Each story runs four honest validators on a fixed seed with fixed 10 ms links, 1 ms
execution and synchronized clocks, applies a few scripted faults, and returns its full
transcript (one line per delivered message, commit, view change, crash or partition). The
golden tests compare these with ``tests/sim/golden/<name>.txt``, so any change in what the
protocol says on the wire shows up as a readable diff.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from ledger.messages import Message
from ledger.types import Vote, VoteKind
from node.sim.network import LinkProfile
from node.sim.world import SimOptions, Simulation

__all__ = ["STORIES", "STORY_OPTIONS", "STORY_SEED", "Story", "story_simulation"]

STORY_SEED: Final = 2026
#: Deterministic timing: no skew, constant execution delay, no random faults.
STORY_OPTIONS: Final = SimOptions(
    clock_skew_ms=0,
    min_app_delay_ms=1,
    max_app_delay_ms=1,
    max_txs_per_block=2,
)
STORY_LINK: Final = LinkProfile(min_delay_ms=10, max_delay_ms=10)
#: Longest simulated time any story may take.
STORY_LIMIT_MS: Final = 30_000


@dataclass(frozen=True, slots=True)
class Story:
    """A finished story: its transcript, and the simulation to inspect."""

    name: str
    lines: tuple[str, ...]
    simulation: Simulation
    finished: bool


def story_simulation(options: SimOptions = STORY_OPTIONS) -> Simulation:
    sim = Simulation.create(
        STORY_SEED, validators=4, byzantine=0, options=options, keep_transcript=True
    )
    sim.network.profile = STORY_LINK
    return sim


def _reached(sim: Simulation, height: int, nodes: tuple[int, ...] = (0, 1, 2, 3)) -> bool:
    return all(sim.committed(sim.nodes[i]) >= height for i in nodes)


def _finish(name: str, sim: Simulation, finished: bool) -> Story:
    return Story(name, tuple(sim.transcript.lines), sim, finished)


def normal_commit() -> Story:
    """Three heights in view 0: PRE-PREPARE, PREPARE, COMMIT, with nothing going wrong."""
    sim = story_simulation()
    sim.start()
    finished = sim.run_until(lambda: _reached(sim, 3), STORY_LIMIT_MS)
    return _finish("normal_commit", sim, finished)


def primary_crash() -> Story:
    """v0 (primary of view 0) crashes after height 1; the others change to view 1 (primary
    v1) and commit heights 2 and 3 without it."""
    sim = story_simulation()
    sim.start()
    sim.run_until(lambda: _reached(sim, 1), STORY_LIMIT_MS)
    sim.crash(0)
    finished = sim.run_until(lambda: _reached(sim, 3, (1, 2, 3)), STORY_LIMIT_MS)
    return _finish("primary_crash", sim, finished)


def _commit_of_height_2_in_view_0(src: int, dst: int, message: Message) -> bool:
    return (
        isinstance(message, Vote)
        and message.kind == VoteKind.COMMIT
        and message.height == 2
        and message.view == 0
    )


def prepared_carried_over() -> Story:
    """Every COMMIT for height 2 in view 0 is lost, so the block is prepared everywhere but
    committed nowhere. The progress timer fires, the VIEW-CHANGEs carry the prepared
    certificate, and v1's NEW-VIEW re-proposes the same block (header view 0), which is
    committed in view 1."""
    sim = story_simulation()
    sim.network.rules.append(_commit_of_height_2_in_view_0)
    sim.start()
    finished = sim.run_until(lambda: _reached(sim, 3), STORY_LIMIT_MS)
    return _finish("prepared_carried_over", sim, finished)


#: The lagging story announces status often enough that the lagging replica hears of the
#: others' progress before its own view timeout fires.
LAGGING_OPTIONS: Final = dataclasses.replace(STORY_OPTIONS, status_interval_ms=150)


def lagging_replica() -> Story:
    """v3 is cut off while the others commit four heights. When the partition heals, a
    STATUS tells it that it is behind; it fetches the missing blocks with BLOCK-REQUESTs
    (their certificates checked at the boundary), commits them, and then votes again: the
    story ends one height after the first one v3 sent a COMMIT for."""
    sim = story_simulation(LAGGING_OPTIONS)
    v3 = sim.nodes[3]
    sim.start()
    sim.network.partition([(0, 1, 2), (3,)])
    sim.note("PARTITION {v0,v1,v2} | {v3}")
    sim.run_until(lambda: _reached(sim, 4, (0, 1, 2)), STORY_LIMIT_MS)
    sim.network.heal()
    sim.note("RECONNECT all links")
    first_vote = 0

    def voted_and_one_more() -> bool:
        nonlocal first_vote
        if not first_vote:
            first_vote = v3.last_commit_vote
        return first_vote > 0 and _reached(sim, first_vote + 1)

    finished = sim.run_until(voted_and_one_more, STORY_LIMIT_MS)
    return _finish("lagging_replica", sim, finished)


STORIES: Final[dict[str, Callable[[], Story]]] = {
    "normal_commit": normal_commit,
    "primary_crash": primary_crash,
    "prepared_carried_over": prepared_carried_over,
    "lagging_replica": lagging_replica,
}
