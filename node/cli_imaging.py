"""``radledger fingerprint`` and ``radledger gate``: DICOM files, no node needed.

Both walk files and folders, work in parallel across cores, print one result
per file in input order, report every bad file on its own line (the others are
still processed) and exit non-zero at the end if any file failed.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import click

from imaging.deid import Failure, GatePolicy, UnknownCheckError
from imaging.fingerprint import DEFAULT_MAX_PIXEL_BYTES
from imaging.inspect import Instance, Problem
from imaging.scan import scan, walk
from ledger.manifest import GATE_CHECKS

EXIT_FAILED = 1


def _results(
    paths: Sequence[Path], policy: GatePolicy, jobs: int | None, max_pixel_bytes: int
) -> tuple[list[str], Iterator[Instance | Problem]]:
    files = walk(paths)
    if not files:
        raise click.ClickException("no files found under the given paths")
    return files, scan(files, policy, jobs, max_pixel_bytes)


def _report_problem(problem: Problem, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(problem.to_json(), sort_keys=True))
    else:
        click.echo(f"{problem.path}: {problem.code}: {problem.message}", err=True)


def _summary(files: int, failed: int, size: int, started: float, what: str) -> None:
    seconds = max(time.perf_counter() - started, 1e-9)
    click.echo(
        f"{files} files, {failed} {what}, {size / 1e6:.1f} MB in {seconds:.2f} s "
        f"({size / 1e6 / seconds:.1f} MB/s, {files / seconds:.0f} files/s)",
        err=True,
    )


def _failure(failure: Failure) -> dict[str, str]:
    return {"check": failure.check, "reason": failure.reason}


_jobs_option = click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=None,
    help="Worker processes (default: one per available core).",
)
max_pixel_bytes_option = click.option(
    "--max-pixel-bytes",
    type=click.IntRange(min=1),
    default=DEFAULT_MAX_PIXEL_BYTES,
    show_default=True,
    help="Refuse, before decoding, an instance whose declared frames need more decoded bytes.",
)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_jobs_option
@max_pixel_bytes_option
def fingerprint(
    paths: tuple[Path, ...], as_json: bool, jobs: int | None, max_pixel_bytes: int
) -> None:
    """Print the SOP Instance UID and the pixel, meta and file digests of DICOM files.

    PATHS are files or folders (walked recursively). The pixel and meta digests
    stay the same when a file is re-encoded losslessly (docs/FINGERPRINT.md);
    the file digest is of the exact bytes. Exits 1 if any file failed.
    """
    started = time.perf_counter()
    files, results = _results(paths, GatePolicy(), jobs, max_pixel_bytes)
    failed = size = 0
    for result in results:
        if isinstance(result, Problem):
            failed += 1
            _report_problem(result, as_json)
            continue
        size += result.size
        fp = result.fingerprint
        if as_json:
            record = {"path": result.path, **fp.to_json()}
            click.echo(json.dumps(record, sort_keys=True))
        else:
            pixel = fp.pixel.hex() if fp.pixel is not None else "-"
            click.echo(
                f"{result.path}\t{fp.sop_instance_uid}\tpixel={pixel}\t"
                f"meta={fp.meta.hex()}\tfile={fp.file.hex()}"
            )
    if not as_json and sys.stderr.isatty():
        _summary(len(files), failed, size, started, "failed")
    if failed:
        sys.exit(EXIT_FAILED)


@click.command()
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--policy",
    "--relax",
    "policy",
    multiple=True,
    type=click.Choice(GATE_CHECKS),
    help="Relax a named check (repeatable); at registration the relaxation is recorded "
    "on chain. --relax is the older name.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_jobs_option
@max_pixel_bytes_option
def gate(
    paths: tuple[Path, ...],
    policy: tuple[str, ...],
    as_json: bool,
    jobs: int | None,
    max_pixel_bytes: int,
) -> None:
    """Check that DICOM files are de-identified enough to be registered.

    Prints PASS or FAIL per file with every reason. Exits 1 if any file fails
    or cannot be read.
    """
    try:
        relaxed = GatePolicy.relaxing(policy)
    except UnknownCheckError as exc:
        raise click.UsageError(str(exc)) from None
    files, results = _results(paths, relaxed, jobs, max_pixel_bytes)
    failed = 0
    for result in results:
        if isinstance(result, Problem):
            failed += 1
            _report_problem(result, as_json)
            continue
        verdict = result.gate
        failed += not verdict.passed
        if as_json:
            click.echo(
                json.dumps(
                    {
                        "path": result.path,
                        "sop_instance_uid": result.fingerprint.sop_instance_uid,
                        "passed": verdict.passed,
                        "failures": [
                            {"check": f.check, "reason": f.reason} for f in verdict.failures
                        ],
                        "waived": [{"check": f.check, "reason": f.reason} for f in verdict.waived],
                        "method_codes": list(verdict.codes),
                    },
                    sort_keys=True,
                )
            )
        elif verdict.passed:
            waived = ", ".join(f.check for f in verdict.waived)
            click.echo(f"PASS {result.path}" + (f" (waived: {waived})" if waived else ""))
        else:
            click.echo(f"FAIL {result.path}: {verdict.explain()}")
    if failed:
        click.echo(f"{failed} of {len(files)} files refused", err=True)
        sys.exit(EXIT_FAILED)
