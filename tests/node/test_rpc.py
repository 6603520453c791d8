"""The RPC in-process: routes, the OpenAPI document, errors and back-pressure.

The node is built from a generated home but not started (no peers needed):
admission, lookups and error mapping do not depend on consensus running.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from ledger.keys import SigningKey, load_key_file
from ledger.types import Tx
from node.daemon import load_home, open_data
from node.mempool import MempoolLimits
from node.rpc import OPENAPI, Rpc
from node.runtime import NodeRuntime
from node.testnet import ADMIN_KEY_FILE, create_testnet
from p2p import PeerConfig
from tests.factories import enroll_tx

CHAIN = "radledger-testnet"


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[NodeRuntime]:
    network = create_testnet(tmp_path / "net", 4, base_port=47000)
    home = load_home(network.nodes[0].home)
    store = open_data(home)
    runtime = NodeRuntime(
        genesis=home.genesis,
        validator_key=home.validator_key,
        store=store,
        peer_config=PeerConfig.from_genesis(home.genesis, home.node_key, listen_port=0),
        mempool_limits=MempoolLimits(max_txs=3, max_txs_per_signer=2),
    )
    yield runtime
    store.close()


async def client_for(rpc: Rpc) -> TestClient:  # type: ignore[type-arg]
    client: TestClient = TestClient(TestServer(rpc.app))  # type: ignore[type-arg]
    await client.start_server()
    return client


@pytest.fixture
def admins(node: NodeRuntime, tmp_path: Path) -> list[SigningKey]:
    """The four site admin keys of the generated testnet (site0 ... site3)."""
    return [load_key_file(tmp_path / "net" / f"node{i}" / ADMIN_KEY_FILE) for i in range(4)]


def enroll(admin: SigningKey, site: int, nonce: int) -> Tx:
    return enroll_tx(admin, nonce, chain_id=CHAIN, site=f"site{site}")


def tx_body(tx: Tx) -> str:
    return json.dumps({"tx": tx.encode().hex()})


async def test_openapi_describes_exactly_the_routes(node: NodeRuntime) -> None:
    rpc = Rpc(node)
    routes = {r.canonical for r in rpc.app.router.resources()}
    assert routes == set(OPENAPI["paths"])
    client = await client_for(rpc)
    try:
        response = await client.get("/openapi.json")
        assert response.status == 200
        assert (await response.json())["openapi"].startswith("3.")
    finally:
        await client.close()


async def test_admission_lookup_and_back_pressure(
    node: NodeRuntime, admins: list[SigningKey]
) -> None:
    client = await client_for(Rpc(node))
    try:
        key = admins[0]
        first = enroll(key, 0, 1)
        response = await client.post("/v1/txs", data=tx_body(first))
        assert response.status == 202
        assert (await response.json())["hash"] == first.hash.hex()
        pending = await client.get(f"/v1/txs/{first.hash.hex()}")
        assert (await pending.json())["status"] == "pending"
        again = await client.post("/v1/txs", data=tx_body(first))
        assert again.status == 409
        assert (await again.json())["error"]["code"] == "duplicate"
        second = enroll(key, 0, 2)
        assert (await client.post("/v1/txs", data=tx_body(second))).status == 202
        third = enroll(key, 0, 3)
        capped = await client.post("/v1/txs", data=tx_body(third))
        assert capped.status == 429
        assert capped.headers["Retry-After"] == "1"
        assert (await capped.json())["error"]["code"] == "signer_limit"
        other = enroll(admins[1], 1, 1)
        assert (await client.post("/v1/txs", data=tx_body(other))).status == 202
        full = enroll(admins[2], 2, 1)
        response = await client.post("/v1/txs", data=tx_body(full))
        assert response.status == 429
        assert (await response.json())["error"]["code"] == "mempool_full"
        forged = dataclasses.replace(full, sig=bytes(64))
        assert (await client.post("/v1/txs", data=tx_body(forged))).status in (400, 429)
        metrics = await (await client.get("/metrics")).text()
        rejected = [line for line in metrics.splitlines() if "rejected_txs_total{" in line]
        assert rejected, metrics[:300]
        assert any("mempool_full" in line for line in rejected), rejected
        assert "radledger_mempool_txs 3.0" in metrics
    finally:
        await client.close()


async def test_errors_are_enveloped_never_tracebacks(node: NodeRuntime) -> None:
    client = await client_for(Rpc(node))
    try:
        cases = [
            ("/v1/txs?wait=commit&timeout_ms=x", '{"tx": "a0"}', 400),
            ("/v1/txs", "{", 400),
            ("/v1/txs", '{"tx": null}', 400),
        ]
        for path, body, status in cases:
            response = await client.post(path, data=body)
            assert response.status == status
            payload = await response.json()
            assert set(payload["error"]) == {"code", "message", "detail"}
        missing = await client.get("/v1/nowhere")
        assert missing.status == 404
        assert (await missing.json())["error"]["code"] == "http_error"
        events = await client.get("/v1/events")
        assert events.status == 426
        bad = await client.get("/v1/events?from_height=zero")
        assert bad.status == 400
        empty = await client.get("/v1/events?from_height=")
        assert empty.status == 400
    finally:
        await client.close()


async def test_what_the_openapi_fuzzer_found(node: NodeRuntime, admins: list[SigningKey]) -> None:
    """Schemathesis's finds against a live node, each now a fixed, enveloped answer."""
    client = await client_for(Rpc(node))
    try:
        # a body that is not UTF-8 was a 500 with a traceback in the log
        for path in ("/v1/txs", "/v1/txs/batch"):
            response = await client.post(path, data=b"\x93\xbe{")
            assert response.status == 400
            assert (await response.json())["error"]["code"] == "malformed_json"
        # a 405 names the methods the path takes (RFC 9110)
        wrong = await client.request("TRACE", "/v1/status")
        assert wrong.status == 405
        assert "GET" in wrong.headers["Allow"]
        batch = await client.get("/v1/txs/batch")  # POST only; not a lookup of a hash
        assert batch.status == 405
        assert batch.headers["Allow"] == "POST"
        assert (await client.get("/v1/txs/abc")).status == 400  # a lookup with bad hex
        # a bad query is refused before the transaction is admitted
        tx = enroll(admins[0], 0, 1)
        body = json.dumps({"tx": tx.encode().hex()})
        for query in ("wait=soon", "wait=commit&timeout_ms=-1"):
            refused = await client.post(f"/v1/txs?{query}", data=body)
            assert refused.status == 400, query
            assert (await refused.json())["error"]["code"] == "invalid_request"
        assert len(node.mempool) == 0
        admitted = await client.post("/v1/txs", data=body)
        assert admitted.status == 202
    finally:
        await client.close()


