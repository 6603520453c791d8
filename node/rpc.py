"""The node's HTTP RPC (aiohttp, JSON) and ``/metrics``.

Every error is ``{"error": {"code", "message", "detail"}}`` with a 4xx status
for client mistakes; an unexpected failure is logged and answered with a 500
that carries no traceback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ledger.errors import DecodeError
from ledger.types import Block, Tx
from node.mempool import Rejected
from node.rpc_registry import QueryError, RegistryRoutes, registry_paths
from node.runtime import NodeRuntime

log = logging.getLogger("radledger.rpc")

#: Largest request body accepted, in bytes (a transaction is at most 64 KiB).
DEFAULT_MAX_BODY_BYTES: Final = 256 * 1024
#: Longest ``?wait=commit`` may hold a request, in milliseconds.
DEFAULT_MAX_WAIT_MS: Final = 30_000
#: Transactions in one /v1/txs/batch request (the body size limit applies too).
MAX_BATCH_TXS: Final = 1000

_REJECTION_STATUS: Final = {
    "tx_too_large": 413,
    "wrong_chain": 400,
    "unknown_kind": 400,
    "bad_signature": 400,
    "duplicate": 409,
    "nonce_reused": 409,
    "signer_limit": 429,
    "mempool_full": 429,
    # the registry's (docs/REGISTRY.md): the signer may not do this ...
    **dict.fromkeys(
        (
            "not_site_admin",
            "not_a_member",
            "member_revoked",
            "role_forbidden",
            "wrong_site",
            "not_grantor",
            "not_a_subject",
        ),
        403,
    ),
    # ... or it conflicts with what is already recorded
    **dict.fromkeys(
        (
            "dataset_exists",
            "series_complete",
            "trial_exists",
            "member_active",
            "already_superseded",
            "already_linked",
            "instance_exists",
        ),
        409,
    ),
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, detail: dict[str, Any] | None = None
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.detail = detail or {}
        super().__init__(message)


async def _json_body(request: web.Request) -> Any:
    """The request's JSON body; 400 ``malformed_json`` for anything that is not UTF-8 JSON."""
    raw = await request.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "malformed_json", "body is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ApiError(400, "malformed_json", f"body is not JSON: {exc.msg}") from None


def _error(status: int, code: str, message: str, **detail: Any) -> web.Response:
    body = {"error": {"code": code, "message": message, "detail": detail}}
    return web.json_response(body, status=status)


def _hex(text: str, what: str, size: int | None = None) -> bytes:
    try:
        raw = bytes.fromhex(text)
    except ValueError:
        raise ApiError(400, "invalid_hex", f"{what} must be hex") from None
    if size is not None and len(raw) != size:
        raise ApiError(400, "invalid_hex", f"{what} must be {size} bytes")
    return raw


async def _drain(ws: web.WebSocketResponse) -> None:
    async for _ in ws:
        pass  # the stream is one-way; client messages are ignored


def block_event(block: Block) -> dict[str, Any]:
    return {
        "type": "block",
        "height": block.height,
        "hash": block.hash.hex(),
        "time_ms": block.header.time_ms,
        "txs": [
            {"hash": tx.hash.hex(), "index": i, "kind": tx.kind} for i, tx in enumerate(block.txs)
        ],
    }


def block_json(block: Block, node: NodeRuntime) -> dict[str, Any]:
    cert = node.store.certificate(block.height)
    return {
        "hash": block.hash.hex(),
        "header": block.header.to_json(),
        "txs": [tx.hash.hex() for tx in block.txs],
        "evidence": len(block.evidence),
        "certificate": cert.to_json() if cert is not None else None,
    }


