"""Walk files and folders and inspect every file, in parallel across cores.

Fingerprinting is CPU-bound (decoding, hashing) and pydicom holds the GIL, so
the work is spread over worker processes. Results come back in the order of
the input paths, so output is reproducible whatever the scheduling.

A worker process can still die on a file (a decoder crash, the kernel's
out-of-memory killer). That costs the file, not the run: the files that were
in flight are run again in a fresh pool one by one, and any that kills its
worker again is run alone in its own process, which names the file and the
signal. Every other file still gets its result.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from functools import partial
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final

from imaging.deid import GatePolicy
from imaging.errors import WorkerDiedError
from imaging.fingerprint import DEFAULT_MAX_PIXEL_BYTES
from imaging.inspect import Instance, Problem, inspect_safely

#: Batches in flight per worker: enough to keep every worker busy, and few
#: enough that the files to run again after a worker dies stay few.
_BATCHES_PER_WORKER: Final = 4

Result = Instance | Problem
Work = Callable[[str], Result]


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
    max_pixel_bytes: int = DEFAULT_MAX_PIXEL_BYTES,
) -> Iterator[Result]:
    """Inspect ``files``; yields one result per file, in order.

    With ``jobs`` 1 the files are read in this process (no pool to start, and
    nothing between a crashing decoder and the caller); otherwise in up to
    ``jobs`` worker processes, even for one file, so a crash costs that file only.
    """
    jobs = default_jobs() if jobs is None else max(1, jobs)
    work = partial(inspect_safely, policy=policy, max_pixel_bytes=max_pixel_bytes)
    if jobs == 1:
        for path in files:
            yield work(path)
        return
    if not files:
        return
    jobs = min(jobs, len(files))
    size = max(1, min(16, len(files) // (jobs * 4)))
    batches = [list(files[i : i + size]) for i in range(0, len(files), size)]
    yield from _pooled(batches, work, jobs, _one_by_one)


# ------------------------------------------------------------------- surviving a dead worker

OnBroken = Callable[[list[str], Work, int], Iterator[Result]]


def _pooled(
    batches: Sequence[list[str]], work: Work, jobs: int, on_broken: OnBroken
) -> Iterator[Result]:
    """Every file's result, in order. If a worker dies, the files of the batches
    that had not finished go to ``on_broken`` and a fresh pool takes the rest."""
    waiting = deque(batches)
    window = jobs * _BATCHES_PER_WORKER
    while waiting:
        in_flight: deque[tuple[list[str], Future[list[Result]]]] = deque()
        broken = False
        with ProcessPoolExecutor(max_workers=jobs) as pool:
            while waiting or in_flight:
                try:
                    while waiting and len(in_flight) < window:
                        future = pool.submit(_run_batch, work, waiting[0])
                        in_flight.append((waiting.popleft(), future))
                    results = in_flight[0][1].result()
                except BrokenProcessPool:  # a batch not yet submitted stays waiting
                    broken = True
                    break
                in_flight.popleft()
                yield from results
        if broken:
            yield from _recover(list(in_flight), work, jobs, on_broken)


def _recover(
    in_flight: list[tuple[list[str], Future[list[Result]]]],
    work: Work,
    jobs: int,
    on_broken: OnBroken,
) -> Iterator[Result]:
    """The in-flight batches' results in order: kept where a batch finished, else redone."""
    suspects = [path for batch, future in in_flight if _failed(future) for path in batch]
    redone = on_broken(suspects, work, jobs)
    for batch, future in in_flight:
        if _failed(future):
            for _ in batch:
                yield next(redone)
        else:
            yield from future.result()


def _failed(future: Future[list[Result]]) -> bool:
    return not future.done() or future.cancelled() or future.exception() is not None


def _one_by_one(files: list[str], work: Work, jobs: int) -> Iterator[Result]:
    """The suspects again, one file per task, so a second death narrows to a few files."""
    return _pooled([[path] for path in files], work, jobs, _each_alone)


def _each_alone(files: list[str], work: Work, jobs: int) -> Iterator[Result]:
    """Each file in a process of its own: the one that dies is the one that kills it."""
    del jobs
    for path in files:
        yield _isolated(path, work)


def _run_batch(work: Work, batch: list[str]) -> list[Result]:
    return [work(path) for path in batch]


def _isolated(path: str, work: Work) -> Result:
    context = multiprocessing.get_context()
    receiver, sender = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(work, path, sender), daemon=True)
    process.start()
    sender.close()  # the child holds the only writer: its death ends recv()
    try:
        result: Result | None = receiver.recv()
    except EOFError:
        result = None
    finally:
        receiver.close()
    process.join()
    if result is not None:
        return result
    return Problem(path, WorkerDiedError.code, _death(process.exitcode))


def _child(work: Work, path: str, sender: Connection) -> None:
    sender.send(work(path))
    sender.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        how = f"was killed by {name}"
        if -exitcode == signal.SIGKILL:
            how += " (often the system running out of memory)"
    else:
        how = f"exited with status {exitcode}"
    return f"the process reading this file {how}; the other files were still processed"
