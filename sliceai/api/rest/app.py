"""The MEC 015 Bandwidth Management resources as a FastAPI application.

``/bwm/v1/bw_allocations`` (GET with ``app_instance_id`` / ``app_name`` / ``session_id``
filters, POST) and ``/bwm/v1/bw_allocations/{allocationId}`` (GET, PUT, PATCH with
BwInfoDeltas, DELETE) call the same :class:`~sliceai.engine.Engine` methods as the gRPC
``MecService`` (so the same admission decisions and the same SQLite store), after the
same identity, role (:data:`sliceai.api.auth.METHOD_ROLES`) and rate checks. Every error
is a ProblemDetails (``application/problem+json``); FastAPI serves ``/openapi.json``.

Each allocation carries a strong ETag; a PUT or PATCH with an ``If-Match`` that no
longer holds (another update came first) is refused with 412 and changes nothing.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from sliceai.api.auth import METHOD_ROLES, Authorizer, IdentityError
from sliceai.api.rest import mapping
from sliceai.api.rest.mapping import BASE_PATH, PROBLEM_JSON, BwInfo, BwInfoDeltas
from sliceai.engine import Caller, Engine, EngineError, Grant, InvalidInput, Precondition

log = logging.getLogger(__name__)

#: Key of the peer's DER certificate in each request's ``scope["state"]`` (see .serve).
PEER_CERT = "sliceai_peer_cert"
COLLECTION = f"{BASE_PATH}/bw_allocations"
#: Largest request body read (a BwInfo is well under 4 KiB): larger ones get 413.
MAX_BODY_BYTES = 64 * 1024
T = TypeVar("T")


class BodyLimit:
    """ASGI middleware: a request whose body (declared or as it streams in) is over
    ``limit`` bytes is answered 413 ProblemDetails before the application reads it, so no
    caller can make the service hold a large body in memory."""

    def __init__(self, app: Any, limit: int = MAX_BODY_BYTES) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._refuse(scope, send)
            return
        seen = 0
        over = answered = False

        async def counted() -> Any:
            nonlocal seen, over
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                over = True
                raise _TooLarge  # the application stops reading; its answer is replaced
            return message

        async def answer(message: Any) -> None:
            nonlocal answered
            if not over:
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await self._refuse(scope, send)

        try:
            await self.app(scope, counted, answer)
        except _TooLarge:
            if not answered:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Any, send: Any) -> None:
        detail = f"request body over {self.limit} bytes"
        body = mapping.problem(413, "Content Too Large", detail, scope.get("path", ""))
        response = JSONResponse(body, status_code=413, media_type=PROBLEM_JSON)
        await response(scope, _no_receive, send)


class _TooLarge(Exception):
    pass


async def _no_receive() -> Any:
    return {"type": "http.disconnect"}


class Problem(Exception):
    """An HTTP error answered as ProblemDetails."""

    def __init__(self, status: int, title: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail


def _problem_response(request: Request, status: int, title: str, detail: str) -> JSONResponse:
    body = mapping.problem(status, title, detail, request.url.path)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _validation_detail(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:8]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where or 'body'}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


_PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": mapping.ProblemDetails, "content": {PROBLEM_JSON: {}}}
    for code in (400, 401, 403, 404, 409, 412, 429)
}


class BwmApi:
    """The engine behind the resources, and who may call them."""

    def __init__(self, engine: Engine, auth: Authorizer) -> None:
        self.engine = engine
        self.auth = auth
        self._update = threading.Lock()  # If-Match check and update together (REST callers)

    def caller(self, request: Request, method: str) -> Caller:
        """The caller after the identity, role and rate checks (gRPC's, via the Authorizer)."""
        der = request.scope.get("state", {}).get(PEER_CERT)
        pems = [ssl.DER_cert_to_PEM_cert(der).encode()] if der else []
        try:
            caller = self.auth.caller_of({"x509_pem_cert": pems})
        except IdentityError as exc:
            raise Problem(401, "Unauthorized", f"no valid identity: {exc}") from None
        allowed = METHOD_ROLES[method]
        if caller.role not in allowed:
            raise Problem(
                403,
                "Forbidden",
                f"needs role {' or '.join(sorted(allowed))}; caller has {caller.role!r}",
            )
        named = caller.identity and caller.identity != "local"
        client = request.client.host if request.client else "?"
        key = f"{caller.role}/{caller.identity}" if named else f"rest:{client}"
        if not self.auth.limiter.allow(key):
            raise Problem(429, "Too Many Requests", "rate limit exceeded; slow down")
        return caller

    def find(self, caller: Caller, allocation_id: str) -> Grant:
        for g in self.engine.grants(caller):
            if g.allocation_id == allocation_id:
                return g
        raise Problem(404, "Not Found", f"no bandwidth allocation {allocation_id[:64]!r}")

    def update(
        self,
        caller: Caller,
        allocation_id: str,
        if_match: str | None,
        build: Callable[[Grant], Any],
    ) -> Grant:
        """Replace the grant with ``build(current)`` if ``if_match`` holds (412 otherwise)."""
        with self._update:
            current = self.find(caller, allocation_id)
            if not mapping.if_match_holds(if_match, current):
                raise Precondition(
                    f"If-Match {if_match[:80]!r} does not hold: the allocation changed "
                    f"(now {mapping.etag(current)}); GET it and retry"
                    if if_match
                    else "precondition failed"
                )
            info: BwInfo = build(current)
            if info.allocation_id not in (None, allocation_id):
                raise InvalidInput("allocationId in the body differs from the one in the URI")
            request_type = mapping.REQUEST_TYPE_FROM_MEC[info.request_type]
            filters = mapping.session_filters(info.session_filter)
            same = mapping.keeps_slice(current, request_type, info.app_name or "", filters)
            policy = self.engine.policy
            request = mapping.to_request(policy, info, current.request.slice if same else None)
            return self.engine.modify_grant(caller, allocation_id, request)


def _run(fn: Callable[[], T]) -> T:
    try:
        return fn()
    except EngineError as exc:
        status, title = mapping.problem_of(exc)
        raise Problem(status, title, str(exc) or type(exc).__name__) from None
    except (ValueError, TypeError, OverflowError) as exc:
        raise Problem(400, "Bad Request", str(exc)) from None


def _grant_response(grant: Grant, status: int = 200, **headers: str) -> JSONResponse:
    return JSONResponse(
        mapping.bw_info_json(grant),
        status_code=status,
        headers={"ETag": mapping.etag(grant), **headers},
    )


def build_app(engine: Engine, auth: Authorizer) -> FastAPI:
    """The FastAPI application serving MEC 015 BWM on ``engine``."""
    api = BwmApi(engine, auth)
    app = FastAPI(
        title="sliceai: ETSI GS MEC 015 Bandwidth Management API",
        version="2.1.1",
        description="MEC 015 BWM v2.1.1 on sliceai's admission engine. Which slice an "
        "allocation reserves in: appName naming a slice (name or S-NSSAI), else the slice "
        "whose match rules classify the sessionFilter, else the policy's default slice.",
        docs_url=None,
        redoc_url=None,
    )

    app.add_middleware(BodyLimit)

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return _problem_response(request, exc.status, exc.title, exc.detail)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        return _problem_response(request, 400, "Bad Request", _validation_detail(exc))

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException) -> JSONResponse:
        title = {404: "Not Found", 405: "Method Not Allowed"}.get(exc.status_code, "Error")
        response = _problem_response(request, exc.status_code, title, str(exc.detail))
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:  # every method of the path (starlette names one route's)
            path = request.url.path
            methods = {
                m
                for r in app.routes
                if isinstance(r, APIRoute) and r.path_regex.match(path)
                for m in r.methods or ()
            }
            response.headers["Allow"] = ", ".join(sorted(methods))
        return response

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        log.exception("internal error", exc_info=exc)
        detail = f"internal error: {type(exc).__name__}"
        return _problem_response(request, 500, "Internal Server Error", detail)

    responses = _PROBLEM_RESPONSES

    @app.get(
        f"{COLLECTION}",
        response_model=list[BwInfo],
        responses=responses,
        operation_id="bandwidthAllocationListGET",
        tags=["bwm"],
    )
    def list_allocations(
        request: Request,
        app_instance_id: Annotated[list[str] | None, Query()] = None,
        app_name: Annotated[list[str] | None, Query()] = None,
        session_id: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        """Allocations the caller may see; ``session_id`` matches a SESSION_SPECIFIC
        allocation's allocationId (each describes one session)."""
        caller = api.caller(request, "MecService.ListBandwidth")
        grants = _run(lambda: engine.grants(caller))
        if app_instance_id:
            grants = [g for g in grants if g.app_ins_id in app_instance_id]
        if app_name:
            grants = [g for g in grants if g.request.app_name in app_name]
        if session_id:
            grants = [
                g
                for g in grants
                if g.request.request_type == "session" and g.allocation_id in session_id
            ]
        return JSONResponse([mapping.bw_info_json(g) for g in grants])

    @app.post(
        f"{COLLECTION}",
        status_code=201,
        response_model=BwInfo,
        responses=responses,
        operation_id="bandwidthAllocationPOST",
        tags=["bwm"],
    )
    def create_allocation(request: Request, info: BwInfo) -> Response:
        """Admit an allocation (only if every standing guarantee still holds)."""
        caller = api.caller(request, "MecService.RequestBandwidth")
        grant = _run(lambda: engine.request_grant(caller, mapping.to_request(engine.policy, info)))
        location = f"{COLLECTION}/{grant.allocation_id}"
        return _grant_response(grant, 201, Location=location)

    @app.get(
        f"{COLLECTION}/{{allocationId}}",
        response_model=BwInfo,
        responses=responses,
        operation_id="bandwidthAllocationGET",
        tags=["bwm"],
    )
    def get_allocation(request: Request, allocationId: str) -> Response:
        caller = api.caller(request, "MecService.ListBandwidth")
        return _grant_response(api.find(caller, allocationId))

    @app.put(
        f"{COLLECTION}/{{allocationId}}",
        response_model=BwInfo,
        responses=responses,
        operation_id="bandwidthAllocationPUT",
        tags=["bwm"],
    )
    def put_allocation(
        request: Request,
        allocationId: str,
        info: BwInfo,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Replace the allocation (admitted again); 412 when If-Match no longer holds."""
        caller = api.caller(request, "MecService.ModifyBandwidth")
        grant = _run(lambda: api.update(caller, allocationId, if_match, lambda _: info))
        return _grant_response(grant)

    @app.patch(
        f"{COLLECTION}/{{allocationId}}",
        response_model=BwInfo,
        responses=responses,
        operation_id="bandwidthAllocationPATCH",
        tags=["bwm"],
    )
    def patch_allocation(
        request: Request,
        allocationId: str,
        deltas: BwInfoDeltas,
        if_match: Annotated[str | None, Header()] = None,
    ) -> Response:
        """Apply BwInfoDeltas (JSON merge patch); 412 when If-Match no longer holds."""
        caller = api.caller(request, "MecService.ModifyBandwidth")

        def build(current: Grant) -> BwInfo:
            if deltas.app_ins_id != current.app_ins_id:
                raise InvalidInput("appInsId of an allocation cannot change")
            return mapping.merged(current, deltas)

        grant = _run(lambda: api.update(caller, allocationId, if_match, build))
        return _grant_response(grant)

    @app.delete(
        f"{COLLECTION}/{{allocationId}}",
        status_code=204,
        responses=responses,
        operation_id="bandwidthAllocationDELETE",
        tags=["bwm"],
    )
    def delete_allocation(request: Request, allocationId: str) -> Response:
        caller = api.caller(request, "MecService.ReleaseBandwidth")
        _run(lambda: engine.release_grant(caller, allocationId))
        return Response(status_code=204)

    return app
