"""The OAuth install flow for `auth.mode = "oauth"` shops: `GET /auth/install`, `GET /auth/callback`.

`GET /auth/install?shop=DOMAIN`, in order: the domain is a `*.myshopify.com` hostname (else 400),
a `[[shop]]` of the installations file (else 404) whose auth mode is `oauth` (else 400), and the
token key is configured (else 503); then a single-use `state` (random, bound to the shop, kept in
Redis for `STATE_TTL_S`) and a 302 to `{admin_url}/admin/oauth/authorize?client_id=&scope=
&redirect_uri=&state=`.

`GET /auth/callback`, in order: `code`, `shop`, `state`, `timestamp` and `hmac` present (else 400);
the shop as above (400/404); the query HMAC keyed with the shop's client secret (else 401); the
timestamp recent (else 401); the state consumed in one Redis step and bound to this shop (else
401: a replay finds it gone). Then the code is exchanged for an expiring offline token pair
(`core.shopify_auth.authorization_code`): refused 400, the token endpoint failing or timing out
502. Only then is the pair stored (`TokenStore.put`, one atomic write), the shop's "needs approval"
cleared and an `install_shop` job enqueued (the worker registers the webhooks and starts a full
sync); 200 with a small page. Every refusal is a small HTML page, one log line without secrets,
nothing stored and no job. No Shopify client here: the receiver stays thin.
"""

from __future__ import annotations

import html
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import orjson
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from redis.exceptions import RedisError
from yarl import URL

from core.jobs import JOB_TTL_MS, job_bytes, now_ms
from core.keys import Keys
from core.redis_conn import typed
from core.shopify_auth import authorization_code
from core.shopify_auth.cipher import TokenCipher, TokenKeyError
from core.shopify_auth.grant import GrantRefusedError, TokenUnavailableError
from core.shopify_auth.record import TokenRecord
from core.shopify_auth.store import TokenStore
from mappings.installation import Shop, requested_scopes
from receiver.appkeys import INSTALLATIONS, KEYS, REDIS
from receiver.auth_verify import fresh, valid_shop_domain, verify_query

STATE_TTL_S = 600  # the merchant has ten minutes to approve
INSTALL_JOB = "install_shop"
EXCHANGE_TIMEOUT_S = 15.0
PUBLIC_URL_ENV = "SHOPSYNC_PUBLIC_URL"  # e.g. https://shopsync.example.com (else from the request)
log = structlog.get_logger("receiver.auth")

SESSION = web.AppKey("auth_session", aiohttp.ClientSession)
CIPHER = web.AppKey("auth_cipher", dict[str, TokenCipher])  # read from the environment once

# GET and DEL in one step: two callbacks with the same state cannot both find it.
_CONSUME_LUA = "local v = redis.call('GET', KEYS[1]) if v then redis.call('DEL', KEYS[1]) end return v"


class Refused(Exception):
    """A request the flow answers with a page and a log line, changing nothing."""

    def __init__(self, status: int, reason: str, detail: str) -> None:
        self.status, self.reason, self.detail = status, reason, detail
        super().__init__(reason)


def add_routes(app: web.Application) -> None:
    app[CIPHER] = {}
    app.router.add_get("/auth/install", install)
    app.router.add_get("/auth/callback", callback)

    async def session(app: web.Application) -> AsyncIterator[None]:
        app[SESSION] = aiohttp.ClientSession()
        yield
        await app[SESSION].close()

    app.cleanup_ctx.append(session)


def state_key(keys: Keys, state: str) -> str:
    return keys.oauth_state(state)


def public_origin(request: web.Request) -> str:
    """The receiver's address as the merchant's browser sees it (`SHOPSYNC_PUBLIC_URL` wins)."""
    configured = os.environ.get(PUBLIC_URL_ENV, "").strip().rstrip("/")
    if configured:
        return configured
    proto = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
    host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return f"{proto}://{host}"


async def install(request: web.Request) -> web.StreamResponse:
    try:
        shop = _oauth_shop(request, request.query.get("shop", ""))
        _cipher(request)
        origin = public_origin(request)
        state = secrets.token_urlsafe(32)
        value = orjson.dumps({"shop": shop.domain, "origin": origin})
        await request.app[REDIS].set(state_key(request.app[KEYS], state), value, ex=STATE_TTL_S)
    except Refused as exc:
        return _refusal("oauth_install_refused", request, exc)
    except (RedisError, OSError) as exc:
        return _refusal("oauth_install_refused", request, _redis_down(exc))
    query = {
        "client_id": shop.auth.client_id,
        "scope": ",".join(requested_scopes(shop.auth)),
        "redirect_uri": f"{origin}/auth/callback",
        "state": state,
    }
    log.info("oauth_install_started", shop=shop.domain)
    location = URL(shop.admin_url.rstrip("/") + "/admin/oauth/authorize").with_query(query)
    raise web.HTTPFound(location=str(location))


async def callback(request: web.Request) -> web.StreamResponse:
    try:
        shop, origin = await _verified(request)
        record = await _exchange(request, shop, request.query["code"])
        await _store_and_enqueue(request, shop, record, origin)
    except Refused as exc:
        return _refusal("oauth_callback_refused", request, exc)
    log.info("oauth_installed", shop=shop.domain)
    return page(
        200,
        "Connected",
        f"{shop.domain} is connected. Its webhooks are being registered and a full sync starts now;"
        " this window can be closed.",
    )


