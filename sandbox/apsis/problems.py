"""Problem JSON (RFC 7807) answers, the only error shape the sandbox gives."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from aiohttp import web

PROBLEM_TYPE = "application/problem+json"

TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    413: "Payload Too Large",
    415: "Unsupported Media Type",
    429: "Too Many Requests",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
}


class ApiError(Exception):
    """Raised by account operations and handlers; the app turns it into a problem answer."""

    def __init__(self, status: int, detail: str, *, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})


def problem(status: int, detail: str, headers: Mapping[str, str] | None = None) -> web.Response:
    body = orjson.dumps(
        {
            "type": f"https://sandbox.apsis.invalid/problems/{status}",
            "title": TITLES.get(status, "Error"),
            "status": status,
            "detail": detail,
        }
    )
    response = web.Response(status=status, body=body, headers=headers)
    response.content_type = PROBLEM_TYPE
    return response
