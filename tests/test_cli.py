"""The radledger command line: clear messages and exit codes, never a traceback."""

from __future__ import annotations

import dataclasses
import stat
from pathlib import Path

from click.testing import CliRunner

from ledger.keys import load_key_file
from node.cli import cli
from storage import open_store
from tests.factories import make_genesis
from tests.storage.conftest import ChainBuilder, commit_all, make_chain


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


def _store_with_blocks(tmp_path: Path, count: int) -> tuple[Path, Path]:
    genesis = make_genesis()
    genesis_path = tmp_path / "genesis.json"
    genesis.save(genesis_path)
    builder = ChainBuilder(chain_id=genesis.chain_id, genesis_hash=genesis.hash)
    db_path = tmp_path / "ledger.db"
    with open_store(
        db_path, chain_id=genesis.chain_id, genesis_hash=genesis.hash, create=True
    ) as store:
        commit_all(store, make_chain(count, builder=builder))
    return db_path, genesis_path


def test_db_check_reports_a_consistent_store(tmp_path: Path) -> None:
    db_path, genesis_path = _store_with_blocks(tmp_path, 4)
    result = CliRunner().invoke(
        cli, ["db", "check", "--path", str(db_path), "--genesis", str(genesis_path)]
    )
    assert result.exit_code == 0, result.output
    assert "height 4" in result.output


def test_db_check_fails_clearly_on_a_store_of_another_chain(tmp_path: Path) -> None:
    db_path, _ = _store_with_blocks(tmp_path, 2)
    other = dataclasses.replace(make_genesis(), chain_id="another-chain")
    other_path = tmp_path / "other.json"
    other.save(other_path)
    result = CliRunner().invoke(
        cli, ["db", "check", "--path", str(db_path), "--genesis", str(other_path)]
    )
    assert result.exit_code == 1
    assert str(db_path) in result.output
    assert "another-chain" in result.output
    # Nothing was overwritten: the store still opens for its own chain.
    genesis = make_genesis()
    with open_store(db_path, chain_id=genesis.chain_id, genesis_hash=genesis.hash) as store:
        assert store.latest_height() == 2


def test_db_check_fails_clearly_on_missing_and_corrupted_stores(tmp_path: Path) -> None:
    db_path, genesis_path = _store_with_blocks(tmp_path, 2)
    runner = CliRunner()
    missing = runner.invoke(
        cli, ["db", "check", "--path", str(tmp_path / "nope"), "--genesis", str(genesis_path)]
    )
    assert missing.exit_code == 1
    assert "nope" in missing.output
    (db_path / "CURRENT").write_text("garbage\n")
    corrupted = runner.invoke(
        cli, ["db", "check", "--path", str(db_path), "--genesis", str(genesis_path)]
    )
    assert corrupted.exit_code == 1
    assert str(db_path) in corrupted.output
    assert "Traceback" not in corrupted.output


def test_db_check_refuses_a_store_held_by_another_handle(tmp_path: Path) -> None:
    db_path, genesis_path = _store_with_blocks(tmp_path, 1)
    genesis = make_genesis()
    with open_store(db_path, chain_id=genesis.chain_id, genesis_hash=genesis.hash):
        result = CliRunner().invoke(
            cli, ["db", "check", "--path", str(db_path), "--genesis", str(genesis_path)]
        )
    assert result.exit_code == 1
    assert "Stop the other radledger process" in result.output


def test_db_check_names_a_bad_genesis_file(tmp_path: Path) -> None:
    bad = tmp_path / "genesis.json"
    bad.write_text("{}")
    result = CliRunner().invoke(
        cli, ["db", "check", "--path", str(tmp_path), "--genesis", str(bad)]
    )
    assert result.exit_code == 1
    assert str(bad) in result.output
    assert "missing fields" in result.output
