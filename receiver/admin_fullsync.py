"""`POST /admin/shops/{domain}/full-sync`: start a full sync (or find the running one); 202 with its id.
`DELETE` on the same path: end the shop's running sync (`shopsync full-sync DOMAIN --cancel`).

Options come from a JSON body or the query string: `force`, `with_orders`, `bulk` (booleans).
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from core import fullsync_control as control
from receiver.appkeys import INSTALLATIONS, KEYS, REDIS
from receiver.problems import json_response, problem

_OPTIONS = ("force", "with_orders", "bulk")


async def post_full_sync(request: web.Request) -> web.StreamResponse:
    shop = request.app[INSTALLATIONS].get(request.match_info["domain"])
    if shop is None:
        return problem(404, f"no shop {request.match_info['domain']!r} in the installations file")
    options: dict[str, Any] = {}
    raw = await request.read()
    if raw.strip():
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return problem(400, "the body must be JSON (or empty)")
        if not isinstance(body, dict):
            return problem(400, "the body must be a JSON object")
        options.update(body)
    for name in _OPTIONS:
        if name in request.query:
            options[name] = request.query[name].lower() in ("1", "true", "yes", "")
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        return problem(400, f"unknown option(s) {', '.join(unknown)} (known: {', '.join(_OPTIONS)})")
    if not all(isinstance(options[name], bool) for name in options):
        return problem(400, "options must be true or false")
    started = await control.start_full_sync(
        request.app[REDIS],
        request.app[KEYS],
        shop.domain,
        force=options.get("force", False),
        with_orders=options.get("with_orders", False),
        bulk=options.get("bulk", shop.sync.bulk_export),
    )
    return json_response({"sync_id": started.sync_id, "started": started.started}, status=202)


async def delete_full_sync(request: web.Request) -> web.StreamResponse:
    """200 with the ended sync's id; 404 when none runs. The shop need not be installed any more:
    a removed shop's sync stays parked until it is back, and this ends it for good."""
    domain = request.match_info["domain"].strip().lower()
    sync_id, refused = await control.cancel_sync(request.app[REDIS], request.app[KEYS], domain)
    if refused:
        return problem(404 if sync_id is None else 409, refused)
    return json_response({"sync_id": sync_id, "state": control.FAILED, "error": control.CANCELLED})
