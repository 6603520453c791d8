"""imaging.scan when a worker process dies: the file it was reading gets a per-file
error, every other file still gets its result, in input order.

A worker is really killed (SIGKILL, as the out-of-memory killer does, or
SIGSEGV, as a crashing decoder does). The stand-in for the fatal file is a
"poison" name: the test replaces the per-file function the pool runs with one
that kills its own process on that name and inspects every other file as usual.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import time
from pathlib import Path

import pytest

from imaging import scan as scan_module
from imaging.deid import GatePolicy
from imaging.inspect import Instance, Problem, inspect_safely
from imaging.scan import scan, walk
from imaging.synthetic import StudySpec, write_study

POISON = "poison"


def _poison(path: str) -> bool:
    return Path(path).name.startswith(POISON)


def _killing(path: str, policy: GatePolicy, max_pixel_bytes: int) -> Instance | Problem:
    """inspect_safely, except that a file named ``poison*`` kills the process reading it."""
    if _poison(path):
        faulthandler.disable()  # the crash is the point: no traceback dump on stderr
        sig = signal.SIGSEGV if "segv" in Path(path).name else signal.SIGKILL
        os.kill(os.getpid(), sig)
    return inspect_safely(path, policy, max_pixel_bytes)


@pytest.fixture
def poisoned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """24 good files with two poisons among them; the pool runs :func:`_killing`."""
    write_study(tmp_path / "study", StudySpec(seed=3, instances=24, rows=8, columns=8))
    files = walk([tmp_path / "study"])
    kill = tmp_path / "study" / "s01" / f"{POISON}-kill.dcm"
    segv = tmp_path / "study" / "s01" / f"{POISON}-segv.dcm"
    kill.write_bytes(b"")
    segv.write_bytes(b"")
    files.insert(5, str(kill))
    files.insert(17, str(segv))
    monkeypatch.setattr(scan_module, "inspect_safely", _killing)
    return files


def test_a_dead_worker_costs_only_its_file(poisoned: list[str]) -> None:
    started = time.perf_counter()
    results = list(scan(poisoned, jobs=3))
    assert time.perf_counter() - started < 30
    assert [r.path for r in results] == poisoned
    problems = {r.path: r for r in results if isinstance(r, Problem)}
    assert sorted(Path(p).name for p in problems) == ["poison-kill.dcm", "poison-segv.dcm"]
    kill = problems[poisoned[5]]
    assert kill.code == "worker_died"
    assert "killed by SIGKILL" in kill.message
    assert "out of memory" in kill.message
    segv = problems[poisoned[17]]
    assert segv.code == "worker_died"
    assert "killed by SIGSEGV" in segv.message
    good = [r for r in results if isinstance(r, Instance)]
    assert len(good) == 24
    assert all(r.gate.passed for r in good)


def test_the_results_are_those_of_a_run_without_the_poison(poisoned: list[str]) -> None:
    clean = [p for p in poisoned if not _poison(p)]
    expected = list(scan(clean, jobs=1))
    got = [r for r in scan(poisoned, jobs=2) if not _poison(r.path)]
    assert got == expected


def test_a_poison_in_every_batch_still_leaves_every_other_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_study(tmp_path / "study", StudySpec(seed=4, instances=12, rows=8, columns=8))
    files = walk([tmp_path / "study"])
    for index in range(0, 16, 4):
        poison = tmp_path / f"{POISON}{index}.dcm"
        poison.write_bytes(b"")
        files.insert(index, str(poison))
    monkeypatch.setattr(scan_module, "inspect_safely", _killing)
    results = list(scan(files, jobs=2))
    assert [r.path for r in results] == files
    died = [r.path for r in results if isinstance(r, Problem)]
    assert died == [p for p in files if _poison(p)]
    assert sum(isinstance(r, Instance) for r in results) == 12


def test_even_one_file_is_read_in_a_worker_unless_jobs_is_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    poison = tmp_path / f"{POISON}.dcm"
    poison.write_bytes(b"")
    monkeypatch.setattr(scan_module, "inspect_safely", _killing)
    (result,) = scan([str(poison)], jobs=4)
    assert isinstance(result, Problem)
    assert result.code == "worker_died"
    assert list(scan([], jobs=4)) == []
