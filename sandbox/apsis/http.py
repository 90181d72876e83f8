"""What the API routes (app.py) and the control routes (control.py) share over HTTP.

The application key under which the simulated `Account` is stored, and the plain JSON answer
(orjson body, `application/json`). Both route modules import this one, so app.py imports
control.py and never the other way round.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sandbox.apsis.account import Account

ACCOUNT_KEY = web.AppKey("apsis_account", Account)
JSON_HEADERS = {"Content-Type": "application/json"}


def json_response(data: Any, status: int = 200) -> web.Response:
    """`data` as an orjson body with `Content-Type: application/json`."""
    return web.Response(status=status, body=orjson.dumps(data), headers=JSON_HEADERS)
