"""The HTTP plumbing both clients share: sessions, URLs with quoted path parameters, one send.

`send` performs one request and returns the answer whatever its status, records metrics, and
turns connection errors and timeouts into `TransientApiError`; deciding what a status means is
the client's job.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from multidict import CIMultiDictProxy
from yarl import URL

from worker import metrics
from worker.errors import Api, TransientApiError

DEFAULT_TIMEOUT = aiohttp.ClientTimeout(total=30, connect=5, sock_read=25)


def new_session(timeout: aiohttp.ClientTimeout = DEFAULT_TIMEOUT) -> aiohttp.ClientSession:
    # No connection cap of aiohttp's own: the clients' semaphores bound concurrency.
    connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
    return aiohttp.ClientSession(timeout=timeout, connector=connector)


def build_url(base: str, template: str, query: Mapping[str, Any] | None = None, **params: Any) -> URL:
    """`base + template` with every `{name}` replaced by its value, percent-encoded with nothing
    safe (an email's `+` and `@` too), and the query appended. Built as an already encoded URL:
    yarl would otherwise turn `%40` back into `@`."""
    path = template.format(**{name: quote(str(value), safe="") for name, value in params.items()})
    url = base.rstrip("/") + path
    if query:
        url += "?" + urlencode({k: v for k, v in query.items() if v is not None}, quote_via=quote)
    return URL(url, encoded=True)


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: CIMultiDictProxy[str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body) if self.body else None


async def send(
    session: aiohttp.ClientSession,
    api: Api,
    method: str,
    url: URL,
    route: str,
    *,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Answer:
    started = time.perf_counter()
    try:
        async with session.request(method, url, headers=headers, data=body) as response:
            payload = await response.read()
            answer = Answer(response.status, response.headers, payload)
    except TimeoutError as exc:
        metrics.request_done(api, method, route, "error", None)
        raise TransientApiError(api, None, "timeout", type(exc).__name__, method=method, route=route) from exc
    except aiohttp.ClientError as exc:
        metrics.request_done(api, method, route, "error", None)
        raise TransientApiError(
            api, None, "connection error", type(exc).__name__, method=method, route=route
        ) from exc
    metrics.request_done(api, method, route, str(answer.status), time.perf_counter() - started)
    return answer
