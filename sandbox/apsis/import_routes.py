"""HTTP routes of imports (imports.py), their upload (upload_storage.py) and the consent report
(reports.py), added to the app by `add_import_routes`.

API routes (behind the app's middleware: bearer token, account limit, faults, counting):

    POST /v2/audience/sections/{section}/imports
    GET  /audience/sections/{section}/imports/{import_id}
    POST /audience/profiles/reports/consents
    GET  /audience/profiles/reports/consents/{report_id}      the poll URL

Storage (no bearer token, no API limit or faults; counted):

    POST /_storage/apsis-imports                               the presigned multipart upload

Control (`/_sandbox/`, no auth):

    GET   /_sandbox/imports              counts: imports by status, rows applied and skipped by
                                         reason, consents, 429s; settings; reports
    GET   /_sandbox/imports/{import_id}  one import with its counts
    PATCH /_sandbox/imports              {rows_per_second, queue_delay_s, upload_ttl_s,
                                          max_file_bytes, max_pending, requests_per_minute,
                                          fail_next, read_only_attributes: [version ids],
                                          expire_uploads: true, report_delay_s}
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sandbox.apsis.http import ACCOUNT_KEY, json_response
from sandbox.apsis.imports import imports_of
from sandbox.apsis.problems import ApiError
from sandbox.apsis.reports import CONTENT_TYPE, reports_of
from sandbox.apsis.upload_storage import UPLOAD_ROUTE, StorageError

IMPORTS = "/v2/audience/sections/{section}/imports"
IMPORT_STATUS = "/audience/sections/{section}/imports/{import_id}"
REPORTS = "/audience/profiles/reports/consents"


def add_import_routes(app: web.Application) -> None:
    r = app.router
    r.add_post(IMPORTS, request_import)
    r.add_get(IMPORT_STATUS, import_status)
    r.add_post(UPLOAD_ROUTE, upload)
    r.add_post(REPORTS, request_report)
    r.add_get(REPORTS + "/{report_id}", download_report)
    r.add_get("/_sandbox/imports", control_summary)
    r.add_patch("/_sandbox/imports", control_patch)
    r.add_get("/_sandbox/imports/{import_id}", control_import)
    app.on_cleanup.append(_close)


async def _close(app: web.Application) -> None:
    await imports_of(app[ACCOUNT_KEY]).close()


def _base_url(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        raise ApiError(400, "body is not valid JSON") from None


async def request_import(request: web.Request) -> web.Response:
    service = imports_of(request.app[ACCOUNT_KEY])
    body = await _json_body(request)
    answer = service.request_import(request.match_info["section"], body, _base_url(request))
    return json_response(answer, status=201)


async def import_status(request: web.Request) -> web.Response:
    service = imports_of(request.app[ACCOUNT_KEY])
    m = request.match_info
    return json_response(service.status(m["section"], m["import_id"]))


async def upload(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    service = imports_of(account)
    now = account.clock()
    try:
        received = await service.storage.receive(request, now)
        if service.upload_expired(received.key, now):
            service.storage.remove(received.path)
            raise StorageError(403, "AccessDenied", "Invalid according to Policy: Policy expired.")
    except StorageError as exc:
        response = exc.response()
    else:
        service.accept_file(received.key, received.path, received.size)
        response = web.Response(status=204)
    account.count_request("POST", UPLOAD_ROUTE, response.status)
    return response


async def request_report(request: web.Request) -> web.Response:
    service = reports_of(request.app[ACCOUNT_KEY])
    body = await _json_body(request)
    return json_response(service.request(body, _base_url(request)), status=201)


async def download_report(request: web.Request) -> web.StreamResponse:
    report = reports_of(request.app[ACCOUNT_KEY]).ready(request.match_info["report_id"])
    assert report.path is not None
    response = web.StreamResponse(headers={"Content-Type": CONTENT_TYPE})
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        response.enable_compression()
    await response.prepare(request)
    with report.path.open("rb") as handle:
        while chunk := handle.read(1 << 16):
            await response.write(chunk)
    await response.write_eof()
    return response


# ---- control ---------------------------------------------------------------------------------


async def control_summary(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    return json_response({**imports_of(account).summary(), "reports": reports_of(account).summary()})


async def control_import(request: web.Request) -> web.Response:
    record = imports_of(request.app[ACCOUNT_KEY]).records.get(request.match_info["import_id"])
    if record is None:
        raise ApiError(404, f"import {request.match_info['import_id']} does not exist")
    return json_response(record.to_json())


async def control_patch(request: web.Request) -> web.Response:
    account = request.app[ACCOUNT_KEY]
    service = imports_of(account)
    body = await _json_body(request)
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    settings = service.settings
    expired = 0
    try:
        for name, cast in (
            ("rows_per_second", float),
            ("queue_delay_s", float),
            ("upload_ttl_s", float),
            ("max_file_bytes", int),
            ("max_pending", int),
            ("requests_per_minute", int),
            ("fail_next", int),
        ):
            if name in body:
                setattr(settings, name, cast(body[name]))
        if "read_only_attributes" in body:
            settings.read_only_attributes = {str(v) for v in body["read_only_attributes"]}
        if "report_delay_s" in body:
            reports_of(account).report_delay_s = float(body["report_delay_s"])
        if body.get("expire_uploads"):
            expired = service.expire_uploads()
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"bad import settings: {exc}") from None
    return json_response({**service.summary(), "expired_uploads": expired})