class Rpc:
    def __init__(
        self,
        node: NodeRuntime,
        *,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_wait_ms: int = DEFAULT_MAX_WAIT_MS,
        reads: bool = True,
        writes: bool = True,
    ) -> None:
        """``reads``/``writes`` select the routes, so that transaction submission can
        listen on its own address (e.g. only on the site's internal network)."""
        self.node = node
        self.max_wait_ms = max_wait_ms
        self.app = web.Application(client_max_size=max_body_bytes, middlewares=[self._middleware])
        if writes:
            self.app.add_routes(
                [
                    web.post("/v1/txs", self.submit_tx),
                    web.post("/v1/txs/batch", self.submit_batch),
                ]
            )
        if not reads:
            return
        self.app.add_routes(
            [
                # not "batch": that path is POST only, and a GET there is a 405, not a lookup
                web.get(r"/v1/txs/{hash:(?!batch$)[^/]+}", self.get_tx),
                web.get("/v1/blocks/latest", self.latest_block),
                web.get("/v1/blocks/{height}", self.get_block),
                web.get("/v1/status", self.status),
                web.get("/v1/health", self.health),
                web.get("/v1/validators", self.validators),
                web.get("/v1/consensus", self.consensus),
                web.get("/v1/events", self.events),
                web.get("/openapi.json", self.openapi),
                web.get("/metrics", self.metrics),
                *RegistryRoutes(node).routes(),
            ]
        )

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        label = route.canonical if route is not None else "unmatched"
        started = time.perf_counter()
        try:
            response = await handler(request)
        except ApiError as exc:
            response = _error(exc.status, exc.code, exc.message, **exc.detail)
        except QueryError as exc:
            response = _error(exc.status, exc.code, exc.message)
        except web.HTTPRequestEntityTooLarge:
            response = _error(413, "body_too_large", "request body exceeds the limit")
        except web.HTTPException as exc:
            response = _error(exc.status, "http_error", exc.reason)
            if "Allow" in exc.headers:  # 405: which methods the path does take (RFC 9110)
                response.headers["Allow"] = exc.headers["Allow"]
        except Exception:
            log.exception("RPC %s %s failed", request.method, request.path)
            response = _error(500, "internal", "internal error; see the node's log")
        metrics = self.node.metrics
        metrics.rpc_requests.labels(label, str(response.status)).inc()
        metrics.rpc_seconds.labels(label).observe(time.perf_counter() - started)
        return response

    async def submit_tx(self, request: web.Request) -> web.Response:
        # The query first: a request refused for its query must not have admitted its tx.
        wait = request.query.get("wait")
        if wait not in (None, "commit"):
            raise ApiError(400, "invalid_request", "wait must be 'commit' or absent")
        text = request.query.get("timeout_ms", str(self.max_wait_ms))
        if not (text.isascii() and text.isdigit()):
            raise ApiError(400, "invalid_request", "timeout_ms must be a whole number")
        timeout_ms = min(int(text), self.max_wait_ms)
        body = await _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("tx"), str):
            raise ApiError(
                400, "invalid_request", 'body must be {"tx": "<hex of the canonical encoding>"}'
            )
        try:
            tx = Tx.decode(_hex(body["tx"], "tx"))
        except DecodeError as exc:
            raise ApiError(400, "malformed_tx", str(exc)) from None
        try:
            self.node.admit(tx)
        except Rejected as exc:
            status = _REJECTION_STATUS.get(exc.code, 400)
            response = _error(status, exc.code, exc.message, hash=tx.hash.hex())
            if exc.retry_after_s is not None:
                response.headers["Retry-After"] = str(exc.retry_after_s)
            return response
        if wait == "commit":
            location = await self.node.wait_for_commit(tx.hash, timeout_ms / 1000)
            if location is not None:
                height, index = location
                return web.json_response(
                    {"hash": tx.hash.hex(), "status": "committed", "height": height, "index": index}
                )
            return web.json_response({"hash": tx.hash.hex(), "status": "pending"}, status=202)
        return web.json_response({"hash": tx.hash.hex(), "status": "admitted"}, status=202)

    async def submit_batch(self, request: web.Request) -> web.Response:
        """Many independent transactions in one request (bulk importers, load).

        Each is admitted or refused on its own, in order; the answer lists every
        outcome. No waiting for commits: poll ``GET /v1/txs/{hash}`` or follow
        ``/v1/events``.
        """
        body = await _json_body(request)
        items = body.get("txs") if isinstance(body, dict) else None
        if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
            raise ApiError(400, "invalid_request", 'body must be {"txs": ["<hex>", ...]}')
        if not 1 <= len(items) <= MAX_BATCH_TXS:
            raise ApiError(
                400, "invalid_request", f"a batch holds 1 to {MAX_BATCH_TXS} transactions"
            )
        results: list[dict[str, Any]] = []
        for item in items:
            try:
                tx = Tx.decode(_hex(item, "tx"))
            except (DecodeError, ApiError) as exc:
                code = exc.code if isinstance(exc, ApiError) else "malformed_tx"
                results.append({"error": {"code": code, "message": str(exc)}})
                continue
            try:
                self.node.admit(tx)
            except Rejected as exc:
                results.append(
                    {"hash": tx.hash.hex(), "error": {"code": exc.code, "message": exc.message}}
                )
                continue
            results.append({"hash": tx.hash.hex(), "status": "admitted"})
        return web.json_response({"results": results})

    async def get_tx(self, request: web.Request) -> web.Response:
        tx_hash = _hex(request.match_info["hash"], "hash", 32)
        tx = self.node.store.tx(tx_hash)
        if tx is None:
            if tx_hash in self.node.mempool:
                return web.json_response({"hash": tx_hash.hex(), "status": "pending"})
            raise ApiError(404, "not_found", "no such transaction")
        location = self.node.store.tx_location(tx_hash)
        assert location is not None
        return web.json_response(
            {
                "hash": tx_hash.hex(),
                "status": "committed",
                "height": location[0],
                "index": location[1],
                "tx": tx.to_json(),
            }
        )

    async def latest_block(self, request: web.Request) -> web.Response:
        height = self.node.store.latest_height()
        block = self.node.store.block(height) if height else None
        if block is None:
            raise ApiError(404, "not_found", "no block committed yet")
        return web.json_response(block_json(block, self.node))

    async def get_block(self, request: web.Request) -> web.Response:
        text = request.match_info["height"]
        if not (text.isascii() and text.isdigit()):
            raise ApiError(400, "invalid_height", "height must be a positive integer")
        block = self.node.store.block(int(text))
        if block is None:
            raise ApiError(404, "not_found", f"no block at height {text}")
        return web.json_response(block_json(block, self.node))

    async def status(self, request: web.Request) -> web.Response:
        node = self.node
        snap = node.replica.snapshot()
        height = node.store.latest_height()
        block_hash = node.store.block_hash(height) if height else None
        return web.json_response(
            {
                "chain_id": node.genesis.chain_id,
                "genesis_hash": node.genesis.hash.hex(),
                "height": height,
                "latest_block_hash": block_hash.hex() if block_hash else None,
                "view": snap.view,
                "primary": snap.primary.hex(),
                "in_view_change": snap.in_view_change,
                "syncing": snap.catching_up_to > 0,
                "catching_up_to": snap.catching_up_to,
                "peers": len(node.network.connected_peers()),
                "mempool_txs": len(node.mempool),
                "max_tx_bytes": min(node.mempool.max_tx_bytes, node.genesis.params.max_tx_bytes),
                "validator": node.replica.config.key.public_key.hex(),
            }
        )

    async def health(self, request: web.Request) -> web.Response:
        if self.node.fatal is not None:
            return _error(503, "halted", str(self.node.fatal))
        return web.json_response({"ok": True, "height": self.node.store.latest_height()})

    async def validators(self, request: web.Request) -> web.Response:
        genesis = self.node.genesis
        return web.json_response(
            {
                "quorum": genesis.quorum,
                "f": genesis.f,
                "validators": [
                    {
                        "name": v.name,
                        "site_id": v.site_id,
                        "validator_key": v.validator_key.hex(),
                        "address": v.address,
                    }
                    for v in genesis.validators
                ],
            }
        )

    async def consensus(self, request: web.Request) -> web.Response:
        snap = self.node.replica.snapshot()
        names = {v.validator_key: v.name for v in self.node.genesis.validators}

        def who(keys: tuple[bytes, ...]) -> list[str]:
            return [names.get(k, k.hex()[:16]) for k in keys]

        everyone = set(names)
        now = time.monotonic()
        return web.json_response(
            {
                "height": snap.height,
                "view": snap.view,
                "phase": "view-change"
                if snap.in_view_change
                else (
                    "prepared" if snap.prepared else "proposed" if snap.proposal_hash else "waiting"
                ),
                "primary": names.get(snap.primary, snap.primary.hex()),
                "proposal": snap.proposal_hash.hex() if snap.proposal_hash else None,
                "prepared": who(snap.prepare_voters),
                "not_prepared": who(tuple(sorted(everyone - set(snap.prepare_voters)))),
                "committed": who(snap.commit_voters),
                "not_committed": who(tuple(sorted(everyone - set(snap.commit_voters)))),
                "view_change_target": snap.view_change_target if snap.in_view_change else None,
                "view_change_voters": who(snap.view_change_voters),
                "catching_up_to": snap.catching_up_to,
                "refused_signatures": snap.refused_signatures,
                "evidence_reported": snap.evidence_reported,
                "stable_checkpoint": snap.stable_checkpoint,
                "last_message_from": {
                    names.get(key, key.hex()[:16]): {
                        "message": what,
                        "seconds_ago": round(now - at, 3),
                    }
                    for key, (at, what) in sorted(self.node.last_seen.items())
                },
            }
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        """Websocket stream of committed blocks; ``?from_height=H`` replays from H first."""
        text = request.query.get("from_height")
        if text is not None and not ((text.isascii() and text.isdigit()) and int(text) >= 1):
            raise ApiError(400, "invalid_height", "from_height must be a positive integer")
        ws = web.WebSocketResponse(heartbeat=30)
        if not ws.can_prepare(request):
            raise ApiError(426, "upgrade_required", "connect with a websocket client")
        store = self.node.store
        try:
            subscription = self.node.subscribe()
        except Rejected as exc:
            raise ApiError(429, exc.code, exc.message) from None
        await ws.prepare(request)
        next_height = int(text) if text else store.latest_height() + 1
        # Read the client's frames (close, ping) so a departing client is noticed.
        reader = asyncio.create_task(_drain(ws))
        try:
            while not ws.closed and not reader.done():
                # Replay from storage whatever the live buffer cannot supply.
                while next_height <= store.latest_height():
                    block = store.block(next_height)
                    assert block is not None
                    await ws.send_json(block_event(block))
                    next_height += 1
                if subscription.overflowed_at is not None and subscription.queue.empty():
                    await ws.close(
                        code=4000,
                        message=f"too slow: resume with from_height={next_height}".encode(),
                    )
                    break
                try:
                    block = await asyncio.wait_for(subscription.queue.get(), 1.0)
                except TimeoutError:
                    continue
                if block.height == next_height:
                    await ws.send_json(block_event(block))
                    next_height += 1
        except ConnectionResetError:
            pass
        finally:
            reader.cancel()
            self.node.unsubscribe(subscription)
        return ws

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def metrics(self, request: web.Request) -> web.Response:
        payload = generate_latest(self.node.metrics.registry)
        return web.Response(body=payload, headers={"Content-Type": CONTENT_TYPE_LATEST})


def _op(summary: str, responses: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "summary": summary,
        "responses": {
            code: {
                "description": text,
                "content": {
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/Error"}
                        if code[0] in "45"
                        else {"type": "object"}
                    }
                },
            }
            for code, text in responses.items()
        },
        **extra,
    }


