"""A real 4-validator network: separate `radledger run` processes on 127.0.0.1.

Transactions over every node's RPC, SIGKILL of replicas and of the primary,
restarts, and a table of bad RPC requests; afterwards every node must hold the
same blocks, state roots and transactions, each exactly once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ledger.keys import SigningKey, load_key_file
from ledger.types import Tx
from node.testnet import ADMIN_KEY_FILE, GeneratedNetwork, create_testnet, ports
from tests.factories import enroll_tx

CHAIN = "radledger-testnet"
ROOT = Path(__file__).resolve().parents[2]


def _free_base() -> int:
    """A base port whose node ports are free now, below the kernel's ephemeral range
    (32768-60999 by default): a port in that range can be taken, while its node is
    down, as the source port of some outgoing connection, and the restarted node
    then cannot bind it (the kill loop of ``make faults`` hit exactly that)."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20_000, 32_000, 100)
        try:
            sockets = []
            for i in range(4):
                for port in ports(base, i):
                    s = socket.socket()
                    s.bind(("127.0.0.1", port))
                    sockets.append(s)
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
        return base
    raise RuntimeError("no free ports")


class Network:
    def __init__(self, network: GeneratedNetwork, base: int) -> None:
        self.net = network
        self.base = base
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, i: int) -> None:
        home = self.net.nodes[i].home
        log = (home / "node.log").open("ab")
        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "node", "run", "--home", str(home)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )

    def admin(self, site: int) -> SigningKey:
        """The admin key of site ``site`` (a valid signer of registry transactions)."""
        return load_key_file(self.net.nodes[site].home / ADMIN_KEY_FILE)

    def kill(self, i: int) -> None:
        self.procs[i].send_signal(signal.SIGKILL)
        self.procs[i].wait()

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def url(self, i: int, path: str) -> str:
        return f"http://127.0.0.1:{ports(self.base, i)[1]}{path}"

    def get(self, i: int, path: str) -> Any:
        with urllib.request.urlopen(self.url(i, path), timeout=5) as response:
            return json.load(response)

    def post(self, i: int, path: str, body: bytes) -> tuple[int, Any]:
        request = urllib.request.Request(
            self.url(i, path),
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, json.load(response)
        except urllib.error.HTTPError as exc:
            return exc.code, json.load(exc)

    def height(self, i: int) -> int:
        try:
            return int(self.get(i, "/v1/status")["height"])
        except (OSError, ValueError):
            return -1


def wait_for(condition: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    base = _free_base()
    net = Network(create_testnet(tmp_path / "net", 4, base_port=base), base)
    for i in range(4):
        net.start(i)
    try:
        wait_for(lambda: min(net.height(i) for i in range(4)) >= 1, 60, "the first block")
        yield net
    finally:
        net.stop_all()


def enroll(net: Network, site: int, nonce: int) -> Tx:
    """A registry transaction needing no prior state: site ``site`` enrolls a researcher."""
    return enroll_tx(net.admin(site), nonce, chain_id=CHAIN, site=f"site{site}")


def submit(net: Network, site: int, nonce: int, node: int) -> str:
    tx = enroll(net, site, nonce)
    status, body = net.post(node, "/v1/txs", json.dumps({"tx": tx.encode().hex()}).encode())
    assert status == 202, body
    return tx.hash.hex()


def submit_to_any(net: Network, site: int, nonce: int, exclude: int) -> str:
    """Submit through whichever other node answers (some may be restarting)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for node in range(4):
            if node == exclude:
                continue
            try:
                return submit(net, site, nonce, node)
            except urllib.error.URLError:
                continue
        time.sleep(0.2)
    raise AssertionError("no node accepted the transaction")


def kill_loop(net: Network, rounds: int) -> list[str]:
    """SIGKILL a random node at a random moment, submit through another, restart it;
    ``rounds`` times, then wait until all nodes agree on the height."""
    seed = int(os.environ.get("RADLEDGER_SEED", int.from_bytes(os.urandom(4), "big")))
    print(f"kill loop: reproduce with RADLEDGER_SEED={seed}")
    rng = random.Random(seed)
    sent = []
    for round_ in range(rounds):
        victim = rng.randrange(4)
        time.sleep(rng.uniform(0.0, 0.6))
        net.kill(victim)
        sent.append(submit_to_any(net, 3, 1_000_000 + round_, exclude=victim))
        time.sleep(rng.uniform(0.0, 0.6))
        net.start(victim)
    wait_for(
        lambda: len({net.height(i) for i in range(4)}) == 1 and net.height(0) > 0,
        120,
        "all nodes to agree on the height after the kill loop",
    )
    return sent


def assert_agreement(net: Network, nodes: list[int]) -> int:
    """Identical block hashes and state roots on every node up to the lowest height."""
    top = min(net.height(i) for i in nodes)
    for height in range(1, top + 1):
        blocks = [net.get(i, f"/v1/blocks/{height}") for i in nodes]
        assert len({b["hash"] for b in blocks}) == 1, height
        assert len({b["header"]["state_root"] for b in blocks}) == 1, height
    return top


def committed_txs(net: Network, node: int) -> list[str]:
    hashes: list[str] = []
    for height in range(1, net.height(node) + 1):
        hashes.extend(net.get(node, f"/v1/blocks/{height}")["txs"])
    return hashes


def test_thousand_transactions_crashes_and_agreement(network: Network) -> None:
    net = network
    sent: list[str] = []
    for n in range(250):
        for site in range(4):
            sent.append(submit(net, site, n + 1, (n + site) % 4))
    wait_for(
        lambda: all(net.get(0, f"/v1/txs/{h}")["status"] == "committed" for h in sent[-8:]),
        60,
        "the last transactions to commit",
    )
    wait_for(lambda: min(net.height(i) for i in range(4)) >= net.height(0) - 1, 30, "all nodes")
    top = assert_agreement(net, [0, 1, 2, 3])
    on_chain = committed_txs(net, 0)
    assert len(on_chain) == len(set(on_chain)), "a transaction was committed twice"
    assert set(sent) <= set(on_chain), "a transaction was lost"

    # Kill -9 a non-primary, keep submitting, restart it: it catches up and agrees.
    net.kill(2)
    more = [submit(net, 0, 251 + i, i % 2) for i in range(20)]
    net.start(2)
    wait_for(lambda: net.height(2) >= net.height(0) > top, 60, "node2 to catch up")
    # Kill -9 the primary (view 0: node0): a view change, then commits go on.
    net.kill(0)
    later = [submit(net, 1, 251 + i, 1 + i % 3) for i in range(20)]
    wait_for(
        lambda: all(net.get(1, f"/v1/txs/{h}")["status"] == "committed" for h in later),
        90,
        "commits after the primary died",
    )
    assert net.get(1, "/v1/status")["view"] >= 1
    net.start(0)
    wait_for(lambda: net.height(0) >= net.height(1), 60, "the old primary to rejoin")
    # Kills at random moments, in a loop.
    kill_loop(net, rounds=20)
    assert_agreement(net, [0, 1, 2, 3])
    final = committed_txs(net, 3)
    assert len(final) == len(set(final))
    assert set(sent + more + later) <= set(final)


BAD_REQUESTS: list[tuple[str, str, bytes, int, str]] = [
    ("POST", "/v1/txs", b"not json", 400, "malformed_json"),
    ("POST", "/v1/txs", b"[1, 2]", 400, "invalid_request"),
    ("POST", "/v1/txs", b'{"tx": 7}', 400, "invalid_request"),
    ("POST", "/v1/txs", b'{"tx": "zz"}', 400, "invalid_hex"),
    ("POST", "/v1/txs", b'{"tx": "a0"}', 400, "malformed_tx"),
    ("POST", "/v1/txs", b'{"tx": "' + b"00" * 2_000_000 + b'"}', 413, "body_too_large"),
    ("GET", "/v1/txs/abc", b"", 400, "invalid_hex"),
    ("GET", "/v1/txs/" + "00" * 32, b"", 404, "not_found"),
    ("GET", "/v1/blocks/-1", b"", 400, "invalid_height"),
    ("GET", "/v1/blocks/99999999", b"", 404, "not_found"),
]


def test_bad_rpc_input_gets_documented_errors(network: Network) -> None:
    net = network
    for method, path, body, status, code in BAD_REQUESTS:
        if method == "POST":
            got_status, got = net.post(0, path, body)
        else:
            try:
                got_status, got = 200, net.get(0, path)
            except urllib.error.HTTPError as exc:
                got_status, got = exc.code, json.load(exc)
        assert got_status == status, (path, body[:40], got)
        assert got["error"]["code"] == code, (path, got)
    key = net.admin(0)
    good = enroll(net, 0, 1)
    wrong_chain = enroll_tx(key, 1, chain_id="other")
    unknown_kind = Tx.create(key, chain_id=CHAIN, kind="dataset.frobnicate", nonce=2, body={})
    not_member = enroll_tx(SigningKey.generate(), 1, chain_id=CHAIN)
    forged = dataclasses.replace(good, sig=bytes(64))
    for tx, status, code in [
        (wrong_chain, 400, "wrong_chain"),
        (unknown_kind, 400, "unknown_kind"),
        (forged, 400, "bad_signature"),
        (not_member, 403, "not_site_admin"),
    ]:
        got_status, got = net.post(0, "/v1/txs", json.dumps({"tx": tx.encode().hex()}).encode())
        assert (got_status, got["error"]["code"]) == (status, code)
    status, body = net.post(
        0, "/v1/txs?wait=commit", json.dumps({"tx": good.encode().hex()}).encode()
    )
    assert status == 200, body
    replay_status, replay = net.post(0, "/v1/txs", json.dumps({"tx": good.encode().hex()}).encode())
    assert (replay_status, replay["error"]["code"]) == (409, "nonce_reused")
    before = net.height(0)
    wait_for(lambda: net.height(0) > before, 30, "the node to keep committing")
    metrics_url = f"http://127.0.0.1:{ports(net.base, 0)[2]}/metrics"
    with urllib.request.urlopen(metrics_url, timeout=5) as response:
        metrics = response.read().decode()
    values = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in metrics.splitlines()
        if line and not line.startswith("#")
    }
    assert values["radledger_tx_commit_latency_seconds_count"] >= 1
    assert values["radledger_consensus_rounds_per_height_count"] >= 1
    assert values["radledger_block_size_bytes_sum"] > 0
    assert values["radledger_p2p_peers"] == 3
    assert values["radledger_consensus_height"] >= before
    # what the alert rules in configs/prometheus/alerts.yml compare against
    assert values["radledger_consensus_validators"] == 4
    assert values["radledger_consensus_quorum"] == 3
    assert values["radledger_consensus_reachable_validators"] == 4
    assert values["radledger_mempool_max_txs"] > 0
    assert values["radledger_consensus_empty_block_interval_seconds"] == 1
    assert (
        0
        < values["radledger_storage_disk_free_bytes"]
        <= values["radledger_storage_disk_size_bytes"]
    )
    assert values["process_resident_memory_bytes"] > 0
    assert values["process_cpu_seconds_total"] > 0
    missed = {k: v for k, v in values.items() if k.startswith("radledger_consensus_missed_votes")}
    last_vote = {
        k: v
        for k, v in values.items()
        if k.startswith("radledger_consensus_validator_last_vote_height")
    }
    assert len(missed) == len(last_vote) == 3, (missed, last_vote)  # not node0's own
    assert min(last_vote.values()) >= 1  # every validator has voted since this node started


async def _read_events(url: str, count: int) -> list[dict[str, Any]]:
    async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
        events: list[dict[str, Any]] = []
        while len(events) < count:
            message = await ws.receive(timeout=30)
            assert message.type == aiohttp.WSMsgType.TEXT, message
            events.append(json.loads(message.data))
        return events


def test_event_stream_replays_then_follows(network: Network) -> None:
    net = network
    wait_for(lambda: net.height(1) >= 3, 30, "three blocks")
    url = net.url(1, "/v1/events?from_height=1").replace("http://", "ws://")
    events = asyncio.run(_read_events(url, net.height(1) + 2))
    heights = [e["height"] for e in events]
    assert heights == list(range(1, len(events) + 1))  # replayed, then live, no gaps
    assert events[0]["hash"] == net.get(1, "/v1/blocks/1")["hash"]


def test_consensus_diagnosis_names_who_spoke_last(network: Network) -> None:
    net = network
    wait_for(lambda: len(net.get(0, "/v1/consensus")["last_message_from"]) == 3, 30, "peers")
    diagnosis = net.get(0, "/v1/consensus")
    assert set(diagnosis["last_message_from"]) == {"node1", "node2", "node3"}
    assert all(v["seconds_ago"] < 30 for v in diagnosis["last_message_from"].values())
    assert diagnosis["phase"] in {"waiting", "proposed", "prepared", "view-change"}
    assert len(diagnosis["prepared"]) + len(diagnosis["not_prepared"]) == 4


@pytest.mark.slow
def test_long_kill_loop(network: Network) -> None:
    """`make soak`: 200 kills at random moments. Agreement at every height, no tx
    committed twice. A tx admitted by a node killed before it gossiped it may be
    absent (mempools are not durable: its outcome is unknown, never duplicated)."""
    net = network
    start = net.height(0)
    sent = kill_loop(net, rounds=200)
    top = assert_agreement(net, [0, 1, 2, 3])
    assert top > start
    final = committed_txs(net, 0)
    assert len(final) == len(set(final))
    assert len(set(sent) & set(final)) > len(sent) // 2  # most survive; none twice


def test_without_empty_blocks_an_idle_network_stays_still(tmp_path: Path) -> None:
    """create_empty_blocks = false: no blocks and no view changes while idle, and a
    transaction still commits promptly when one arrives."""
    base = _free_base()
    generated = create_testnet(tmp_path / "net", 4, base_port=base)
    for node in generated.nodes:
        config = node.home / "config.toml"
        text = config.read_text()
        assert "create_empty_blocks = true" in text
        config.write_text(text.replace("create_empty_blocks = true", "create_empty_blocks = false"))
    net = Network(generated, base)
    for i in range(4):
        net.start(i)
    try:
        wait_for(
            lambda: (
                all(net.get(i, "/v1/status")["peers"] == 3 for i in range(4))
                if min(net.height(i) for i in range(4)) >= 0
                else False
            ),
            60,
            "a connected network",
        )
        time.sleep(3.0)  # longer than the 2 s view timeout
        assert [net.height(i) for i in range(4)] == [0, 0, 0, 0]
        assert all(net.get(i, "/v1/status")["view"] == 0 for i in range(4))
        tx = enroll(net, 2, 1)
        status, body = net.post(
            2, "/v1/txs?wait=commit", json.dumps({"tx": tx.encode().hex()}).encode()
        )
        assert status == 200, body
        assert body["height"] == 1
        time.sleep(3.0)
        assert net.height(0) == 1
        assert all(net.get(i, "/v1/status")["view"] == 0 for i in range(4))
    finally:
        net.stop_all()
