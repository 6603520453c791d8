"""node.config: defaults, round trips, and one clear error naming file and key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.genesis import ConsensusParams
from ledger.keys import SigningKey
from node.config import (
    SECTION_TYPES,
    AddressSpec,
    BoolSpec,
    ChoiceSpec,
    ConfigError,
    IntSpec,
    ListSpec,
    NameSpec,
    NodeConfig,
    P2PSection,
    PathSpec,
    RPCSection,
    Spec,
    dump_config,
    load_config,
    parse_config,
    spec_of,
    toml_value,
)
from p2p.config import Limits, PeerAddress
from tests.node.strategies import node_configs

ALL_OPTIONS = [
    (cls.SECTION, f.name, spec_of(f))
    for cls in SECTION_TYPES
    for f in dataclasses.fields(cls)  # type: ignore[arg-type]
]
OPTION_IDS = [f"{section}.{key}" for section, key, _ in ALL_OPTIONS]
KEY = "ab" * 32


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_error(tmp_path: Path, text: str) -> str:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: "), message
    assert "\n" not in message
    return message


def test_an_empty_file_is_the_default_configuration(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, "")) == NodeConfig.default() == NodeConfig()


def test_default_takes_a_moniker_and_keeps_everything_else() -> None:
    config = NodeConfig.default("site3-validator")
    assert config.node.moniker == "site3-validator"
    assert dataclasses.replace(config.node, moniker="node") == NodeConfig().node
    assert config.p2p == P2PSection()


def test_p2p_defaults_are_the_peer_layers_defaults() -> None:
    limits = P2PSection().apply_to(Limits())
    assert limits == Limits()


def test_the_default_dump_round_trips(tmp_path: Path) -> None:
    text = dump_config(NodeConfig.default())
    assert load_config(write(tmp_path, text)) == NodeConfig.default()
    assert "[mempool]\nmax_txs = 10000\n" in text


@given(node_configs)
def test_any_valid_configuration_round_trips_through_toml(config: NodeConfig) -> None:
    assert parse_config(dump_config(config)) == config


@given(st.text(max_size=30).filter(lambda s: "\x00" not in s))
def test_path_strings_survive_escaping(suffix: str) -> None:
    config = NodeConfig(node=dataclasses.replace(NodeConfig().node, data_dir="d" + suffix))
    assert parse_config(dump_config(config)).node.data_dir == "d" + suffix


def test_a_partial_file_overrides_only_what_it_names(tmp_path: Path) -> None:
    text = f"""
[p2p]
listen_address = "10.0.0.5:7000"
persistent_peers = ["{KEY}@10.0.0.6:7000"]
allowed_peer_keys = ["{"cd" * 32}"]