_HASH_PARAM: Final = {
    "name": "hash",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
}

#: The OpenAPI 3.0 description of this API (served at /openapi.json; a test checks
#: that every route is described and every described path exists).
OPENAPI: Final[dict[str, Any]] = {
    "openapi": "3.0.3",
    "info": {"title": "radledger node RPC", "version": "1"},
    "paths": {
        "/v1/txs": {
            "post": _op(
                "Submit a signed transaction",
                {
                    "200": "committed (with ?wait=commit): hash, height, index",
                    "202": "admitted (or still pending after ?wait=commit)",
                    "400": "malformed_json, invalid_request, invalid_hex, malformed_tx, "
                    "wrong_chain, unknown_kind, bad_signature, bad_body, and the registry's "
                    "rule codes (docs/REGISTRY.md)",
                    "403": "the signer may not do this: not_site_admin, not_a_member, "
                    "member_revoked, role_forbidden, wrong_site, not_grantor, not_a_subject",
                    "409": "duplicate, nonce_reused, and conflicts with the record: "
                    "dataset_exists, series_complete, trial_exists, member_active, "
                    "already_superseded, already_linked, instance_exists",
                    "413": "body_too_large, tx_too_large",
                    "429": "mempool_full, signer_limit (with Retry-After)",
                },
                parameters=[
                    {
                        "name": "wait",
                        "in": "query",
                        "schema": {"type": "string", "enum": ["commit"]},
                    },
                    {
                        "name": "timeout_ms",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 0},
                    },
                ],
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["tx"],
                                "properties": {
                                    "tx": {
                                        "type": "string",
                                        "description": "hex of the canonical encoding "
                                        "(docs/PROTOCOL.md)",
                                    }
                                },
                            }
                        }
                    },
                },
            )
        },
        "/v1/txs/batch": {
            "post": _op(
                "Submit many signed transactions; each is admitted or refused on its own",
                {
                    "200": "results: per transaction, its hash and status, or its error",
                    "400": "malformed_json, invalid_request",
                    "413": "body_too_large",
                },
                requestBody={
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["txs"],
                                "properties": {
                                    "txs": {
                                        "type": "array",
                                        "maxItems": 1000,
                                        "items": {"type": "string"},
                                    }
                                },
                            }
                        }
                    },
                },
            )
        },
        "/v1/txs/{hash}": {
            "get": _op(
                "A transaction: committed (height, index, tx) or pending",
                {"200": "found", "400": "invalid_hex", "404": "not_found"},
                parameters=[_HASH_PARAM],
            )
        },
        "/v1/blocks/latest": {
            "get": _op("The latest committed block", {"200": "block", "404": "not_found"})
        },
        "/v1/blocks/{height}": {
            "get": _op(
                "A committed block with its certificate",
                {"200": "block", "400": "invalid_height", "404": "not_found"},
                parameters=[
                    {
                        "name": "height",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "integer", "minimum": 0},
                    }
                ],
            )
        },
        "/v1/status": {
            "get": _op("Height, view, primary, peers, sync, mempool", {"200": "status"})
        },
        "/v1/health": {"get": _op("Liveness of this node", {"200": "ok", "503": "halted"})},
        "/v1/validators": {"get": _op("The validator set from genesis", {"200": "validators"})},
        "/v1/consensus": {
            "get": _op("Where consensus is and who has not voted", {"200": "diagnosis"})
        },
        "/v1/events": {
            "get": _op(
                "Websocket stream of committed blocks; from_height replays first. A client "
                "that falls behind is closed with code 4000 and the height to resume from.",
                {
                    "101": "switching to websocket",
                    "400": "invalid_height",
                    "426": "upgrade_required",
                    "429": "too_many_subscribers",
                },
                parameters=[
                    {
                        "name": "from_height",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1},
                    }
                ],
            )
        },
        "/openapi.json": {"get": _op("This document", {"200": "OpenAPI 3.0"})},
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics (text format)",
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
    },
    "components": {
        "schemas": {
            "Error": {
                "type": "object",
                "required": ["error"],
                "properties": {
                    "error": {
                        "type": "object",
                        "required": ["code", "message", "detail"],
                        "properties": {
                            "code": {"type": "string"},
                            "message": {"type": "string"},
                            "detail": {"type": "object"},
                        },
                    }
                },
            }
        }
    },
}
OPENAPI["paths"].update(registry_paths(_op))
