"""Build a compiled copy of the working tree (mypyc), for benchmarks and equivalence tests.

Run: ``python -m bench.native [--dest DIR] [--with-tests]``; prints the tree's path.

The copy holds the packages (and, with ``--with-tests``, the tests) as they are
in the working tree now, with the modules listed in pyproject.toml
(``[tool.radledger] native-modules``) compiled in place next to their source.
Processes started with that directory as their working directory (``python -m
node run``) import the compiled modules; the working tree itself is never
touched, so an edited ``.py`` can never be shadowed by a stale compiled one.
A copy whose sources are unchanged is reused.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parent.parent
PACKAGES: Final = ("ledger", "storage", "consensus", "p2p", "registry", "imaging", "node")
DEFAULT_DEST: Final = ROOT / ".native" / "nodes"


def native_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    modules: list[str] = config["tool"]["radledger"]["native-modules"]
    return modules


def _sources(with_tests: bool) -> list[Path]:
    roots = [*PACKAGES, *(("tests", "docs", "bench") if with_tests else ())]
    files = [ROOT / "pyproject.toml"]
    for name in roots:
        files.extend(
            p
            for p in sorted((ROOT / name).rglob("*"))
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".so"
        )
    return files


def _fingerprint(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def build(dest: Path = DEFAULT_DEST, *, with_tests: bool = False) -> Path:
    """The compiled tree at ``dest`` for the working tree as it is now."""
    files = _sources(with_tests)
    stamp = dest / ".sources-sha256"
    fingerprint = _fingerprint(files)
    if stamp.exists() and stamp.read_text() == fingerprint:
        return dest
    if dest.exists():
        shutil.rmtree(dest)
    for path in files:
        target = dest / path.relative_to(ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, target)
    modules = native_modules()
    result = subprocess.run(
        [sys.executable, "-m", "mypyc", *modules],
        cwd=dest,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"mypyc failed:\n{result.stdout}\n{result.stderr}")
    missing = [m for m in modules if not list((dest / m).parent.glob(Path(m).stem + ".*.so"))]
    if missing:
        raise SystemExit(f"mypyc built no extension for {missing}")
    shutil.rmtree(dest / "build", ignore_errors=True)
    stamp.write_text(fingerprint)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dest", type=Path, default=DEFAULT_DEST)
    parser.add_argument("--with-tests", action="store_true")
    args = parser.parse_args()
    print(build(args.dest, with_tests=args.with_tests))


if __name__ == "__main__":
    main()
