"""Randomized runs with mixed faults: the CI set (500 seeds) and the soak (20,000 seeds).

Each test case is a chunk of consecutive seeds, so a failure names its seeds and the
command that replays each one (``radledger sim --seeds S-S ...``). The seeds that once
exposed replica bugs (e.g. 36, 69, 185, 10065 with n=4; 30017 with n=7) are inside these
ranges, and each bug also has a scripted regression test in test_replica_findings.py.
"""

from __future__ import annotations

from typing import Final

import pytest

from node.sim import RunResult, SimOptions, run
from tests.sim.conftest import explain

CHUNK: Final = 25
SOAK_CHUNK: Final = 500


def _run_chunk(
    validators: int,
    byzantine: int | None,
    seeds: range,
    options: SimOptions | None = None,
) -> list[RunResult]:
    failures = []
    for seed in seeds:
        result = run(seed, validators=validators, byzantine=byzantine, options=options)
        assert result.target_height == 8
        if not result.ok:
            failures.append(result)
    return failures


# (validators, byzantine, first seed, number of seeds): 400 seeds with n=4 (f=1), 100 with
# n=7 (f=2). ``None`` lets each seed choose how many validators are Byzantine (0..f).
CI_SETS: Final = (
    (4, None, 1, 300),
    (4, 1, 10_001, 100),
    (7, None, 20_001, 50),
    (7, 2, 30_001, 50),
)
CI_CHUNKS: Final = [
    (n, byz, range(start, min(start + CHUNK, first + count)))
    for n, byz, first, count in CI_SETS
    for start in range(first, first + count, CHUNK)
]


@pytest.mark.parametrize(
    ("validators", "byzantine", "seeds"),
    CI_CHUNKS,
    ids=[f"n{n}-byz{b}-seeds{s.start}-{s.stop - 1}" for n, b, s in CI_CHUNKS],
)
def test_random_runs_are_safe_and_live(
    validators: int, byzantine: int | None, seeds: range
) -> None:
    failures = _run_chunk(validators, byzantine, seeds)
    assert not failures, explain(failures)


def test_runs_through_the_wire_encoding() -> None:
    """Every message makes the encode/decode round trip, as between processes."""
    failures = _run_chunk(4, None, range(40_001, 40_011), SimOptions(wire=True))
    assert not failures, explain(failures)


def test_the_wire_round_trip_changes_nothing() -> None:
    """Decoded messages behave exactly like the objects that were sent: same transcript."""
    direct = run(40_003, byzantine=1)
    wired = run(40_003, byzantine=1, options=SimOptions(wire=True))
    assert direct.transcript_digest == wired.transcript_digest


def test_the_ci_set_covers_what_it_claims() -> None:
    counts: dict[int, int] = {}
    for n, _, seeds in CI_CHUNKS:
        assert len(seeds) == CHUNK
        counts[n] = counts.get(n, 0) + len(seeds)
    assert counts == {4: 400, 7: 100}
    assert len({seed for _, _, seeds in CI_CHUNKS for seed in seeds}) == 500


SOAK_SETS: Final = ((4, None, 100_001, 12_000), (4, 1, 200_001, 4_000), (7, None, 300_001, 4_000))
SOAK_CHUNKS: Final = [
    (n, byz, range(start, start + SOAK_CHUNK))
    for n, byz, first, count in SOAK_SETS
    for start in range(first, first + count, SOAK_CHUNK)
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("validators", "byzantine", "seeds"),
    SOAK_CHUNKS,
    ids=[f"n{n}-byz{b}-seeds{s.start}-{s.stop - 1}" for n, b, s in SOAK_CHUNKS],
)
def test_soak(validators: int, byzantine: int | None, seeds: range) -> None:
    """20,000 seeds (``make soak``)."""
    failures = _run_chunk(validators, byzantine, seeds)
    assert not failures, explain(failures)


def test_the_soak_runs_twenty_thousand_seeds() -> None:
    assert sum(len(seeds) for _, _, seeds in SOAK_CHUNKS) == 20_000
