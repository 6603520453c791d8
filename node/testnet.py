"""A local test network on one machine: genesis, keys and a config per validator.

:func:`create_testnet` writes into an empty (or new) directory ``out``::

    out/genesis.json
    out/node{i}/config.toml          # 127.0.0.1, ports below, all other nodes as peers
    out/node{i}/genesis.json         # a copy, so each node directory is a complete home
    out/node{i}/node_key.json        # transport identity          (mode 0600)
    out/node{i}/validator_key.json   # consensus (voting) key      (mode 0600)
    out/node{i}/admin_key.json       # admin key of site{i}        (mode 0600)

Node ``i`` uses port ``base + 10*i`` for p2p, ``base + 10*i + 1`` for RPC and
``base + 10*i + 2`` for metrics. It refuses a non-empty ``out`` so it can never
overwrite a key.
"""

from __future__ import annotations

import dataclasses
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from ledger.errors import KeyFileError
from ledger.genesis import (
    GENESIS_VERSION,
    MIN_VALIDATORS,
    ConsensusParams,
    Genesis,
    Site,
    Validator,
)
from ledger.keys import SigningKey, write_key_file
from ledger.types import CHAIN_ID_PATTERN, MAX_VALIDATORS
from node.config import (
    CONFIG_FILE_NAME,
    DEFAULT_P2P_PORT,
    MetricsSection,
    NodeConfig,
    NodeSection,
    RPCSection,
    dump_config,
)

DEFAULT_CHAIN_ID: Final = "radledger-testnet"
DEFAULT_BASE_PORT: Final = DEFAULT_P2P_PORT
PORT_STRIDE: Final = 10
HOST: Final = "127.0.0.1"
GENESIS_FILE: Final = "genesis.json"
NODE_KEY_FILE: Final = "node_key.json"
VALIDATOR_KEY_FILE: Final = "validator_key.json"
ADMIN_KEY_FILE: Final = "admin_key.json"


class TestnetError(Exception):
    """The test network cannot be created; the message names the path or option."""

    __test__ = False  # not a pytest test class


def ports(base_port: int, index: int) -> tuple[int, int, int]:
    """(p2p, rpc, metrics) ports of node ``index``."""
    first = base_port + PORT_STRIDE * index
    return first, first + 1, first + 2


@dataclass(frozen=True, slots=True)
class GeneratedNode:
    """One node of a generated network: its home directory, ports and public keys."""

    name: str
    home: Path
    p2p_port: int
    rpc_port: int
    metrics_port: int
    node_key: bytes
    validator_key: bytes
    admin_key: bytes

    @property
    def p2p_address(self) -> str:
        return f"{HOST}:{self.p2p_port}"


@dataclass(frozen=True, slots=True)
class GeneratedNetwork:
    out: Path
    genesis: Genesis
    nodes: tuple[GeneratedNode, ...]

    def summary(self) -> list[str]:
        """Lines for an operator: chain, genesis hash, and each node's home and ports."""
        lines = [
            f"chain {self.genesis.chain_id}: {len(self.nodes)} validators, "
            f"genesis {self.out / GENESIS_FILE}",
            f"genesis hash {self.genesis.hash.hex()}",
        ]
        lines.extend(
            f"{node.name}: {node.home}  p2p {HOST}:{node.p2p_port}  rpc {HOST}:{node.rpc_port}"
            f"  metrics {HOST}:{node.metrics_port}"
            for node in self.nodes
        )
        return lines


