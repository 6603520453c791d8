"""The radledger command line: clear messages and exit codes, never a traceback."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from ledger.keys import load_key_file
from node.cli import cli


def test_keygen_writes_a_private_key_file_and_prints_the_public_key(tmp_path: Path) -> None:
    out = tmp_path / "validator_key.json"
    result = CliRunner().invoke(cli, ["keygen", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert result.output.strip() == load_key_file(out).public_key.hex()


def test_keygen_refuses_to_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "k.json"
    runner = CliRunner()
    first = runner.invoke(cli, ["keygen", "--out", str(out)])
    second = runner.invoke(cli, ["keygen", "--out", str(out)])
    assert second.exit_code == 1
    assert "refusing to overwrite" in second.output
    assert str(out) in second.output
    assert second.exception is None or isinstance(second.exception, SystemExit)
    assert load_key_file(out).public_key.hex() == first.output.strip()
    forced = runner.invoke(cli, ["keygen", "--out", str(out), "--force"])
    assert forced.exit_code == 0
    assert forced.output.strip() != first.output.strip()


def test_keygen_into_a_missing_directory_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["keygen", "--out", str(tmp_path / "no" / "k.json")])
    assert result.exit_code == 1
    assert "cannot create key file" in result.output
