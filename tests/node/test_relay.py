"""The runtime's relay rule (what a node passes on, to whom, when) and its bounded caches.

A client's transaction goes to every peer at once. One that arrived from
another validator's node (which sent it to every validator itself) goes on at
once only to non-validator peers, and to the validators only if it is still
pending after ``relay_delay_ms``: that covers a link of the origin's that was
down, without every transaction crossing the mesh twice more.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.keys import SigningKey, load_key_file
from ledger.types import Tx
from node.daemon import load_home, open_data
from node.runtime import NodeRuntime
from node.testnet import ADMIN_KEY_FILE, create_testnet
from p2p import PeerConfig
from tests.factories import enroll_tx

CHAIN = "radledger-testnet"
DELAY_MS = 2_000


@dataclass
class RecordingNetwork:
    """Stands in for the peer layer: records every gossip call."""

    calls: list[tuple[bytes, bytes | None, bool]] = field(default_factory=list)

    def gossip_tx(self, tx: Tx, origin: bytes | None = None, *, validators: bool = True) -> int:
        self.calls.append((tx.hash, origin, validators))
        return 1


@dataclass
class Node:
    runtime: NodeRuntime
    network: RecordingNetwork
    admins: list[SigningKey]
    peer_validator_node: bytes  # the node key of another validator


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    testnet = create_testnet(tmp_path / "net", 4, base_port=47100)
    home = load_home(testnet.nodes[0].home)
    store = open_data(home)
    peer_config = PeerConfig.from_genesis(home.genesis, home.node_key, listen_port=0)
    runtime = NodeRuntime(
        genesis=home.genesis,
        validator_key=home.validator_key,
        store=store,
        peer_config=peer_config,
        relay_delay_ms=DELAY_MS,
    )
    network = RecordingNetwork()
    runtime.network = network  # type: ignore[assignment]
    admins = [load_key_file(testnet.nodes[i].home / ADMIN_KEY_FILE) for i in range(4)]
    other = next(k for k in peer_config.validators if k != home.node_key.public_key)
    yield Node(runtime, network, admins, other)
    store.close()


def _tx(node: Node, nonce: int) -> Tx:
    return enroll_tx(node.admins[0], nonce, chain_id=CHAIN, site="site0")


def test_a_client_transaction_goes_to_every_peer_at_once(node: Node) -> None:
    tx = _tx(node, 1)
    node.runtime.admit(tx)
    assert node.network.calls == [(tx.hash, None, True)]
    assert node.runtime.relay_due(float("inf")) == 0  # nothing waits for a relay


def test_a_validators_transaction_goes_to_non_validators_now_and_validators_later(
    node: Node,
) -> None:
    tx = _tx(node, 1)
    origin = node.peer_validator_node
    node.runtime.admit(tx, origin=origin)
    assert node.network.calls == [(tx.hash, origin, False)]
    assert node.runtime.relay_due(0.0) == 0  # not due yet
    assert node.runtime.relay_due(float("inf")) == 1
    assert node.network.calls[-1] == (tx.hash, origin, True)


def test_a_transaction_committed_before_its_relay_is_not_relayed(node: Node) -> None:
    first, second = _tx(node, 1), _tx(node, 2)
    origin = node.peer_validator_node
    node.runtime.admit(first, origin=origin)
    node.runtime.admit(second, origin=origin)
    node.runtime.mempool.drop([first])  # as a commit would
    assert node.runtime.relay_due(float("inf")) == 1
    assert node.network.calls[-1] == (second.hash, origin, True)


def test_a_non_validator_peers_transaction_goes_to_every_peer_at_once(node: Node) -> None:
    tx = _tx(node, 1)
    stranger = b"\x42" * 32  # e.g. an archive's full node, not a validator
    node.runtime.admit(tx, origin=stranger)
    assert node.network.calls == [(tx.hash, stranger, True)]


def test_a_relay_delay_of_zero_relays_everything_at_once(tmp_path: Path) -> None:
    testnet = create_testnet(tmp_path / "net", 4, base_port=47200)
    home = load_home(testnet.nodes[0].home)
    store = open_data(home)
    peer_config = PeerConfig.from_genesis(home.genesis, home.node_key, listen_port=0)
    runtime = NodeRuntime(
        genesis=home.genesis,
        validator_key=home.validator_key,
        store=store,
        peer_config=peer_config,
        relay_delay_ms=0,
    )
    network = RecordingNetwork()
    runtime.network = network  # type: ignore[assignment]
    admin = load_key_file(testnet.nodes[0].home / ADMIN_KEY_FILE)
    origin = next(k for k in peer_config.validators if k != home.node_key.public_key)
    tx = enroll_tx(admin, 1, chain_id=CHAIN, site="site0")
    try:
        runtime.admit(tx, origin=origin)
        assert network.calls == [(tx.hash, origin, True)]
    finally:
        store.close()


def test_write_sets_of_committed_heights_are_forgotten(node: Node) -> None:
    """Proposals of views that changed leave executed write sets behind; once their
    height is committed they can never be used, so they must not pile up."""
    runtime = node.runtime
    runtime._remember_writes(b"a" * 32, 5, {b"k": b"v"})
    runtime._remember_writes(b"b" * 32, 5, {b"k": b"w"})
    runtime._remember_writes(b"c" * 32, 6, {b"k": b"x"})
    runtime._forget_writes_through(5)
    assert list(runtime._writes) == [b"c" * 32]
