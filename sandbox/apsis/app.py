"""The APSIS One API over HTTP, served from an `Account`.

One middleware does what every API request shares, in this order: count it (method, route
template, status), injected faults (outage, latency, error share), the bearer token, the account
limit, the per-profile limit; then the handler. Handlers are lean: cached definition bodies,
orjson, dictionary lookups, nothing logged. `/_sandbox/` (control.py) is outside all of that.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import web

from sandbox.apsis.account import CONSENT_1_ROUTES, Account, default_account
from sandbox.apsis.control import add_control_routes
from sandbox.apsis.http import ACCOUNT_KEY, JSON_HEADERS, json_response
from sandbox.apsis.import_routes import add_import_routes
from sandbox.apsis.limits import retry_after_header
from sandbox.apsis.problems import ApiError, problem
from sandbox.apsis.upload_storage import STORAGE_PREFIX

TOKEN_ROUTE = "/oauth/token"
CONTROL_PREFIX = "/_sandbox"
MERGE_PATCH = "application/merge-patch+json"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def create_app(account: Account | None = None) -> web.Application:
    """The aiohttp application serving `account` (a fresh `default_account()` when None)."""
    account = account if account is not None else default_account()
    # Bodies over the account's limit must reach the handlers to get a problem JSON 413.
    app = web.Application(middlewares=[api_middleware], client_max_size=max(4 * account.max_body, 1 << 20))
    app[ACCOUNT_KEY] = account
    r = app.router
    r.add_post(TOKEN_ROUTE, token)
    r.add_get("/audience/keyspaces", keyspaces)
    r.add_get("/audience/sections", sections)
    r.add_get("/audience/sections/{section}/attributes", attributes_definitions)
    r.add_get("/audience/sections/{section}/events", events_definitions)
    r.add_get("/v2/audience/sections/{section}/topics", topics)
    profile = "/audience/keyspaces/{keyspace}/profiles/{profile_key}"
    r.add_patch(profile + "/sections/{section}/attributes", patch_attributes)
    r.add_get(profile + "/sections/{section}/attributes", get_attributes)
    r.add_post(profile + "/sections/{section}/events", post_events)
    r.add_delete(profile, delete_profile)
    r.add_post("/v2" + profile + "/sections/{section}/consents", post_consent)
    r.add_get("/v2" + profile + "/sections/{section}/consents", get_consents)
    for route in CONSENT_1_ROUTES:  # a migrated account refuses every method on them
        r.add_route("*", route, consent_1_blocked)
    add_import_routes(app)  # imports, their presigned upload, the consent report
    add_control_routes(app)
    return app


# ---- the middleware --------------------------------------------------------------------------


@web.middleware
async def api_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match_info = request.match_info
    resource = match_info.route.resource
    template = resource.canonical if resource is not None else "<unmatched>"
    if template.startswith(STORAGE_PREFIX):  # the upload URL: storage, not the API (no token, no limits)
        return await handler(request)
    if template.startswith(CONTROL_PREFIX):
        try:
            return await handler(request)
        except ApiError as exc:
            return problem(exc.status, exc.detail, exc.headers)
    account = request.app[ACCOUNT_KEY]
    try:
        response = await _serve(request, handler, account, template)
    except ApiError as exc:
        response = problem(exc.status, exc.detail, exc.headers)
    except web.HTTPException as exc:  # aiohttp's own (e.g. body over client_max_size)
        response = problem(exc.status, exc.reason)
    account.requests[(request.method, template, response.status)] += 1
    return response


async def _serve(
    request: web.Request, handler: Handler, account: Account, template: str
) -> web.StreamResponse:
    faults = account.faults
    late_fault: int | None = None
    if faults.active:
        now = account.clock()
        if faults.outage_until > now:
            account.faults_injected["outage"] += 1
            if faults.outage_mode == "reset":
                _reset_connection(request)
            return problem(503, "the service is unavailable (sandbox outage)", {"Retry-After": "1"})
        delay = faults.latency()
        if delay > 0:
            account.faults_injected["latency"] += 1
            await asyncio.sleep(delay)
        status = faults.pick_error()
        if status is not None:
            if faults.after_write:
                late_fault = status
            else:
                return _fault(account, status)
    exc = request.match_info.http_exception
    if exc is not None:  # no such route (404) or method (405)
        return problem(exc.status, f"{request.method} {request.path}: {exc.reason}", _allow(exc))
    if template != TOKEN_ROUTE:
        auth = request.headers.get("Authorization", "")
        if auth[:7].lower() != "bearer " or not account.token_valid(auth[7:].strip()):
            detail = "missing bearer token" if not auth else "the access token is invalid or has expired"
            return problem(401, detail, {"WWW-Authenticate": 'Bearer error="invalid_token"'})
        now = account.clock()
        wait = account.account_limiter.hit(None, now)
        if wait:
            account.rate_limited["account"] += 1
            return problem(429, "account rate limit exceeded", {"Retry-After": retry_after_header(wait)})
        match = request.match_info
        subject = match.get("profile_key")
        if subject is not None:
            wait = account.profile_limiter.hit((match["keyspace"], subject), now)
        else:
            subject = match.get("address")
            if subject is not None:
                wait = account.profile_limiter.hit((match["channel"], subject), now)
        if wait:
            account.rate_limited["profile"] += 1
            return problem(
                429, f"rate limit exceeded for {subject}", {"Retry-After": retry_after_header(wait)}
            )
    response = await handler(request)
    if late_fault is not None:
        return _fault(account, late_fault)
    return response


def _fault(account: Account, status: int) -> web.Response:
    account.faults_injected[str(status)] += 1
    headers = {"Retry-After": "1"} if status in (429, 503) else None
    return problem(status, f"injected fault {status}", headers)


def _allow(exc: web.HTTPException) -> dict[str, str] | None:
    allow = exc.headers.get("Allow")
    return {"Allow": allow} if allow else None


def _reset_connection(request: web.Request) -> None:
    """Abort the connection with a TCP RST, as a crashed load balancer would."""
    transport = request.transport
    if transport is None:
        return
    sock = transport.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


# ---- helpers ---------------------------------------------------------------------------------


async def _read_json(request: web.Request, account: Account) -> Any:
    length = request.content_length
    if length is not None and length > account.max_body:
        raise ApiError(413, f"body of {length} bytes is over the limit of {account.max_body} bytes")
    raw = await request.read()
    if len(raw) > account.max_body:
        raise ApiError(413, f"body of {len(raw)} bytes is over the limit of {account.max_body} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None


def _media_type(request: web.Request) -> str:
    return request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()


# ---- token -----------------------------------------------------------------------------------


async def token(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    media = _media_type(request)
    raw = await request.read()
    fields: dict[str, Any]
    if media == "application/x-www-form-urlencoded":
        fields = dict(parse_qsl(raw.decode("utf-8", "replace")))
    else:
        try:
            body = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            raise ApiError(400, "body must be JSON (or form-encoded)") from None
        if not isinstance(body, dict):
            raise ApiError(400, "body must be a JSON object")
        fields = body
    client_id = fields.get("client_id")
    client_secret = fields.get("client_secret")
    basic = request.headers.get("Authorization", "")
    if client_id is None and basic[:6].lower() == "basic ":
        try:
            client_id, _, client_secret = base64.b64decode(basic[6:]).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise ApiError(400, "malformed Basic authorization") from None
    wait = account.token_limiter.hit(str(client_id), account.clock())
    if wait:
        account.rate_limited["token"] += 1
        raise ApiError(
            429, "token endpoint limit exceeded", headers={"Retry-After": retry_after_header(wait)}
        )
    if fields.get("grant_type", "client_credentials") != "client_credentials":
        raise ApiError(400, f"unsupported grant_type {fields.get('grant_type')!r}")
    if not isinstance(client_id, str) or not isinstance(client_secret, str):
        raise ApiError(400, "client_id and client_secret are required")
    if not account.check_client(client_id, client_secret):
        raise ApiError(401, "invalid client credentials")
    access_token, expires_in = account.issue_token(client_id)
    body = {"access_token": access_token, "expires_in": expires_in, "token_type": "Bearer"}
    return web.Response(
        body=orjson.dumps(body), headers={"Content-Type": "application/json", "Cache-Control": "no-store"}
    )


# ---- definitions -----------------------------------------------------------------------------


def _section(request: web.Request) -> Any:
    index = request.app[ACCOUNT_KEY].sections.get(request.match_info["section"])
    if index is None:
        raise ApiError(404, f"section {request.match_info['section']} does not exist")
    return index


async def keyspaces(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ACCOUNT_KEY].keyspaces_body, headers=JSON_HEADERS)


async def sections(request: web.Request) -> web.Response:
    return web.Response(body=request.app[ACCOUNT_KEY].sections_body, headers=JSON_HEADERS)


async def attributes_definitions(request: web.Request) -> web.Response:
    return web.Response(body=_section(request).attributes_body, headers=JSON_HEADERS)


async def topics(request: web.Request) -> web.Response:
    return web.Response(body=_section(request).topics_body, headers=JSON_HEADERS)


async def events_definitions(request: web.Request) -> web.Response:
    return web.Response(body=_section(request).events_body, headers=JSON_HEADERS)


# ---- profiles --------------------------------------------------------------------------------


async def patch_attributes(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    if _media_type(request) != MERGE_PATCH:
        raise ApiError(415, f"Content-Type must be {MERGE_PATCH}")
    body = await _read_json(request, account)
    m = request.match_info
    account.patch_attributes(m["keyspace"], m["profile_key"], m["section"], body)
    return web.Response(status=204)


async def get_attributes(request: web.Request) -> web.Response:
    m = request.match_info
    return json_response(
        request.app[ACCOUNT_KEY].get_attributes(m["keyspace"], m["profile_key"], m["section"])
    )


async def post_events(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    body = await _read_json(request, account)
    m = request.match_info
    account.add_events(m["keyspace"], m["profile_key"], m["section"], body)
    return web.Response(status=204)


async def delete_profile(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    m = request.match_info
    if account.delete_profile(m["keyspace"], m["profile_key"]) or account.delete_missing_status == 204:
        return web.Response(status=204)
    raise ApiError(404, f"profile {m['profile_key']} does not exist in keyspace {m['keyspace']}")


# ---- consents (Consent 2.0) ------------------------------------------------------------------


async def post_consent(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    body = await _read_json(request, account)
    m = request.match_info
    # 201 created, 204 updated (no body); 409 when the consent already has that type.
    return web.Response(status=account.post_consent(m["keyspace"], m["profile_key"], m["section"], body))


async def get_consents(request: web.Request) -> web.Response:
    m = request.match_info
    query = request.query
    answer = request.app[ACCOUNT_KEY].get_consents(
        m["keyspace"],
        m["profile_key"],
        m["section"],
        consent_types=query.getall("consent_types", []),
        suppression_addresses=query.getall("suppression_addresses", []),
    )
    return json_response(answer)


CONSENT_1_BLOCKED = (
    "Consent 1.0 endpoints are blocked for this account: it has been migrated to Consent 2.0 "
    "(use /v2/.../consents)"
)


async def consent_1_blocked(request: web.Request) -> web.Response:
    """What a migrated account answers on every Consent 1.0 route, whatever the method."""
    raise ApiError(403, CONSENT_1_BLOCKED)
