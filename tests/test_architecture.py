"""The layering of docs/ARCHITECTURE (../shared/ARCHITECTURE.md), enforced.

* ``ledger`` imports nothing of ours;
* ``consensus``, ``storage``, ``p2p``, ``registry``, ``imaging`` import only
  ``ledger`` (never each other, never ``node``);
* ``consensus`` is sans-I/O: no asyncio, clocks, randomness, sockets or disk;
* ``node`` is the composition root and may import anything.

The checker reads source with ``ast`` (nothing is imported), resolves relative
imports, and also catches ``importlib.import_module("...")`` and
``__import__("...")`` with literal names.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OURS = {"ledger", "consensus", "p2p", "storage", "registry", "imaging", "node"}
ALLOWED: dict[str, set[str]] = {
    "ledger": set(),
    "consensus": {"ledger"},
    "storage": {"ledger"},
    "p2p": {"ledger"},
    "registry": {"ledger"},
    "imaging": {"ledger"},
    "node": OURS,
}
# The consensus core gets time, randomness and I/O from its inputs only.
CONSENSUS_FORBIDDEN = {
    "asyncio",
    "time",
    "random",
    "secrets",
    "socket",
    "select",
    "selectors",
    "threading",
    "multiprocessing",
    "subprocess",
    "signal",
    "os",
    "datetime",
    "aiohttp",
    "plyvel",
}


def imported_modules(path: Path, root: Path, package: str) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) for every import in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    module_parts = [package, *path.relative_to(root / package).with_suffix("").parts]
    if module_parts[-1] == "__init__":
        module_parts.pop()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module_parts[: len(module_parts) - node.level + (path.stem == "__init__")]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            yield node.lineno, name
        elif isinstance(node, ast.Call):
            func = node.func
            dynamic = (isinstance(func, ast.Name) and func.id == "__import__") or (
                isinstance(func, ast.Attribute) and func.attr == "import_module"
            )
            if dynamic and node.args and isinstance(node.args[0], ast.Constant):
                value = node.args[0].value
                if isinstance(value, str):
                    yield node.lineno, value


def violations(root: Path, package: str) -> list[str]:
    found = []
    allowed = ALLOWED[package] | {package}
    for path in sorted((root / package).rglob("*.py")):
        for line, module in imported_modules(path, root, package):
            top = module.split(".")[0]
            where = f"{path.relative_to(root)}:{line}"
            if top in OURS and top not in allowed:
                found.append(f"{where}: {package} must not import {module}")
            if package == "consensus" and top in CONSENSUS_FORBIDDEN:
                found.append(f"{where}: consensus is sans-I/O but imports {module}")
    return found


PRESENT = sorted(p for p in ALLOWED if (ROOT / p / "__init__.py").exists())


def test_the_core_packages_exist() -> None:
    assert {"ledger", "storage", "node"} <= set(PRESENT)


@pytest.mark.parametrize("package", PRESENT)
def test_layering(package: str) -> None:
    assert violations(ROOT, package) == []


@pytest.mark.parametrize(
    ("package", "source", "expected"),
    [
        ("ledger", "import storage\n", "ledger must not import storage"),
        ("storage", "from node.cli import main\n", "storage must not import node.cli"),
        ("storage", "from consensus import replica\n", "must not import consensus"),
        ("registry", "import imaging.dicom\n", "must not import imaging.dicom"),
        ("consensus", "import time\n", "sans-I/O but imports time"),
        ("consensus", "from asyncio import sleep\n", "sans-I/O but imports asyncio"),
        ("consensus", "import random as r\n", "sans-I/O but imports random"),
        ("consensus", "import importlib\nimportlib.import_module('socket')\n", "socket"),
        ("storage", "from registry.rules import apply\n", "must not import registry.rules"),
        ("p2p", "__import__('registry')\n", "must not import registry"),
    ],
)
def test_checker_catches_violations(
    tmp_path: Path, package: str, source: str, expected: str
) -> None:
    """The checker is not vacuous: each kind of breach is reported."""
    (tmp_path / package / "sub").mkdir(parents=True)
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "sub" / "__init__.py").write_text("")
    (tmp_path / package / "sub" / "mod.py").write_text(source)
    found = violations(tmp_path, package)
    assert any(expected in v for v in found), found


def test_checker_allows_the_permitted_imports(tmp_path: Path) -> None:
    (tmp_path / "storage").mkdir()
    (tmp_path / "storage" / "__init__.py").write_text(
        "import plyvel\nfrom ledger.types import Block\nfrom . import api\nfrom storage import x\n"
    )
    assert violations(tmp_path, "storage") == []
