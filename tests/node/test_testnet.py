"""node.testnet and `radledger testnet`: files, modes, genesis, configs and refusals."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from ledger.genesis import ConsensusParams, Genesis
from ledger.keys import load_key_file
from node.cli import cli
from node.config import load_config
from node.testnet import TestnetError, create_testnet, ports

KEY_FILES = ("node_key.json", "validator_key.json", "admin_key.json")


def test_port_scheme_gives_each_node_a_block_of_ten() -> None:
    assert ports(26600, 0) == (26600, 26601, 26602)
    assert ports(30000, 3) == (30030, 30031, 30032)


def test_writes_every_file_with_private_keys_at_mode_0600(tmp_path: Path) -> None:
    out = tmp_path / "net"
    network = create_testnet(out, 5, chain_id="lab-net", base_port=31000, genesis_time_ms=7)
    assert [n.home for n in network.nodes] == [out / f"node{i}" for i in range(5)]
    assert stat.S_IMODE((out / "genesis.json").stat().st_mode) & 0o044  # public
    for i in range(5):
        home = out / f"node{i}"
        names = {p.name for p in home.iterdir()}
        assert names == {"config.toml", "genesis.json", *KEY_FILES}
        for name in KEY_FILES:
            assert stat.S_IMODE((home / name).stat().st_mode) == 0o600
        assert (home / "genesis.json").read_bytes() == (out / "genesis.json").read_bytes()


def test_genesis_lists_the_generated_keys_sites_and_addresses(tmp_path: Path) -> None:
    network = create_testnet(tmp_path, 4, chain_id="lab-net", base_port=31000, genesis_time_ms=7)
    genesis = Genesis.load(tmp_path / "genesis.json")
    assert genesis == network.genesis
    assert genesis.chain_id == "lab-net"
    assert genesis.genesis_time_ms == 7
    assert genesis.params == ConsensusParams()
    assert [s.site_id for s in genesis.sites] == ["site0", "site1", "site2", "site3"]
    for i, (validator, site) in enumerate(zip(genesis.validators, genesis.sites, strict=True)):
        home = tmp_path / f"node{i}"
        assert validator.name == f"node{i}"
        assert validator.site_id == site.site_id == f"site{i}"
        assert validator.address == f"127.0.0.1:{31000 + 10 * i}"
        assert validator.node_key == load_key_file(home / "node_key.json").public_key
        assert validator.validator_key == load_key_file(home / "validator_key.json").public_key
        assert site.admin_key == load_key_file(home / "admin_key.json").public_key
    keys = [k for n in network.nodes for k in (n.node_key, n.validator_key, n.admin_key)]
    assert len(set(keys)) == len(keys) == 12


def test_each_config_names_its_ports_and_every_other_node_as_a_peer(tmp_path: Path) -> None:
    network = create_testnet(tmp_path, 4, base_port=40000)
    genesis = network.genesis
    for i, node in enumerate(network.nodes):
        config = load_config(node.home / "config.toml")
        assert config.node.moniker == f"node{i}"
        assert config.p2p.listen_address == f"127.0.0.1:{40000 + 10 * i}"
        assert config.rpc.listen_address == f"127.0.0.1:{40001 + 10 * i}"
        assert config.metrics.listen_address == f"127.0.0.1:{40002 + 10 * i}"
        assert config.metrics.enabled
        expected = {(v.node_key, v.address) for v in genesis.validators if v.name != node.name}
        assert {(p.node_key, p.address) for p in config.p2p.peer_addresses()} == expected
        paths = config.node
        assert paths.resolve(node.home, paths.genesis_file).is_file()
        assert load_key_file(paths.resolve(node.home, paths.node_key_file)).public_key == (
            node.node_key
        )
        assert load_key_file(paths.resolve(node.home, paths.validator_key_file)).public_key == (
            node.validator_key
        )


def test_refuses_a_non_empty_directory_and_leaves_it_alone(tmp_path: Path) -> None:
    (tmp_path / "keep.txt").write_text("precious")
    with pytest.raises(TestnetError, match="not empty; refusing to overwrite keys"):
        create_testnet(tmp_path, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_refuses_a_file_as_the_output(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_text("")
    with pytest.raises(TestnetError, match="is not a directory"):
        create_testnet(target, 4)


@pytest.mark.parametrize(
    ("validators", "chain_id", "base_port", "message"),
    [
        (3, "c", 26600, "at least 4 validators"),
        (1001, "c", 1, "at most 1000 validators"),
        (4, "bad chain", 26600, "chain id 'bad chain'"),
        (4, "c", 65530, "need ports 65530..65562"),
        (4, "c", 0, "must lie in"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    tmp_path: Path, validators: int, chain_id: str, base_port: int, message: str
) -> None:
    out = tmp_path / "net"
    with pytest.raises(TestnetError, match=message):
        create_testnet(out, validators, chain_id=chain_id, base_port=base_port)
    assert not out.exists()


def test_cli_creates_a_network_and_prints_a_summary(tmp_path: Path) -> None:
    out = tmp_path / "net"
    args = ["testnet", "--validators", "4", "--out", str(out), "--chain-id", "demo"]
    result = CliRunner().invoke(cli, [*args, "--base-port", "27000"])
    assert result.exit_code == 0, result.output
    genesis = Genesis.load(out / "genesis.json")
    lines = result.output.splitlines()
    assert lines[0].startswith("chain demo: 4 validators")
    assert lines[1] == f"genesis hash {genesis.hash.hex()}"
    assert len(lines) == 6
    for i, line in enumerate(lines[2:]):
        assert line.startswith(f"node{i}: {out / f'node{i}'}")
        assert f"p2p 127.0.0.1:{27000 + 10 * i}" in line
        assert f"rpc 127.0.0.1:{27001 + 10 * i}" in line
        assert f"metrics 127.0.0.1:{27002 + 10 * i}" in line


def test_cli_refuses_a_non_empty_directory_with_exit_1(tmp_path: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["testnet", "--validators", "4", "--out", str(tmp_path)])
    assert first.exit_code == 0, first.output
    before = (tmp_path / "node0" / "validator_key.json").read_bytes()
    second = runner.invoke(cli, ["testnet", "--validators", "4", "--out", str(tmp_path)])
    assert second.exit_code == 1
    assert f"Error: {tmp_path}: directory is not empty" in second.output
    assert "Traceback" not in second.output
    assert (tmp_path / "node0" / "validator_key.json").read_bytes() == before


def test_cli_rejects_fewer_than_four_validators_as_a_usage_error(tmp_path: Path) -> None:
    out = tmp_path / "net"
    result = CliRunner().invoke(cli, ["testnet", "--validators", "3", "--out", str(out)])
    assert result.exit_code == 2
    assert "at least 4 validators" in result.output
    assert "got 3" in result.output
    assert not out.exists()


def test_cli_reports_a_bad_chain_id_with_exit_1(tmp_path: Path) -> None:
    args = ["testnet", "--validators", "4", "--out", str(tmp_path / "n"), "--chain-id", "a b"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert "chain id 'a b'" in result.output


def test_cli_requires_its_options() -> None:
    result = CliRunner().invoke(cli, ["testnet", "--validators", "4"])
    assert result.exit_code == 2
    assert "--out" in result.output
