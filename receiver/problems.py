"""Problem-details answers (RFC 9457): every error the receiver gives has a JSON body saying why."""

from __future__ import annotations

import orjson
from aiohttp import web

_TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    409: "Conflict",
    413: "Payload Too Large",
    503: "Service Unavailable",
}


def problem(status: int, detail: str, *, headers: dict[str, str] | None = None) -> web.Response:
    body = {"type": "about:blank", "title": _TITLES.get(status, "Error"), "status": status, "detail": detail}
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/problem+json", headers=headers
    )


def json_response(data: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(data), content_type="application/json")
