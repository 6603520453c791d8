"""The registry's read routes: datasets, instances, consent, authorisation, trials,
members, and offline receipts. Every answer reads committed state only.

Errors use the RPC's envelope: ``invalid_query`` (400) for a malformed
argument, ``not_found`` (404) for something the registry does not hold.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from ledger.manifest import UID_PATTERN
from node.receipts import dataset_receipt
from registry import queries
from registry.errors import InvalidQuery, NotFound
from registry.kinds import ID_PATTERN

if TYPE_CHECKING:
    from node.runtime import NodeRuntime

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class QueryError(Exception):
    """Raised by a handler; the RPC middleware turns it into the error envelope."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _hex_bytes(text: str, what: str, size: int) -> bytes:
    try:
        value = bytes.fromhex(text)
    except ValueError:
        raise QueryError(400, "invalid_query", f"{what} must be hex") from None
    if len(value) != size:
        raise QueryError(400, "invalid_query", f"{what} must be {size} bytes of hex")
    return value


def _height(request: web.Request) -> int | None:
    text = request.query.get("height")
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise QueryError(400, "invalid_query", "height must be a whole number")
    return int(text)


def _required(request: web.Request, name: str) -> str:
    value = request.query.get(name)
    if not value:
        raise QueryError(400, "invalid_query", f"query parameter {name!r} is required")
    return value


class RegistryRoutes:
    """Handlers bound to one node."""

    def __init__(self, node: NodeRuntime) -> None:
        self.node = node

    def routes(self) -> list[web.RouteDef]:
        return [
            web.get("/v1/datasets/{id}", self._wrap(self.dataset)),
            web.get("/v1/datasets/{id}/series/{series}/leaves", self._wrap(self.leaves)),
            web.get("/v1/instances/{sop}", self._wrap(self.instance)),
            web.get("/v1/grants/{grant}", self._wrap(self.grant)),
            web.get("/v1/consent", self._wrap(self.consent)),
            web.get("/v1/authz", self._wrap(self.authz)),
            web.get("/v1/trials/{id}", self._wrap(self.trial)),
            web.get("/v1/members/{key}", self._wrap(self.member)),
            web.get("/v1/receipts/{id}", self._wrap(self.receipt)),
        ]

    def _wrap(self, fn: Callable[[web.Request], Any]) -> Handler:
        async def handler(request: web.Request) -> web.StreamResponse:
            try:
                body = fn(request)
            except NotFound as exc:
                raise QueryError(404, "not_found", str(exc)) from None
            except InvalidQuery as exc:
                raise QueryError(400, "invalid_query", str(exc)) from None
            return web.json_response(body)

        return handler

    @property
    def _state(self) -> queries.StateView:
        return self.node.store

    def dataset(self, request: web.Request) -> dict[str, Any]:
        return queries.dataset(self._state, request.match_info["id"])

    def leaves(self, request: web.Request) -> dict[str, Any]:
        dataset, series = request.match_info["id"], request.match_info["series"]
        leaves = queries.series_leaves(self._state, dataset, series)
        return {"dataset": dataset, "series": series, "leaves": [leaf.to_json() for leaf in leaves]}

    def instance(self, request: web.Request) -> dict[str, Any]:
        return queries.find_instance(self._state, request.match_info["sop"])

    def grant(self, request: web.Request) -> dict[str, Any]:
        grant_id = _hex_bytes(request.match_info["grant"], "grant id", 32)
        return queries.grant(self._state, grant_id)

    def _time_at(self, height: int | None) -> tuple[int | None, int | None]:
        store = self.node.store
        top = store.latest_height()
        if height is not None and height > top:
            raise QueryError(404, "not_found", f"no block at height {height} yet")
        at = top if height is None else height
        header = store.header(at) if at else None
        return at, (header.time_ms if header is not None else None)

    def consent(self, request: web.Request) -> dict[str, Any]:
        height, time_ms = self._time_at(_height(request))
        return queries.consent_state(
            self._state,
            _required(request, "grantee_kind"),
            _required(request, "grantee"),
            _required(request, "dataset"),
            height,
            time_ms,
        )

    def authz(self, request: web.Request) -> dict[str, Any]:
        grantee = _hex_bytes(_required(request, "grantee"), "grantee", 32)
        return queries.authz(
            self._state,
            grantee,
            _required(request, "dataset"),
            self.node.now_ms(),
            None,
            genesis=self.node.genesis,
            project=request.query.get("project"),
            purpose=request.query.get("purpose"),
        )

    def trial(self, request: web.Request) -> dict[str, Any]:
        return queries.trial(self._state, request.match_info["id"])

    def member(self, request: web.Request) -> dict[str, Any]:
        key = _hex_bytes(request.match_info["key"], "member key", 32)
        return queries.member_history(self._state, key, genesis=self.node.genesis)

    def receipt(self, request: web.Request) -> dict[str, Any]:
        node = self.node
        receipt = dataset_receipt(
            node.store,
            node.store,
            node.genesis,
            request.match_info["id"],
            request.query.get("instance"),
        )
        return receipt.to_json()


