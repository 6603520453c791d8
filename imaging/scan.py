"""Walk files and folders and inspect every file, in parallel across cores.

Fingerprinting is CPU-bound (decoding, hashing) and pydicom holds the GIL, so
the work is spread over worker processes. Results come back in the order of
the input paths, so output is reproducible whatever the scheduling.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from functools import partial
from pathlib import Path

from imaging.deid import GatePolicy
from imaging.inspect import Instance, Problem, inspect_safely

#: Below this many files a pool costs more than it saves.
_INLINE_BELOW = 8


def walk(paths: Iterable[str | Path]) -> list[str]:
    """Files named, and files under folders named (recursively, sorted, hidden skipped).

    A path that does not exist is returned as is, so it is reported per file.
    """
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                out.extend(
                    str(Path(root) / name) for name in sorted(files) if not name.startswith(".")
                )
        else:
            out.append(str(path))
    return out


def default_jobs() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover  (not Linux)
        return max(1, os.cpu_count() or 1)


def scan(
    files: Sequence[str],
    policy: GatePolicy = GatePolicy(),  # noqa: B008
    jobs: int | None = None,
) -> Iterator[Instance | Problem]:
    """Inspect ``files``; yields one result per file, in order."""
    jobs = default_jobs() if jobs is None else max(1, jobs)
    work = partial(inspect_safely, policy=policy)
    if jobs == 1 or len(files) < _INLINE_BELOW:
        for path in files:
            yield work(path)
        return
    chunk = max(1, min(16, len(files) // (jobs * 4)))
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        yield from pool.map(work, files, chunksize=chunk)