async def test_reads_and_writes_can_listen_apart(
    node: NodeRuntime, admins: list[SigningKey]
) -> None:
    writes = await client_for(Rpc(node, reads=False))
    reads = await client_for(Rpc(node, writes=False))
    try:
        assert (await writes.get("/v1/status")).status == 404
        tx = enroll(admins[0], 0, 1)
        assert (await writes.post("/v1/txs", data=tx_body(tx))).status == 202
        assert (await reads.post("/v1/txs", data=tx_body(tx))).status == 404
        status = await (await reads.get("/v1/status")).json()
        assert status["mempool_txs"] == 1
        assert status["chain_id"] == CHAIN
    finally:
        await writes.close()
        await reads.close()


async def test_a_batch_admits_each_transaction_on_its_own(
    node: NodeRuntime, admins: list[SigningKey]
) -> None:
    client = await client_for(Rpc(node))
    try:
        good = enroll(admins[3], 3, 1)
        stranger = enroll_tx(SigningKey.generate(), 1, chain_id=CHAIN)
        body = json.dumps({"txs": [good.encode().hex(), "zz", stranger.encode().hex()]})
        response = await client.post("/v1/txs/batch", data=body)
        assert response.status == 200
        results = (await response.json())["results"]
        assert results[0] == {"hash": good.hash.hex(), "status": "admitted"}
        assert results[1]["error"]["code"] == "invalid_hex"
        assert results[2]["error"]["code"] == "not_site_admin"
        assert good.hash in node.mempool
        for bad in ("[]", '{"txs": []}', '{"txs": [1]}', "not json"):
            assert (await client.post("/v1/txs/batch", data=bad)).status == 400
    finally:
        await client.close()
