"""`radledger run` refuses to start, with one line naming the file, when its home is wrong."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp.http_exceptions import BadHttpMessage
from click.testing import CliRunner

from ledger.keys import SigningKey, write_key_file
from ledger.types import sha256
from node.cli import cli
from node.daemon import setup_logging
from node.testnet import GeneratedNetwork, create_testnet
from storage import open_store


def network(tmp_path: Path) -> GeneratedNetwork:
    return create_testnet(tmp_path / "net", 4, base_port=48000)


def run(home: Path) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", "--home", str(home)])
    return result.exit_code, result.output


def test_unknown_config_key_is_refused(tmp_path: Path) -> None:
    home = network(tmp_path).nodes[0].home
    config = home / "config.toml"
    config.write_text(config.read_text().replace("[mempool]", "[mempool]\nmax_tx = 5", 1))
    code, output = run(home)
    assert code == 1
    assert "config.toml" in output
    assert "max_tx" in output
    assert "Traceback" not in output


def test_a_key_that_genesis_does_not_name_is_refused(tmp_path: Path) -> None:
    home = network(tmp_path).nodes[1].home
    (home / "validator_key.json").unlink()
    write_key_file(home / "validator_key.json", SigningKey.generate())
    code, output = run(home)
    assert code == 1
    assert "validator_key.json" in output
    assert "not a validator" in output


def test_a_data_directory_of_another_chain_is_refused_and_kept(tmp_path: Path) -> None:
    home = network(tmp_path).nodes[2].home
    other_genesis = sha256(b"another chain")
    store_path = home / "data" / "ledger.db"
    with open_store(store_path, chain_id="another-chain", genesis_hash=other_genesis, create=True):
        pass
    code, output = run(home)
    assert code == 1
    assert str(store_path) in output
    assert "another-chain" in output
    with open_store(store_path, chain_id="another-chain", genesis_hash=other_genesis) as store:
        assert store.latest_height() == 0  # untouched


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_a_clients_malformed_http_request_is_one_warning_line() -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    log = logging.getLogger("aiohttp.server")
    collect = _Collect()
    try:
        setup_logging("INFO", "text")
        log.addHandler(collect)
        try:
            raise BadHttpMessage("Invalid header value char:\n\n  b'X: \\x00'")
        except BadHttpMessage as exc:
            log.error("Error handling request from 127.0.0.1", exc_info=exc)
        log.error("a real aiohttp error")
    finally:
        log.removeHandler(collect)
        log.filters.clear()
        root.handlers[:], root.level = saved
    first, second = collect.records
    assert first.levelno == logging.WARNING
    assert first.getMessage() == (
        "refused a malformed HTTP request (400): Invalid header value char:"
    )
    assert first.exc_info is None
    assert second.levelno == logging.ERROR
