"""`/_sandbox/`: inspection and control of the simulated account over HTTP (JSON), no auth.

For people running `shopsync sandbox` and for tests in other processes. Routes:

    GET    /_sandbox                                  summary (counts, limits) and this list
    GET    /_sandbox/definitions                      keyspaces and sections with everything in them
    GET    /_sandbox/profiles?keyspace=&offset=&limit= profile keys
    GET    /_sandbox/profiles/{keyspace}/{profile_key} one profile (attributes, events by section)
    GET    /_sandbox/consents/{keyspace}/{profile_key}/{section}   the profile's consents
                                                      {items: [as the v2 GET], opted_in: {channel: [topics]}}
    POST   /_sandbox/consents/{keyspace}/{profile_key}/{section}   a consent given in APSIS itself:
                                                      {channel, topic, type, source?, reason?}
                                                      (channel: email, sms or full; no write log)
    GET    /_sandbox/suppressions                     every suppressed address
    POST   /_sandbox/suppressions                     {address, channel?}: suppress it
    GET    /_sandbox/suppressions/{address}           {address, suppressed}
    DELETE /_sandbox/suppressions/{address}           lift it
    PATCH  /_sandbox/keyspaces/{keyspace}             {manage_subscriptions: bool}
    GET    /_sandbox/requests                         request counts by method, route, status
    GET    /_sandbox/writes?after=SEQ&limit=N         the write log, in order
    GET    /_sandbox/faults                           current faults
    PATCH  /_sandbox/faults                           {error_rates: {"500": 0.1}, after_write, seed,
                                                       latency: s | [min, max],
                                                       outage: {seconds?, mode: "503"|"reset"} | null}
    DELETE /_sandbox/faults                           no faults
    POST   /_sandbox/tokens/revoke                    every token stops working now
    GET    /_sandbox/limits                           rate limits and token lifetime
    PATCH  /_sandbox/limits                           {account_per_second, profile_per_second,
                                                       token_per_minute (null disables), token_lifetime}
    POST   /_sandbox/reset                            forget profiles, consents, suppressions, tokens,
                                                       counters, log, imports and reports (definitions
                                                       and flags stay)
    /_sandbox/imports                                 imports and the consent report: import_routes.py
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from sandbox.apsis.account import Account
from sandbox.apsis.consents import OPTED_IN
from sandbox.apsis.definitions import channel_discriminator
from sandbox.apsis.http import ACCOUNT_KEY, json_response
from sandbox.apsis.imports import imports_of
from sandbox.apsis.problems import ApiError
from sandbox.apsis.reports import reports_of

P = "/_sandbox"


def add_control_routes(app: web.Application) -> None:
    r = app.router
    r.add_get(P, index)
    r.add_get(P + "/definitions", definitions)
    r.add_get(P + "/profiles", profiles)
    r.add_get(P + "/profiles/{keyspace}/{profile_key}", profile)
    r.add_get(P + "/consents/{keyspace}/{profile_key}/{section}", consents)
    r.add_post(P + "/consents/{keyspace}/{profile_key}/{section}", set_consent)
    r.add_get(P + "/suppressions", suppressions)
    r.add_post(P + "/suppressions", suppress)
    r.add_get(P + "/suppressions/{address}", suppressed)
    r.add_delete(P + "/suppressions/{address}", unsuppress)
    r.add_patch(P + "/keyspaces/{keyspace}", patch_keyspace)
    r.add_get(P + "/requests", requests)
    r.add_get(P + "/writes", writes)
    r.add_get(P + "/faults", get_faults)
    r.add_patch(P + "/faults", patch_faults)
    r.add_put(P + "/faults", patch_faults)
    r.add_delete(P + "/faults", clear_faults)
    r.add_post(P + "/tokens/revoke", revoke_tokens)
    r.add_get(P + "/limits", get_limits)
    r.add_patch(P + "/limits", patch_limits)
    r.add_post(P + "/reset", reset)


def _account(request: web.Request) -> Account:
    return request.app[ACCOUNT_KEY]


def _int_query(request: web.Request, name: str, default: int) -> int:
    try:
        return int(request.query.get(name, default))
    except ValueError:
        raise ApiError(400, f"{name} must be an integer") from None


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise ApiError(400, "body must be JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "body must be a JSON object")
    return body


def _string(body: dict[str, Any], name: str, *, required: bool = True) -> str | None:
    value = body.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ApiError(400, f"{name} must be a non-empty string")
    return value


async def index(request: web.Request) -> web.Response:
    routes = sorted(
        {
            f"{r.method} {r.resource.canonical}"
            for r in request.app.router.routes()
            if r.resource and r.method != "HEAD"
        }
    )
    return json_response({**_account(request).summary(), "routes": routes})


async def definitions(request: web.Request) -> web.Response:
    d = _account(request).definitions
    return json_response(
        {
            "keyspaces": [k.to_json() for k in d.keyspaces],
            "sections": [
                {
                    **s.to_json(),
                    "attributes": [a.to_json() for a in s.attributes],
                    "folders": [
                        {**f.to_json(), "topics": [t.to_json(f.discriminator) for t in f.topics]}
                        for f in s.folders
                    ],
                    "events": [e.to_json() for e in s.events],
                }
                for s in d.sections
            ],
        }
    )


async def profiles(request: web.Request) -> web.Response:
    keys = _account(request).profile_keys(request.query.get("keyspace"))
    offset = _int_query(request, "offset", 0)
    limit = _int_query(request, "limit", 100)
    page = keys[offset : offset + limit]
    return json_response({"total": len(keys), "items": [{"keyspace": k, "key": p} for k, p in page]})


async def profile(request: web.Request) -> web.Response:
    m = request.match_info
    view = _account(request).profile(m["keyspace"], m["profile_key"])
    if view is None:
        raise ApiError(404, f"no profile {m['profile_key']} in keyspace {m['keyspace']}")
    return json_response(view.to_json())


async def consents(request: web.Request) -> web.Response:
    m = request.match_info
    records = _account(request).profile_consents(m["keyspace"], m["profile_key"], m["section"])
    opted_in: dict[str, list[str]] = {}
    for (channel, topic), record in sorted(records.items()):
        if record.type in OPTED_IN:
            opted_in.setdefault(channel, []).append(topic)
    return json_response({"items": [records[k].to_json() for k in sorted(records)], "opted_in": opted_in})


async def set_consent(request: web.Request) -> web.Response:
    account = _account(request)
    m = request.match_info
    body = await _body(request)
    channel, topic, kind = (_string(body, name) or "" for name in ("channel", "topic", "type"))
    given = {name: _string(body, name, required=False) for name in ("source", "reason")}
    try:
        account.set_consent(
            m["keyspace"],
            m["profile_key"],
            m["section"],
            channel,
            topic,
            kind,
            **{name: value for name, value in given.items() if value is not None},
        )
    except KeyError as exc:
        raise ApiError(404, str(exc.args[0])) from None
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    records = account.profile_consents(m["keyspace"], m["profile_key"], m["section"])
    return json_response(records[(channel_discriminator(channel), topic)].to_json())


async def suppressions(request: web.Request) -> web.Response:
    return json_response({"items": _account(request).suppression_list()})


async def suppress(request: web.Request) -> web.Response:
    account = _account(request)
    body = await _body(request)
    address = _string(body, "address") or ""
    try:
        account.suppress(address, _string(body, "channel", required=False))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    return json_response({"address": address, "suppressed": True})


async def suppressed(request: web.Request) -> web.Response:
    address = request.match_info["address"]
    return json_response({"address": address, "suppressed": _account(request).suppressed(address)})


async def unsuppress(request: web.Request) -> web.Response:
    address = request.match_info["address"]
    _account(request).unsuppress(address)
    return json_response({"address": address, "suppressed": False})


async def patch_keyspace(request: web.Request) -> web.Response:
    account = _account(request)
    keyspace = request.match_info["keyspace"]
    body = await _body(request)
    allowed = body.get("manage_subscriptions")
    if not isinstance(allowed, bool):
        raise ApiError(400, "manage_subscriptions must be true or false")
    if keyspace not in account.keyspaces:
        raise ApiError(404, f"keyspace {keyspace} does not exist")
    account.set_manage_subscriptions(keyspace, allowed)
    return json_response(account.keyspaces[keyspace].to_json())


async def requests(request: web.Request) -> web.Response:
    account = _account(request)
    items = [
        {"method": m, "route": r, "status": s, "count": n}
        for (m, r, s), n in sorted(account.requests.items())
    ]
    return json_response(
        {
            "total": sum(account.requests.values()),
            "items": items,
            "rate_limited": dict(account.rate_limited),
            "faults_injected": dict(account.faults_injected),
        }
    )


async def writes(request: web.Request) -> web.Response:
    after = _int_query(request, "after", 0)
    limit = _int_query(request, "limit", 1000)
    return json_response({"items": [w.to_json() for w in _account(request).writes_after(after, limit)]})


async def get_faults(request: web.Request) -> web.Response:
    account = _account(request)
    return json_response(account.faults.to_json(account.clock()))


async def patch_faults(request: web.Request) -> web.Response:
    account = _account(request)
    body = await _body(request)
    if request.method == "PUT":
        account.faults.clear()
    try:
        account.faults.update_from_json(body, account.clock())
    except (ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ApiError(400, f"bad faults: {exc}") from None
    return json_response(account.faults.to_json(account.clock()))


async def clear_faults(request: web.Request) -> web.Response:
    account = _account(request)
    account.faults.clear()
    return json_response(account.faults.to_json(account.clock()))


async def revoke_tokens(request: web.Request) -> web.Response:
    return json_response({"revoked": _account(request).revoke_tokens()})


async def get_limits(request: web.Request) -> web.Response:
    return json_response(_account(request).limits_json())


async def patch_limits(request: web.Request) -> web.Response:
    account = _account(request)
    body = await _body(request)
    try:
        changes: dict[str, int | None] = {}
        for field, name in (
            ("account_per_second", "account"),
            ("profile_per_second", "profile"),
            ("token_per_minute", "token_per_minute"),
        ):
            if field in body:
                changes[name] = None if body[field] is None else int(body[field])
        account.set_rate_limits(**changes)
        if "token_lifetime" in body:
            account.token_lifetime = float(body["token_lifetime"])
    except (TypeError, ValueError) as exc:
        raise ApiError(400, f"bad limits: {exc}") from None
    return json_response(account.limits_json())


async def reset(request: web.Request) -> web.Response:
    _account(request).reset_state()
    imports_of(_account(request)).reset()
    reports_of(_account(request)).reset()
    return json_response({"reset": True})
