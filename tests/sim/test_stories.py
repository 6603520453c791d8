"""Golden transcripts of the main stories, and what each story must show.

Each story (``node.sim.stories``) is a small scripted scenario whose transcript is compared
line by line with ``tests/sim/golden/<story>.txt``. After an intended protocol change,
regenerate them with ``RADLEDGER_UPDATE_GOLDEN=1 pytest tests/sim/test_stories.py`` and
review the diff like code.
"""

from __future__ import annotations

import difflib
import os
import re
from pathlib import Path
from typing import Final

import pytest

from node.sim.stories import (
    STORIES,
    Story,
    lagging_replica,
    normal_commit,
    prepared_carried_over,
    primary_crash,
    story_simulation,
)

GOLDEN: Final = Path(__file__).resolve().parent / "golden"
UPDATE: Final = os.environ.get("RADLEDGER_UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("name", sorted(STORIES))
def test_golden_transcript(name: str) -> None:
    story = STORIES[name]()
    assert story.finished, f"story {name} did not reach its end"
    assert story.simulation.checker.ok, story.simulation.checker.violations
    path = GOLDEN / f"{name}.txt"
    text = "".join(f"{line}\n" for line in story.lines)
    if UPDATE:
        path.write_text(text)
    expected = path.read_text()
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{name}.txt",
                tofile="this run",
                n=2,
            )
        )
        pytest.fail(
            f"transcript of {name} changed (RADLEDGER_UPDATE_GOLDEN=1 to accept):\n{diff[:6000]}"
        )


def _lines(story: Story, pattern: str) -> list[str]:
    return [line for line in story.lines if re.search(pattern, line)]


def test_normal_commit_decides_three_heights_in_view_zero() -> None:
    story = normal_commit()
    sim = story.simulation
    assert [sim.committed(node) for node in sim.nodes] == [3, 3, 3, 3]
    for node in sim.nodes:
        for height in (1, 2, 3):
            header = node.store.header(height)
            certificate = node.store.certificate(height)
            assert header is not None
            assert certificate is not None
            assert (header.view, certificate.view) == (0, 0)
            assert header.proposer == sim.nodes[0].public_key
    assert not _lines(story, "VIEW-CHANGE|view change|enters view")
    assert len(_lines(story, r"^t=\d+ms v\d COMMIT h=")) == 12


def test_primary_crash_leads_to_view_one_and_progress() -> None:
    story = primary_crash()
    sim = story.simulation
    assert _lines(story, r"v0 CRASH")
    assert _lines(story, r"v1 -> v2 NEW-VIEW v=1 h=2")
    v1 = sim.nodes[1].public_key
    for node in sim.nodes[1:]:
        assert sim.committed(node) >= 3
        for height in (2, 3):
            header = node.store.header(height)
            assert header is not None
            assert header.view == 1
            assert header.proposer == v1
    assert sim.committed(sim.nodes[0]) == 1


def test_a_prepared_block_survives_the_view_change() -> None:
    story = prepared_carried_over()
    sim = story.simulation
    proposed = _lines(story, r"v0 -> v1 PRE-PREPARE h=2 v=0 ")
    assert len(proposed) == 1
    block_id = proposed[0].split()[-2]  # the short hash
    assert _lines(story, rf"VIEW-CHANGE to v=1 committed=1 prepared=h=2@v0:{block_id}")
    assert _lines(story, rf"NEW-VIEW v=1 h=2 {block_id} vcs=3 \(block v=0\)")
    for node in sim.nodes:
        block = node.store.block(2)
        certificate = node.store.certificate(2)
        assert block is not None
        assert certificate is not None
        assert block.hash.hex().startswith(block_id)
        assert (block.header.view, certificate.view) == (0, 1)
        assert node.store.safety.load_prepared() is not None


def test_a_lagging_replica_catches_up_and_votes_again() -> None:
    story = lagging_replica()
    sim = story.simulation
    v3 = sim.nodes[3]
    assert _lines(story, r"v3 -> v\d BLOCK-REQUEST from=1")
    assert _lines(story, r"v\d -> v3 BLOCK-RESPONSE h=1\.\.")
    text = "\n".join(story.lines)
    caught_up = [int(m) for m in re.findall(r"ms v3 COMMIT h=(\d+)", text)]
    assert caught_up[:4] == [1, 2, 3, 4]
    first_vote = min(int(h) for h in re.findall(r"ms v3 -> v\d COMMIT h=(\d+)", text))
    assert first_vote > 4
    assert v3.last_commit_vote >= first_vote
    assert sim.committed(v3) > first_vote


def test_a_replica_partitioned_past_its_view_timeout_rejoins_at_the_next_view_change() -> None:
    """PBFT semantics (docs/CONSENSUS.md): a replica cut off past its view timeout asks
    for view 1 alone and, having promised not to vote in view 0 again, stays out of the
    voting; it keeps up by catch-up alone. When the others change view (here: the
    primary crashes), its view change counts and it votes again."""
    sim = story_simulation()
    v3 = sim.nodes[3]
    sim.start()
    sim.network.partition([(0, 1, 2), (3,)])
    sim.run_until(lambda: False, 900)  # v3's view timeout (500 ms) has fired
    sim.network.heal()
    behind = sim.committed(v3)
    assert sim.run_until(lambda: sim.committed(v3) > behind + 5, 10_000), sim.describe_node(v3)
    assert v3.last_commit_vote <= behind + 1  # caught up, but not voting in view 0
    sim.crash(0)
    voting = sim.run_until(lambda: v3.last_commit_vote > sim.committed(v3) - 2 > behind, 20_000)
    assert sim.checker.ok, sim.checker.violations
    assert voting, sim.describe_node(v3)