async def _verified(request: web.Request) -> tuple[Shop, str]:
    """The callback's checks, in the module docstring's order; the state is consumed last."""
    query = request.query
    missing = [name for name in ("code", "shop", "state", "timestamp", "hmac") if not query.get(name)]
    if missing:
        raise Refused(400, "missing_parameters", f"The callback lacks {', '.join(missing)}.")
    shop = _oauth_shop(request, query["shop"])
    if not verify_query(query.items(), shop.auth.client_secret):
        raise Refused(
            401, "bad_hmac", "The callback's signature does not match: it did not come from Shopify."
        )
    if not fresh(query["timestamp"], time.time()):
        raise Refused(401, "stale_timestamp", "The callback is too old: start again from /auth/install.")
    _cipher(request)  # a missing key refuses before the state is spent
    try:
        key = state_key(request.app[KEYS], query["state"])
        raw = await typed(request.app[REDIS].eval(_CONSUME_LUA, 1, key))
    except (RedisError, OSError) as exc:
        raise _redis_down(exc) from None
    if raw is None:
        raise Refused(
            401,
            "unknown_state",
            "This approval link is unknown, expired or already used: start again from /auth/install.",
        )
    bound = orjson.loads(raw)
    if bound.get("shop") != shop.domain:
        raise Refused(401, "state_for_other_shop", "This approval was started for another shop.")
    return shop, str(bound.get("origin") or public_origin(request))


async def _exchange(request: web.Request, shop: Shop, code: str) -> TokenRecord:
    try:
        return await authorization_code.exchange(
            request.app[SESSION], shop, code, timeout_s=EXCHANGE_TIMEOUT_S
        )
    except GrantRefusedError:
        raise Refused(
            400, "grant_refused", "Shopify refused the approval code: start again from /auth/install."
        ) from None
    except TokenUnavailableError as exc:
        raise Refused(
            502,
            "token_endpoint_failed",
            f"Shopify's token endpoint failed ({exc.reason}): start again from /auth/install.",
        ) from None


async def _store_and_enqueue(request: web.Request, shop: Shop, record: TokenRecord, origin: str) -> None:
    redis, keys = request.app[REDIS], request.app[KEYS]
    store = TokenStore(redis, keys, _cipher(request))
    try:
        await store.put(shop.domain, record)  # the pair in one write, "needs approval" cleared with it
        await enqueue_install(redis, keys, shop.domain, f"{origin}/webhooks/shopify")
    except (RedisError, OSError) as exc:
        raise _redis_down(exc) from None


async def enqueue_install(redis: aioredis.Redis, keys: Keys, domain: str, address: str) -> str:
    """Put one `install_shop` job on the real-time queue (the job and its queue entry together)."""
    job_id = f"{INSTALL_JOB}:{domain}:{uuid.uuid4().hex}"
    data = job_bytes(INSTALL_JOB, ({"shop": domain, "address": address},))
    async with redis.pipeline(transaction=True) as pipe:
        pipe.psetex(f"arq:job:{job_id}", JOB_TTL_MS, data)
        pipe.zadd(keys.realtime_queue, {job_id: now_ms()})
        await pipe.execute()
    return job_id


def _oauth_shop(request: web.Request, domain: str) -> Shop:
    domain = domain.strip().lower()
    if not valid_shop_domain(domain):
        raise Refused(400, "bad_shop_domain", "The shop must be a domain like your-store.myshopify.com.")
    shop = request.app[INSTALLATIONS].get(domain)
    if shop is None:
        raise Refused(
            404, "unknown_shop", f"{domain} has no [[shop]] entry in this service's installations file."
        )
    if shop.auth.mode != "oauth":
        raise Refused(
            400,
            "not_oauth",
            f"{domain} connects with auth mode {shop.auth.mode!r}: there is nothing to approve.",
        )
    return shop


def _cipher(request: web.Request) -> TokenCipher:
    cipher = request.app[CIPHER].get("key")
    if cipher is None:
        try:
            cipher = TokenCipher.from_env()
        except TokenKeyError:  # the key missing or malformed: name the variable, never its value
            raise Refused(
                503, "no_token_key", "This service cannot store tokens: set SHOPSYNC_TOKEN_KEY."
            ) from None
        request.app[CIPHER]["key"] = cipher
    return cipher


def _redis_down(exc: BaseException) -> Refused:
    return Refused(
        503, "redis_unavailable", f"Storage is unavailable ({type(exc).__name__}): try again shortly."
    )


def _refusal(event: str, request: web.Request, exc: Refused) -> web.Response:
    log.warning(event, reason=exc.reason, status=exc.status, shop=_shop_param(request))
    return page(exc.status, "Not connected", exc.detail)


def _shop_param(request: web.Request) -> str:
    shop = request.query.get("shop", "")
    return shop if valid_shop_domain(shop.strip().lower()) else "(invalid)"


def page(status: int, title: str, text: str) -> web.Response:
    body = (
        f"<!doctype html><html lang=en><meta charset=utf-8><title>shopsync: {html.escape(title)}</title>"
        "<body style='font-family:system-ui;max-width:36rem;margin:4rem auto'>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>"
    )
    return web.Response(
        status=status,
        text=body,
        content_type="text/html",
        headers={"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"},
    )
