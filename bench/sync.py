"""Block sync speed: how fast a validator with an empty store catches up.

Run: ``python -m bench.sync --blocks 10000`` (part of ``make bench`` with a
shorter chain; ``make bench-sync``). Prints the figures and writes
``bench/results/sync.json``.

1. **Build a chain** of ``--blocks`` blocks on a running network of
   ``--validators`` node processes (``bench.throughput.Network``: the real
   daemon, durable LevelDB with fsync, signatures on). To get many real blocks
   quickly, every node is configured to cut blocks as fast as consensus runs
   (``max_batch_delay_ms = 0``, ``empty_block_interval_ms = 1``) and to put at
   most ``--block-txs`` transactions in a block, while the open-loop load
   generator offers ``--tx-rate`` pre-signed ``access.log`` transactions per
   second. The chain is a mix of small blocks with transactions and empty ones,
   each a full PBFT round with its commit certificate.
2. **Stop every node**, put the default block policy back in every config
   (so the network makes an empty block a second, not hundreds), and **wipe
   the data directory of one validator** (``--node``, default the last),
   keeping its keys and config. This is the benchmark only: an operator must
   never copy or share a data directory between machines, and a validator
   that lost its store must resync like this one, not be restored from
   another's files.
3. **Restart the others**, wait until they serve the chain, then start the
   wiped validator and poll its ``/v1/status`` (``height``, ``catching_up_to``)
   until it reaches the others' height. It learns it is behind from a peer's
   periodic Status, requests blocks (``BlockRequest``, up to 32; a peer answers
   with at most ``SERVE_BLOCKS_MAX`` = 16 per ``BlockResponse``), checks each
   block's commit certificate, executes it and commits it (one fsynced
   LevelDB batch per block), then asks for more.

Reported: blocks/s and tx/s from the first synced block to caught up (and
from process start), the time to the first synced block, the syncing node's
CPU seconds per 1,000 blocks, and the chain's make-up. Compare ratios within
one run; this machine is shared.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import tempfile
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from bench.throughput import (
    BUILDS,
    RESULTS,
    Network,
    Tune,
    Workload,
    cpu_seconds,
    fresh_network,
    machine,
    measure,
    use_build,
)
from node.client import RpcClient
from node.config import CONFIG_FILE_NAME, ConsensusSection, NodeConfig, load_config
from node.testnet import ports

#: Longest load-generator run while building (the chain's height is checked between runs).
MAX_CHUNK_S: Final = 30.0


def fast_blocks(block_txs: int) -> Tune:
    """A config change: cut a block as soon as consensus allows, at most ``block_txs`` each."""

    def tune(config: NodeConfig) -> NodeConfig:
        consensus = dataclasses.replace(
            config.consensus,
            max_batch_delay_ms=0,
            empty_block_interval_ms=1,
            create_empty_blocks=True,
            max_block_txs=block_txs,
        )
        return dataclasses.replace(config, consensus=consensus)

    return tune


def default_blocks(config: NodeConfig) -> NodeConfig:
    return dataclasses.replace(config, consensus=ConsensusSection())


def metric(net: Network, i: int, name: str) -> float:
    """A counter from node ``i``'s Prometheus endpoint (0 if absent)."""
    url = f"http://127.0.0.1:{ports(net.base, i)[2]}/metrics"
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def height(net: Network, i: int, timeout_s: float = 5.0) -> int:
    return int(RpcClient(net.rpc(i), timeout_s=timeout_s).status()["height"])


def build_chain(
    net: Network, work: Workload, tmp: Path, *, blocks: int, tx_rate: float
) -> dict[str, Any]:
    """Run the load in chunks until node0 has ``blocks`` blocks."""
    started = time.monotonic()
    start_height = height(net, 0)
    sent = committed = 0
    chunk = 5.0
    while (now_height := height(net, 0)) < blocks:
        before_t, before_h = time.monotonic(), now_height
        if tx_rate > 0:
            row = measure(net, work, tx_rate, chunk, tmp, drain_s=2.0)
            sent += row["sent"]
            committed += row["committed"]
        else:
            time.sleep(chunk)
        rate = (height(net, 0) - before_h) / max(time.monotonic() - before_t, 1e-9)
        left = blocks - height(net, 0)
        chunk = min(MAX_CHUNK_S, max(1.0, left / max(rate, 1.0)))
        print(
            f"  building: height {height(net, 0)} of {blocks}, {rate:.0f} blocks/s",
            flush=True,
        )
    seconds = time.monotonic() - started
    built = height(net, 0)
    return {
        "height": built,
        "seconds": seconds,
        "blocks_s": (built - start_height) / seconds,
        "load_txs_sent": sent,
        "load_txs_committed": committed,
    }


