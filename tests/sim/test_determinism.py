"""A seed is a complete description of a run: same seed, same transcript, bit for bit."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from node.sim import run
from node.sim.stories import normal_commit

ROOT = Path(__file__).resolve().parents[2]
_PROGRAM = """
from node.sim import run
print(run(11, validators=4, byzantine=1).transcript_digest)
print(run(12, validators=7).transcript_digest)
"""


def test_the_same_seed_gives_the_same_transcript() -> None:
    first = run(11, validators=4, byzantine=1, keep_transcript=True)
    second = run(11, validators=4, byzantine=1, keep_transcript=True)
    assert first.transcript_digest == second.transcript_digest
    assert first.transcript == second.transcript
    assert first == second
    assert len(first.transcript) > 100


def test_different_seeds_give_different_runs() -> None:
    digests = {run(seed).transcript_digest for seed in range(1, 6)}
    assert len(digests) == 5


def test_runs_do_not_depend_on_the_process_hash_seed() -> None:
    """Nothing iterates a set or dict in hash order: two processes with different
    PYTHONHASHSEEDs and this process agree on the transcripts."""
    expected = [
        run(11, validators=4, byzantine=1).transcript_digest,
        run(12, validators=7).transcript_digest,
    ]
    for hash_seed in ("1", "4242"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed, "PYTHONPATH": str(ROOT)}
        done = subprocess.run(
            [sys.executable, "-c", _PROGRAM],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )
        assert done.stdout.split() == expected


def test_the_digest_is_the_hash_of_the_kept_lines() -> None:
    story = normal_commit()
    text = "".join(f"{line}\n" for line in story.lines)
    assert story.simulation.transcript.digest() == hashlib.sha256(text.encode()).hexdigest()
