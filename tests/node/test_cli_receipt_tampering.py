"""``receipt verify`` and ``verify --receipt`` on structurally tampered receipts.

The audit's reproduction: renaming a series root's ``$hex`` key to ``$hey``
turns bytes into a map, which used to end ``receipt verify`` with a
TypeError traceback. Now the failed step is named and the exit status is 1;
a file nested too deeply for the JSON parser is an unreadable receipt.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from node.cli import cli
from tests.test_receipt import GENESIS, make_receipt


def run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args])


@pytest.fixture
def genesis_file(tmp_path: Path) -> Path:
    path = tmp_path / "genesis.json"
    GENESIS.save(path)
    return path


def _write(path: Path, obj: Any) -> Path:
    path.write_text(json.dumps(obj))
    return path


def _renamed_root() -> dict[str, Any]:
    obj = copy.deepcopy(make_receipt().to_json())
    body = obj["entries"][0]["tx"]["body"]
    body["series_root"] = {"$hey": body["series_root"]["$hex"]}
    return obj


def test_a_renamed_hex_key_fails_the_body_step_without_a_traceback(
    tmp_path: Path, genesis_file: Path
) -> None:
    receipt = _write(tmp_path / "r.json", _renamed_root())
    result = run("receipt", "verify", receipt, "--genesis", genesis_file)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
    assert failed[0].startswith("FAIL  tx 0 (dataset.register, block 7): signature")
    assert any(
        "tx 0 (dataset.register, block 7): body: the body cannot be read: "
        "dataset.register body.series_root: expected a byte string" in line
        for line in failed
    )
    assert result.stderr.startswith("receipt NOT verified: ")


def test_verify_with_a_tampered_receipt_names_the_step(tmp_path: Path, genesis_file: Path) -> None:
    receipt = _write(tmp_path / "r.json", _renamed_root())
    study = tmp_path / "study"
    study.mkdir()
    result = run(
        "verify", "--dataset", "lung-ct-2026", "--receipt", receipt, "--genesis", genesis_file,
        study,
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    assert result.stderr.strip() == (
        "Error: the receipt does not verify: tx 0 (dataset.register, block 7): signature: "
        "the transaction's signature does not verify (or it is for another chain)"
    )


def test_a_receipt_nested_too_deeply_is_unreadable(tmp_path: Path, genesis_file: Path) -> None:
    receipt = tmp_path / "deep.json"
    receipt.write_text("[" * 100_000 + "]" * 100_000)
    result = run("receipt", "verify", receipt, "--genesis", genesis_file)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # no traceback
    assert (
        result.stderr.strip()
        == f"Error: {receipt} is not a readable receipt: it is nested too deeply"
    )