def _check_arguments(validators: int, chain_id: str, base_port: int) -> None:
    if validators < MIN_VALIDATORS:
        raise TestnetError(
            f"a BFT network needs at least {MIN_VALIDATORS} validators "
            f"(n >= 3f + 1 with f >= 1), got {validators}"
        )
    if validators > MAX_VALIDATORS:
        raise TestnetError(f"at most {MAX_VALIDATORS} validators, got {validators}")
    last = ports(base_port, validators - 1)[-1]
    if base_port < 1 or last > 65535:
        raise TestnetError(
            f"base port {base_port}: {validators} validators need ports {base_port}..{last}, "
            "which must lie in [1, 65535]"
        )
    if re.fullmatch(CHAIN_ID_PATTERN, chain_id) is None:
        raise TestnetError(f"chain id {chain_id!r} does not match {CHAIN_ID_PATTERN}")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise TestnetError(f"{out}: exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        raise TestnetError(f"{out}: directory is not empty; refusing to overwrite keys")


def _node_config(index: int, base_port: int, peers: list[str]) -> NodeConfig:
    p2p_port, rpc_port, metrics_port = ports(base_port, index)
    default = NodeConfig.default()
    return dataclasses.replace(
        default,
        node=NodeSection(moniker=f"node{index}"),
        p2p=dataclasses.replace(
            default.p2p, listen_address=f"{HOST}:{p2p_port}", persistent_peers=tuple(peers)
        ),
        rpc=RPCSection(listen_address=f"{HOST}:{rpc_port}"),
        metrics=MetricsSection(enabled=True, listen_address=f"{HOST}:{metrics_port}"),
    )


def create_testnet(
    out: str | os.PathLike[str],
    validators: int,
    *,
    chain_id: str = DEFAULT_CHAIN_ID,
    base_port: int = DEFAULT_BASE_PORT,
    genesis_time_ms: int | None = None,
) -> GeneratedNetwork:
    """Generate keys, genesis and configs for ``validators`` local nodes under ``out``."""
    target = Path(out)
    _check_arguments(validators, chain_id, base_port)
    _check_out(target)
    node_keys = [SigningKey.generate() for _ in range(validators)]
    validator_keys = [SigningKey.generate() for _ in range(validators)]
    admin_keys = [SigningKey.generate() for _ in range(validators)]
    addresses = [f"{HOST}:{ports(base_port, i)[0]}" for i in range(validators)]
    genesis = Genesis(
        version=GENESIS_VERSION,
        chain_id=chain_id,
        genesis_time_ms=time.time_ns() // 1_000_000 if genesis_time_ms is None else genesis_time_ms,
        validators=tuple(
            Validator(
                name=f"node{i}",
                site_id=f"site{i}",
                validator_key=validator_keys[i].public_key,
                node_key=node_keys[i].public_key,
                address=addresses[i],
            )
            for i in range(validators)
        ),
        sites=tuple(
            Site(site_id=f"site{i}", name=f"site{i}", admin_key=admin_keys[i].public_key)
            for i in range(validators)
        ),
        params=ConsensusParams(),
    )
    peer_entries = [
        f"{key.public_key.hex()}@{addr}" for key, addr in zip(node_keys, addresses, strict=True)
    ]
    nodes = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        genesis.save(target / GENESIS_FILE)
        for i in range(validators):
            home = target / f"node{i}"
            home.mkdir()
            peers = peer_entries[:i] + peer_entries[i + 1 :]
            with (home / CONFIG_FILE_NAME).open("x", encoding="utf-8") as handle:
                handle.write(dump_config(_node_config(i, base_port, peers)))
            genesis.save(home / GENESIS_FILE)
            write_key_file(home / NODE_KEY_FILE, node_keys[i])
            write_key_file(home / VALIDATOR_KEY_FILE, validator_keys[i])
            write_key_file(home / ADMIN_KEY_FILE, admin_keys[i])
            p2p_port, rpc_port, metrics_port = ports(base_port, i)
            nodes.append(
                GeneratedNode(
                    name=f"node{i}",
                    home=home,
                    p2p_port=p2p_port,
                    rpc_port=rpc_port,
                    metrics_port=metrics_port,
                    node_key=node_keys[i].public_key,
                    validator_key=validator_keys[i].public_key,
                    admin_key=admin_keys[i].public_key,
                )
            )
    except OSError as exc:
        where = exc.filename if exc.filename is not None else target
        raise TestnetError(f"{where}: cannot write: {exc.strerror}") from None
    except KeyFileError as exc:
        raise TestnetError(str(exc)) from None
    return GeneratedNetwork(out=target, genesis=genesis, nodes=tuple(nodes))