[mempool]
max_txs = 500
max_txs_per_signer = 50
"""
    config = load_config(write(tmp_path, text))
    assert config.p2p.listen == ("10.0.0.5", 7000)
    assert config.p2p.peer_addresses() == (PeerAddress(bytes.fromhex(KEY), "10.0.0.6:7000"),)
    assert config.p2p.allowed_keys() == frozenset({bytes.fromhex("cd" * 32)})
    assert config.mempool.max_txs == 500
    assert config.mempool.max_bytes == NodeConfig().mempool.max_bytes
    assert config.rpc == RPCSection()


def test_p2p_section_overrides_the_peer_limits_of_a_chain() -> None:
    base = Limits.for_params(ConsensusParams())
    section = P2PSection(handshake_timeout_ms=900, backoff_base_ms=10, backoff_cap_ms=20)
    limits = section.apply_to(base)
    assert (limits.handshake_timeout_ms, limits.backoff_base_ms, limits.backoff_cap_ms) == (
        900,
        10,
        20,
    )
    assert limits.consensus == base.consensus  # payload limits still follow the chain


def test_rpc_write_address_defaults_to_the_read_address() -> None:
    assert RPCSection().write_address == RPCSection().listen_address
    split = RPCSection(write_listen_address="127.0.0.1:9999")
    assert split.write_address == "127.0.0.1:9999"


def test_relative_paths_resolve_against_the_home(tmp_path: Path) -> None:
    node = NodeConfig().node
    assert node.resolve(tmp_path, node.genesis_file) == tmp_path / "genesis.json"
    assert node.resolve(tmp_path, "/abs/data") == Path("/abs/data")


def test_the_example_in_the_brief(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[mempool]\nmax_txs = "x"\n')
    assert message.endswith(
        'config.toml: [mempool] max_txs: must be an integer in [1, 1000000], got "x"'
    )


def bad_value(spec: Spec) -> object:
    """A value of the right TOML shape or a wrong one that the spec must refuse."""
    if isinstance(spec, IntSpec):
        return spec.low - 1
    if isinstance(spec, BoolSpec):
        return "yes"
    if isinstance(spec, ChoiceSpec):
        return "loud"
    if isinstance(spec, NameSpec):
        return "has space"
    if isinstance(spec, PathSpec):
        return ""
    if isinstance(spec, AddressSpec):
        return "no-port"
    assert isinstance(spec, ListSpec)
    return ["zz"]


@pytest.mark.parametrize(("section", "key", "spec"), ALL_OPTIONS, ids=OPTION_IDS)
def test_every_option_refuses_a_bad_value_naming_its_key(
    tmp_path: Path, section: str, key: str, spec: Spec
) -> None:
    bad = bad_value(spec)
    message = load_error(tmp_path, f"[{section}]\n{key} = {toml_value(bad)}\n")
    assert f": [{section}] {key}: " in message
    assert toml_value(bad).strip("[]") in message


@pytest.mark.parametrize(("section", "key"), [o[:2] for o in ALL_OPTIONS], ids=OPTION_IDS)
def test_every_option_refuses_a_table(tmp_path: Path, section: str, key: str) -> None:
    message = load_error(tmp_path, f"[{section}]\n{key} = {{ a = 1 }}\n")
    assert f": [{section}] {key}: must be" in message


def test_a_bool_is_not_an_integer(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[rpc]\nmax_wait_ms = true\n")
    assert message.endswith("[rpc] max_wait_ms: must be an integer in [0, 600000], got true")


def test_an_unknown_key_is_named_with_the_known_ones(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[mempool]\nmax_tx = 5\n")
    assert "[mempool] max_tx: unknown key" in message
    assert "max_txs" in message


def test_an_unknown_section_is_named(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[statesync]\nenable = true\n")
    assert "[statesync]: unknown section" in message
    assert "mempool" in message


def test_a_key_outside_any_section_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, "moniker = 'a'\n")
    assert "moniker: unknown top-level key" in message


def test_a_section_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, "log = 3\n")
    assert "[log]: must be a table, got 3" in message


def test_invalid_toml_is_reported_with_the_file(tmp_path: Path) -> None:
    assert "not valid TOML" in load_error(tmp_path, "[p2p\n")


def test_a_non_utf8_file_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_bytes(b"[log]\nlevel = '\xff'\n")
    with pytest.raises(ConfigError, match="not UTF-8"):
        load_config(path)


def test_a_missing_file_is_reported(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=f"^{missing}: cannot read config file"):
        load_config(missing)


def test_a_bad_peer_entry_is_named_by_index(tmp_path: Path) -> None:
    text = f'[p2p]\npersistent_peers = ["{KEY}@h:1", "{KEY[:-2]}@h:2"]\n'
    message = load_error(tmp_path, text)
    assert "[p2p] persistent_peers: entry 1" in message
    assert "nodekeyhex@host:port" in message


def test_a_repeated_peer_key_is_refused(tmp_path: Path) -> None:
    text = f'[p2p]\npersistent_peers = ["{KEY}@h:1", "{KEY}@g:2"]\n'
    assert "entry 1" in load_error(tmp_path, text)
    assert "repeats a node key" in load_error(tmp_path, text)


def test_backoff_cap_below_base_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[p2p]\nbackoff_base_ms = 500\nbackoff_cap_ms = 100\n")
    assert "[p2p] backoff_cap_ms: must be >= backoff_base_ms (500), got 100" in message


def test_per_signer_limit_above_pool_limit_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, "[mempool]\nmax_txs = 10\nmax_txs_per_signer = 11\n")
    assert "[mempool] max_txs_per_signer: must be <= max_txs (10), got 11" in message


def test_two_listeners_on_one_address_are_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[metrics]\nlisten_address = "127.0.0.1:26601"\n')
    assert '[metrics] listen_address: "127.0.0.1:26601" is already used by [rpc]' in message
    # A disabled metrics endpoint does not hold its address.
    text = '[metrics]\nenabled = false\nlisten_address = "127.0.0.1:26601"\n'
    assert load_config(write(tmp_path, text)).metrics.enabled is False


def test_write_address_equal_to_read_address_is_refused(tmp_path: Path) -> None:
    message = load_error(tmp_path, '[rpc]\nwrite_listen_address = "127.0.0.1:26601"\n')
    assert "[rpc] write_listen_address: equals listen_address" in message


def test_configuration_objects_are_frozen_and_slotted() -> None:
    config = NodeConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.mempool.max_txs = 1  # type: ignore[misc]
    instances: list[object] = [config, *(cls() for cls in SECTION_TYPES)]
    for instance in instances:
        assert "__slots__" in vars(type(instance))
        assert not hasattr(instance, "__dict__")


def test_building_a_section_in_code_is_validated_too() -> None:
    with pytest.raises(ConfigError, match=r"^\[p2p\] allowed_peer_keys: entry 0"):
        P2PSection(allowed_peer_keys=(SigningKey(b"\x01" * 32).public_key.hex()[:10],))