def resync(net: Network, node: int, *, timeout_s: float) -> dict[str, Any]:
    """Stop all, restore the default block policy, wipe ``node``'s store, restart, time it."""
    net.stop()
    net.retune(default_blocks)
    data = net.node_home(node) / load_config(net.node_home(node) / CONFIG_FILE_NAME).node.data_dir
    shutil.rmtree(data)
    others = [i for i in range(net.validators) if i != node]
    for i in others:
        net.launch(i)
    net.wait_started(others)
    target = max(height(net, i) for i in others)
    print(
        f"  the others serve height {target}; starting node{node} with an empty store", flush=True
    )
    launched = time.monotonic()
    net.launch(node)
    pid = net.processes[node].pid
    cpu_before = cpu_seconds(pid)
    samples: list[dict[str, Any]] = []
    first: tuple[float, int] | None = None
    done: tuple[float, int] | None = None
    last_target_poll = 0.0
    client = RpcClient(net.rpc(node), timeout_s=2.0)
    while time.monotonic() - launched < timeout_s:
        now = time.monotonic()
        if now - last_target_poll >= 1.0:
            target = max(target, height(net, others[0]))
            last_target_poll = now
        try:
            status = client.status()
        except Exception:  # still starting
            time.sleep(0.1)
            continue
        at = time.monotonic() - launched
        h = int(status["height"])
        samples.append({"t": round(at, 3), "height": h, "catching_up_to": status["catching_up_to"]})
        if first is None and h > 0:
            first = (at, h)
        if h >= target:
            done = (at, h)
            break
        time.sleep(0.1)
    cpu = cpu_seconds(pid) - cpu_before
    if done is None or first is None:
        raise SystemExit(f"node{node} did not catch up to {target} within {timeout_s:.0f} s")
    synced_blocks = metric(net, node, "radledger_sync_blocks_total")
    txs = metric(net, node, "radledger_txs_committed_total")
    reader = RpcClient(net.rpc(others[0]), timeout_s=10)
    txs_before = sum(len(reader.get(f"/v1/blocks/{h}")["txs"]) for h in range(1, first[1] + 1))
    window = max(done[0] - first[0], 1e-9)
    return {
        "node": node,
        "target_height": target,
        "reached_height": done[1],
        "seconds_from_start": done[0],
        "seconds_to_first_block": first[0],
        "seconds_syncing": window,
        "blocks_synced": synced_blocks,
        "txs_synced": txs,
        "blocks_s": (done[1] - first[1]) / window,
        "blocks_s_from_start": done[1] / done[0],
        "tx_s": (txs - txs_before) / window,
        "tx_s_from_start": txs / done[0],
        "cpu_s": cpu,
        "cpu_s_per_1000_blocks": cpu * 1000 / max(done[1], 1),
        "samples": samples[:: max(1, len(samples) // 200)],
    }


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=10_000, help="chain length to build")
    parser.add_argument("--validators", type=int, default=4)
    parser.add_argument(
        "--tx-rate", type=float, default=200.0, help="tx/s offered while building (0: empty)"
    )
    parser.add_argument("--block-txs", type=int, default=10, help="most txs per block built")
    parser.add_argument("--payload", type=int, default=400)
    parser.add_argument("--node", type=int, default=None, help="validator to wipe (the last)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds allowed to sync")
    parser.add_argument("--out", type=Path, default=RESULTS / "sync.json")
    parser.add_argument(
        "--build",
        choices=BUILDS,
        default="native",
        help="run the nodes compiled with mypyc (native, the default, as bench.throughput) "
        "or interpreted",
    )
    args = parser.parse_args(argv)
    use_build(args.build)
    node = args.validators - 1 if args.node is None else args.node
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory(prefix="radledger-sync-") as tmp_name:
        tmp = Path(tmp_name)
        with fresh_network(
            tmp, "net", args.validators, args.payload, tune=fast_blocks(args.block_txs)
        ) as (net, work):
            chain = build_chain(net, work, tmp, blocks=args.blocks, tx_rate=args.tx_rate)
            chain_txs = metric(net, 0, "radledger_txs_committed_total")
            chain["txs"] = chain_txs
            print(
                f"built {chain['height']} blocks holding {chain_txs:.0f} txs in "
                f"{chain['seconds']:.0f} s ({chain['blocks_s']:.0f} blocks/s)",
                flush=True,
            )
            timeout = args.timeout or max(120.0, chain["height"] / 10)
            sync = resync(net, node, timeout_s=timeout)
    print(f"machine: {machine()}")
    print(
        f"node{node} caught up {sync['reached_height']} blocks ({sync['txs_synced']:.0f} txs): "
        f"{sync['blocks_s']:.0f} blocks/s and {sync['tx_s']:.0f} tx/s while syncing "
        f"({sync['seconds_syncing']:.1f} s), "
        f"first block after {sync['seconds_to_first_block']:.1f} s, "
        f"{sync['blocks_s_from_start']:.0f} blocks/s from process start; "
        f"CPU {sync['cpu_s_per_1000_blocks']:.1f} s per 1,000 blocks"
    )
    result = {
        "machine": machine(),
        "validators": args.validators,
        "build": {
            "blocks": args.blocks,
            "tx_rate": args.tx_rate,
            "block_txs": args.block_txs,
            "payload": args.payload,
            **chain,
        },
        "sync": sync,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
