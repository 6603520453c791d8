"""``radledger sim``: a summary line, exit 1 naming the first failing seed and its replay."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from click.testing import CliRunner

from node.cli import cli
from node.sim import RunResult
from node.sim import runner as sim_runner


def test_a_clean_range_prints_one_summary_line_and_exits_zero() -> None:
    result = CliRunner().invoke(cli, ["sim", "--seeds", "1-3"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("3 seeds: ")
    assert "0 violations, 0 liveness failures" in lines[0]


def test_verbose_prints_a_line_per_seed() -> None:
    result = CliRunner().invoke(cli, ["sim", "--seeds", "5-6", "--validators", "7", "-v"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert [line.split(":")[0] for line in lines[:2]] == ["seed 5", "seed 6"]
    assert lines[2].startswith("2 seeds: ")


def test_a_single_seed_transcript() -> None:
    result = CliRunner().invoke(cli, ["sim", "--seeds", "4", "--transcript", "--heights", "2"])
    assert result.exit_code == 0, result.output
    assert "t=0ms " in result.output
    assert "COMMIT h=2" in result.output


def test_a_failure_names_the_seed_and_how_to_reproduce_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = sim_runner.run

    def broken_on_seed_2(seed: int, **kwargs: Any) -> RunResult:
        result = real(seed, **kwargs)
        if seed != 2:
            return result
        return dataclasses.replace(
            result,
            violations=("step 9 t=40ms: agreement: v1 commits h=1 aaaa, but v0 committed bbbb",),
            violation_count=1,
        )

    monkeypatch.setattr(sim_runner, "run", broken_on_seed_2)
    result = CliRunner().invoke(
        cli, ["sim", "--seeds", "1-3", "--byzantine", "1", "--heights", "4"]
    )
    assert result.exit_code == 1
    assert "3 seeds: " in result.output
    assert "1 violations" in result.output
    assert "first: seed 2: step 9 t=40ms: agreement" in result.output
    assert (
        "reproduce with: radledger sim --seeds 2-2 --validators 4 --byzantine 1 --heights 4"
        in result.output
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--seeds", "x-y"], "is not A-B"),
        (["--seeds", "9-3"], "need 0 <= A <= B"),
        (["--seeds", "1-2", "--byzantine", "2"], "tolerate at most 1 Byzantine"),
        (["--seeds", "1-2", "--validators", "3"], "--validators"),
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(cli, ["sim", *args])
    assert result.exit_code == 2
    assert message in result.output
