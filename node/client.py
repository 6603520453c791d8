"""A small synchronous client of the node's HTTP RPC, for the command line.

Errors come back as :class:`RpcError` carrying the node's error code and
message (or ``unreachable`` when no node answers), so the CLI can print one
clear line. Submission retries on back-pressure (429, honouring Retry-After).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from typing import Any, Final

from ledger.keys import SigningKey
from ledger.types import Tx

DEFAULT_RPC: Final = "http://127.0.0.1:26601"
_RETRIES_ON_BUSY: Final = 30


class RpcError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Nonces:
    """Strictly increasing nonces from the clock (microseconds), never repeating.

    The registry accepts any nonce above the signer's last one (gaps allowed),
    so a clock-derived nonce needs no round trip and stays valid across runs
    and machines sharing a key, as long as clocks do not run backwards by more
    than the time between two transactions.
    """

    def __init__(self) -> None:
        self._last = 0

    def next(self) -> int:
        self._last = max(self._last + 1, time.time_ns() // 1000)
        return self._last


class RpcClient:
    def __init__(self, base_url: str = DEFAULT_RPC, timeout_s: float = 60.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def _request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, Any]:
        try:
            request = urllib.request.Request(  # noqa: S310 (the operator names the node's URL)
                self.base_url + path,
                data=body,
                method=method,
                headers={"Content-Type": "application/json"} if body is not None else {},
            )
        except ValueError:
            raise RpcError(
                0, "invalid_url", f"{self.base_url!r} is not an http:// or https:// address"
            ) from None
        if request.type not in ("http", "https"):
            raise RpcError(
                0, "invalid_url", f"{self.base_url!r} is not an http:// or https:// address"
            )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:  # noqa: S310
                raw = response.read()
                try:
                    return response.status, json.loads(raw or b"null")
                except ValueError:
                    raise RpcError(
                        response.status,
                        "not_a_node",
                        f"{self.base_url} did not answer with JSON: is it a radledger "
                        "node's RPC address?",
                    ) from None
        except urllib.error.HTTPError as exc:
            try:
                payload = json.loads(exc.read() or b"null")
            except json.JSONDecodeError:
                payload = None
            error = payload.get("error", {}) if isinstance(payload, dict) else {}
            retry = exc.headers.get("Retry-After") if exc.headers else None
            raise RpcError(
                exc.code,
                str(error.get("code", "http_error")),
                str(error.get("message", exc.reason))
                + (f" (retry after {retry} s)" if retry else ""),
            ) from None
        except (urllib.error.URLError, OSError, TimeoutError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RpcError(
                0, "unreachable", f"no node answers at {self.base_url}: {reason}"
            ) from None

    @staticmethod
    def path(*segments: str) -> str:
        """A URL path from segments, each quoted (ids may hold any character)."""
        return "".join("/" + urllib.parse.quote(segment, safe="") for segment in segments)

    def get(self, path: str, params: Mapping[str, str | int | None] | None = None) -> Any:
        query = {k: str(v) for k, v in (params or {}).items() if v is not None}
        suffix = "?" + urllib.parse.urlencode(query) if query else ""
        return self._request("GET", path + suffix)[1]

    def submit(self, tx: Tx, *, wait: bool = True, timeout_ms: int = 30_000) -> dict[str, Any]:
        """Submit ``tx``; with ``wait`` return only once it is committed (or fail)."""
        body = json.dumps({"tx": tx.encode().hex()}).encode()
        path = f"/v1/txs?wait=commit&timeout_ms={timeout_ms}" if wait else "/v1/txs"
        for attempt in range(_RETRIES_ON_BUSY):
            try:
                status, answer = self._request("POST", path, body)
            except RpcError as exc:
                if exc.status == 429 and attempt + 1 < _RETRIES_ON_BUSY:
                    time.sleep(1.0)
                    continue
                raise
            if wait and status != 200:
                raise RpcError(
                    status,
                    "not_committed",
                    f"transaction {tx.hash.hex()} was admitted but not committed within "
                    f"{timeout_ms / 1000:.0f} s; check it later with GET /v1/txs/{tx.hash.hex()}",
                )
            assert isinstance(answer, dict)
            return answer
        raise AssertionError("unreachable")  # pragma: no cover

    def status(self) -> dict[str, Any]:
        answer = self.get("/v1/status")
        assert isinstance(answer, dict)
        return answer


def sign(key: SigningKey, chain_id: str, kind: str, body: Mapping[str, Any], nonces: Nonces) -> Tx:
    return Tx.create(key, chain_id=chain_id, kind=kind, nonce=nonces.next(), body=dict(body))
