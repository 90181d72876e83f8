"""POST /oauth/token: credentials, lifetime, revocation, and the 10-per-minute limit."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp

from tests.sandbox_apsis.conftest import CREDENTIALS, Api, FakeClock

ROOT = Path(__file__).resolve().parents[2]


async def test_token_issued_as_json(api: Api) -> None:
    status, headers, body = await api.call("POST", "/oauth/token", json=CREDENTIALS, auth=False)
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 86400
    assert body["access_token"].count(".") == 2  # JWT-shaped
    assert body["access_token"] != api.token


async def test_token_issued_form_encoded(api: Api) -> None:
    form = "grant_type=client_credentials&client_id=sandbox-client&client_secret=sandbox-client-secret"
    status, _, body = await api.call(
        "POST",
        "/oauth/token",
        data=form.encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        auth=False,
    )
    assert status == 200
    assert body["token_type"] == "Bearer"


async def test_token_works_on_api_routes(api: Api) -> None:
    status, _, body = await api.call("GET", "/audience/keyspaces")
    assert status == 200
    assert body["items"]


async def test_wrong_credentials_get_401_problem(api: Api) -> None:
    wrong = {**CREDENTIALS, "client_secret": "nope"}
    status, headers, body = await api.call("POST", "/oauth/token", json=wrong, auth=False)
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    assert body["status"] == 401 and body["title"] and body["detail"]
    unknown = {**CREDENTIALS, "client_id": "someone-else"}
    assert (await api.call("POST", "/oauth/token", json=unknown, auth=False))[0] == 401


async def test_bad_token_requests_get_400(api: Api) -> None:
    status, _, body = await api.call(
        "POST", "/oauth/token", json={**CREDENTIALS, "grant_type": "password"}, auth=False
    )
    assert status == 400 and "grant_type" in body["detail"]
    status, _, _ = await api.call("POST", "/oauth/token", data=b"{not json", auth=False)
    assert status == 400


async def test_missing_or_unknown_token_gets_401(api: Api) -> None:
    status, headers, _body = await api.call("GET", "/audience/sections", auth=False)
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    assert "WWW-Authenticate" in headers
    status, _, _ = await api.call("GET", "/audience/sections", headers={"Authorization": "Bearer forged"})
    assert status == 401


async def test_token_expires_after_its_lifetime(api: Api, clock: FakeClock) -> None:
    api.account.token_lifetime = 1
    status, _, body = await api.call("POST", "/oauth/token", json=CREDENTIALS, auth=False)
    assert body["expires_in"] == 1
    api.token = body["access_token"]
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    clock.advance(1.0)
    status, _, problem = await api.call("GET", "/audience/sections")
    assert status == 401
    assert "expired" in problem["detail"]


async def test_revoked_tokens_stop_working(api: Api) -> None:
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    api.account.revoke_tokens()
    assert (await api.call("GET", "/audience/sections"))[0] == 401
    await api.login()
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    status, _, body = await api.call("POST", "/_sandbox/tokens/revoke", auth=False)
    assert status == 200 and body["revoked"] == 1
    assert (await api.call("GET", "/audience/sections"))[0] == 401


async def test_token_endpoint_limited_to_ten_per_minute(api: Api, clock: FakeClock) -> None:
    # The fixture's login took one of the ten.
    for _ in range(9):
        assert (await api.call("POST", "/oauth/token", json=CREDENTIALS, auth=False))[0] == 200
    status, headers, body = await api.call("POST", "/oauth/token", json=CREDENTIALS, auth=False)
    assert status == 429
    assert body["status"] == 429
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert api.account.rate_limited["token"] == 1
    # The other API routes are not affected.
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    clock.advance(60.0)
    assert (await api.call("POST", "/oauth/token", json=CREDENTIALS, auth=False))[0] == 200


async def test_the_sandbox_process_serves_the_client_id_it_is_given() -> None:
    # `python -m sandbox.apsis --client-id`: two accounts side by side (the fairness benchmark's
    # twin shop) need two API clients, or they would share one rate-limit bucket in Redis.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "sandbox.apsis",
        "--port",
        "0",
        "--print-url",
        "--client-id",
        "client-twin",
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        url = (await asyncio.wait_for(proc.stdout.readline(), timeout=60)).decode().strip()
        async with aiohttp.ClientSession() as session:
            for client_id, expected in (("client-twin", 200), (CREDENTIALS["client_id"], 401)):
                body = {**CREDENTIALS, "client_id": client_id}
                async with session.post(f"{url}/oauth/token", json=body) as resp:
                    assert resp.status == expected, (client_id, await resp.text())
    finally:
        proc.terminate()
        await proc.wait()
