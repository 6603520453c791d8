"""``radledger run``: load a node's home, start everything, stop cleanly on a signal.

Start-up refuses, with one line naming the file and what to do, a missing or
malformed config, genesis or key file, a key that is not this genesis's, and a
data directory that belongs to another chain or is held by another process.
SIGTERM/SIGINT stop the RPC first (no new writes), then consensus and the peer
layer, then close LevelDB; the exit code is 0, or 1 if consensus halted on a
fatal error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from ledger.errors import GenesisError, KeyFileError
from ledger.genesis import Genesis
from ledger.keys import SigningKey, load_key_file
from node.config import ConfigError, NodeConfig, load_config
from node.mempool import MempoolLimits
from node.rpc import Rpc
from node.runtime import BlockPolicy, NodeRuntime
from p2p import Limits, PeerConfig
from p2p.config import split_address
from storage import LevelDBStore, StorageError, open_store

log = logging.getLogger("radledger.daemon")


class StartupError(Exception):
    """The node cannot start; the message says why and what to do."""


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.server").addFilter(_client_protocol_errors)


def _client_protocol_errors(record: logging.LogRecord) -> bool:
    """A client's malformed HTTP request (aiohttp answers it 400 itself) is logged as
    one WARNING line naming the problem, not as an ERROR with a traceback that reads
    like a fault of the node."""
    error = record.exc_info[1] if record.exc_info else None
    if isinstance(error, HttpProcessingError):
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        first = str(error.message).strip().splitlines()[0] if error.message else ""
        record.msg = "refused a malformed HTTP request (%d): %s"
        record.args = (error.code, first)
        record.exc_info = record.exc_text = None
    return True


@dataclass(frozen=True, slots=True)
class Home:
    """Everything read from a node's home directory before anything starts."""

    path: Path
    config: NodeConfig
    genesis: Genesis
    node_key: SigningKey
    validator_key: SigningKey


def load_home(home: Path) -> Home:
    try:
        config = load_config(home / "config.toml")
        genesis = Genesis.load(home / config.node.genesis_file)
        node_key = load_key_file(home / config.node.node_key_file)
        validator_key = load_key_file(home / config.node.validator_key_file)
    except (ConfigError, GenesisError, KeyFileError) as exc:
        raise StartupError(str(exc)) from None
    mine = [v for v in genesis.validators if v.validator_key == validator_key.public_key]
    if not mine:
        raise StartupError(
            f"{home / config.node.validator_key_file}: this key is not a validator of chain "
            f"{genesis.chain_id!r}; use the key that genesis names"
        )
    if mine[0].node_key != node_key.public_key:
        raise StartupError(
            f"{home / config.node.node_key_file}: genesis names another node key for validator "
            f"{mine[0].name}"
        )
    return Home(home, config, genesis, node_key, validator_key)


def open_data(home: Home) -> LevelDBStore:
    path = home.path / home.config.node.data_dir / "ledger.db"
    try:
        return open_store(
            path, chain_id=home.genesis.chain_id, genesis_hash=home.genesis.hash, create=True
        )
    except StorageError as exc:
        raise StartupError(str(exc)) from None


async def _serve(app: web.Application, address: str) -> web.AppRunner:
    host, port = split_address(address)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner


async def run_node(home: Home) -> int:
    config = home.config
    store = open_data(home)
    host, port = config.p2p.listen
    # Validators are dialled at their genesis addresses; config adds the others.
    validator_nodes = {v.node_key for v in home.genesis.validators}
    extra_peers = [p for p in config.p2p.peer_addresses() if p.node_key not in validator_nodes]
    peer_config = PeerConfig.from_genesis(
        home.genesis,
        home.node_key,
        listen_host=host,
        listen_port=port,
        extra_peers=extra_peers,
        allowed_node_keys=config.p2p.allowed_keys(),
        limits=config.p2p.apply_to(Limits.for_params(home.genesis.params)),
    )
    # Idle blocks must come faster than the view timeout, or idle replicas would
    # suspect an honest primary (docs/OPERATIONS.md).
    idle_ms = min(
        config.consensus.empty_block_interval_ms, home.genesis.params.view_timeout_ms // 2
    )
    runtime = NodeRuntime(
        genesis=home.genesis,
        validator_key=home.validator_key,
        store=store,
        peer_config=peer_config,
        mempool_limits=MempoolLimits(
            max_txs=config.mempool.max_txs,
            max_bytes=config.mempool.max_bytes,
            max_txs_per_signer=config.mempool.max_txs_per_signer,
            max_tx_bytes=config.mempool.max_tx_bytes,
        ),
        policy=BlockPolicy(
            max_batch_delay_ms=config.consensus.max_batch_delay_ms,
            empty_block_interval_ms=idle_ms,
            create_empty_blocks=config.consensus.create_empty_blocks,
            max_block_txs=config.consensus.max_block_txs,
        ),
        relay_delay_ms=config.mempool.relay_delay_ms,
    )
    runners: list[web.AppRunner] = []
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await runtime.start()
        separate_writes = bool(config.rpc.write_listen_address)
        reads = Rpc(
            runtime,
            max_body_bytes=config.rpc.max_body_bytes,
            max_wait_ms=config.rpc.max_wait_ms,
            writes=not separate_writes,
        )
        runners.append(await _serve(reads.app, config.rpc.listen_address))
        if separate_writes:
            writes = Rpc(
                runtime,
                max_body_bytes=config.rpc.max_body_bytes,
                max_wait_ms=config.rpc.max_wait_ms,
                reads=False,
            )
            runners.append(await _serve(writes.app, config.rpc.write_listen_address))
        if config.metrics.enabled:
            metrics_app = web.Application()
            metrics_app.router.add_get("/metrics", reads.metrics)
            runners.append(await _serve(metrics_app, config.metrics.listen_address))
        log.info(
            "node %s up: chain %s, height %d, p2p %s, rpc http://%s",
            config.node.moniker,
            home.genesis.chain_id,
            store.latest_height(),
            config.p2p.listen_address,
            config.rpc.listen_address,
        )
        while not stop.is_set() and runtime.fatal is None:
            try:
                await asyncio.wait_for(stop.wait(), 0.5)
            except TimeoutError:
                continue
    finally:
        log.info("shutting down")
        for runner in runners:  # no new RPC writes from here on
            await runner.cleanup()
        await runtime.stop()
        height = store.latest_height()
        store.close()
        log.info("stopped at height %d", height)
    return 1 if runtime.fatal is not None else 0
