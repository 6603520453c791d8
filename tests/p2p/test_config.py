"""Peer configuration: built from genesis, validated, limits with units."""

from __future__ import annotations

import dataclasses

import pytest

from ledger.genesis import ConsensusParams
from ledger.keys import SigningKey
from p2p.config import KindLimits, Limits, PeerAddress, PeerConfig, split_address, tx_limits
from p2p.frames import Kind
from tests.factories import make_genesis


def test_from_genesis_accepts_all_validators_and_dials_the_others() -> None:
    genesis = make_genesis(4)
    me = SigningKey(bytes([102]) * 32)  # val2's node key in the factory
    observer = SigningKey(b"\x77" * 32).public_key
    config = PeerConfig.from_genesis(genesis, me, allowed_node_keys=[observer])
    assert config.chain_id == genesis.chain_id
    assert config.listen_port == 26602  # our own genesis address
    assert {p.node_key for p in config.persistent_peers} == {
        v.node_key for v in genesis.validators if v.node_key != me.public_key
    }
    assert config.validators[genesis.validators[0].node_key] == genesis.validators[0].validator_key
    assert config.validator_keys == genesis.validator_keys
    assert observer in config.accepted_keys
    assert me.public_key in config.accepted_keys
    assert config.limits.tx.max_payload_bytes == genesis.params.max_tx_bytes


def test_a_non_validator_listens_on_an_ephemeral_port_by_default() -> None:
    config = PeerConfig.from_genesis(make_genesis(4), SigningKey(b"\x78" * 32))
    assert config.listen_port == 0
    assert len(config.persistent_peers) == 4


def test_extra_peers_are_dialed_and_allowed() -> None:
    extra = PeerAddress(SigningKey(b"\x79" * 32).public_key, "archive.example.org:26656")
    config = PeerConfig.from_genesis(make_genesis(4), SigningKey(b"\x78" * 32), extra_peers=[extra])
    assert extra in config.persistent_peers
    assert extra.node_key in config.accepted_keys


def test_limits_follow_the_consensus_parameters() -> None:
    params = ConsensusParams(max_block_bytes=1024 * 1024, max_tx_bytes=4096)
    limits = Limits.for_params(params)
    assert limits.tx.max_payload_bytes == 4096
    assert limits.consensus.max_payload_bytes >= 2 * params.max_block_bytes
    assert limits.max_frame_bytes == limits.consensus.max_payload_bytes + 5 + 16
    assert limits.max_payload_bytes[Kind.SYNC] == limits.sync.max_payload_bytes


def test_invalid_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_queue_bytes"):
        KindLimits(100, 10, 99, 1.0, 1, 1.0, 100)
    with pytest.raises(ValueError, match="burst_bytes"):
        dataclasses.replace(tx_limits(1000), burst_bytes=999)
    with pytest.raises(ValueError, match="backoff_cap_ms"):
        Limits(backoff_base_ms=100, backoff_cap_ms=50)
    with pytest.raises(ValueError, match="handshake_timeout_ms"):
        Limits(handshake_timeout_ms=0)


def test_invalid_configs_are_refused() -> None:
    me = SigningKey(b"\x01" * 32)
    other = SigningKey(b"\x02" * 32).public_key
    with pytest.raises(ValueError, match="itself"):
        PeerConfig("c", me, persistent_peers=(PeerAddress(me.public_key, "h:1"),))
    with pytest.raises(ValueError, match="would not accept"):
        PeerConfig("c", me, persistent_peers=(PeerAddress(other, "h:1"),))
    with pytest.raises(ValueError, match="validator_keys"):
        PeerConfig("c", me, validators={other: b"\x03" * 32})
    with pytest.raises(ValueError, match="twice"):
        PeerConfig(
            "c",
            me,
            persistent_peers=(PeerAddress(other, "h:1"), PeerAddress(other, "h:2")),
            allowed_node_keys=frozenset({other}),
        )


def test_addresses() -> None:
    assert split_address("10.0.0.1:26656") == ("10.0.0.1", 26656)
    assert split_address("[::1]:7000") == ("[::1]", 7000)
    for bad in ("nohost", "host:0", "host:70000", "host port:1"):
        with pytest.raises(ValueError):
            split_address(bad)
    with pytest.raises(ValueError):
        PeerAddress(b"short", "h:1")