#: What the registry accepts as a dataset or trial id, and as a DICOM UID.
_ID: Final = f"^{ID_PATTERN}$"
_UID: Final = f"^{UID_PATTERN}$"


def _path_param(name: str, pattern: str | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string"}
    if pattern is not None:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


def _query_param(
    name: str, required: bool = False, kind: str = "string", pattern: str | None = None
) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if kind == "integer":
        schema["minimum"] = 0
    if pattern is not None:
        schema["pattern"] = pattern
    return {"name": name, "in": "query", "required": required, "schema": schema}


def registry_paths(op: Callable[..., dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI description of these routes (``op`` is the RPC's operation builder)."""
    found = {"200": "found", "400": "invalid_query", "404": "not_found"}
    key = "^[0-9a-f]{64}$"
    return {
        "/v1/datasets/{id}": {
            "get": op(
                "A dataset: owner, series with summaries and roots, versions, derivations, "
                "access history, trials",
                found,
                parameters=[_path_param("id", _ID)],
            )
        },
        "/v1/datasets/{id}/series/{series}/leaves": {
            "get": op(
                "The instance leaves of a series, in manifest order",
                found,
                parameters=[_path_param("id", _ID), _path_param("series", _UID)],
            )
        },
        "/v1/instances/{sop}": {
            "get": op(
                "Where a SOP Instance UID is registered",
                found,
                parameters=[_path_param("sop", _UID)],
            )
        },
        "/v1/grants/{grant}": {
            "get": op("One consent grant", found, parameters=[_path_param("grant", key)])
        },
        "/v1/consent": {
            "get": op(
                "The consent grants covering a grantee and a dataset, at a height",
                found,
                parameters=[
                    _query_param("grantee_kind", True),
                    _query_param("grantee", True),
                    _query_param("dataset", True, pattern=_ID),
                    _query_param("height", kind="integer"),
                ],
            )
        },
        "/v1/authz": {
            "get": op(
                "Policy decision: may this member use this dataset now (allow/deny and the "
                "deciding grants)",
                found,
                parameters=[
                    _query_param("grantee", True),
                    _query_param("dataset", True, pattern=_ID),
                    _query_param("project"),
                    _query_param("purpose"),
                ],
            )
        },
        "/v1/trials/{id}": {
            "get": op("A trial's timeline", found, parameters=[_path_param("id", _ID)])
        },
        "/v1/members/{key}": {
            "get": op(
                "A member's enrolment and every registry action it signed",
                found,
                parameters=[_path_param("key", key)],
            )
        },
        "/v1/receipts/{id}": {
            "get": op(
                "An offline-verifiable receipt for a dataset, or one instance of it "
                "(docs/RECEIPTS.md)",
                found,
                parameters=[_path_param("id", _ID), _query_param("instance", pattern=_UID)],
            )
        },
    }
