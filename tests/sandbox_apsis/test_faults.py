"""Fault injection: error shares, writes behind errors, latency, outages, early token expiry."""

from __future__ import annotations

import time
from collections import Counter

import aiohttp
import pytest

from sandbox.apsis import KEYSPACE
from tests.sandbox_apsis.conftest import Api, FakeClock


@pytest.fixture(autouse=True)
def _no_limits(api: Api) -> None:
    api.account.disable_rate_limits()


async def test_error_shares_roughly_right(api: Api) -> None:
    api.account.faults.set_errors({500: 0.2, 503: 0.1, 408: 0.05, 429: 0.05}, seed=7)
    counts = Counter([(await api.call("GET", "/audience/sections"))[0] for _ in range(1000)])
    assert 130 <= counts[500] <= 270
    assert 50 <= counts[503] <= 150
    assert 15 <= counts[408] <= 90
    assert 15 <= counts[429] <= 90
    assert 450 <= counts[200] <= 750
    assert api.account.faults_injected["500"] == counts[500]
    assert api.account.request_count(route="/audience/sections", status=503) == counts[503]


async def test_injected_answers_are_problems_with_retry_after(api: Api) -> None:
    api.account.faults.set_errors({429: 1.0})
    status, headers, body = await api.call("GET", "/audience/sections")
    assert status == 429 and body["status"] == 429 and headers["Retry-After"] == "1"
    assert headers["Content-Type"].startswith("application/problem+json")
    # /_sandbox/ is never faulted.
    assert (await api.call("GET", "/_sandbox/faults", auth=False))[0] == 200


async def test_faults_before_write_change_nothing(api: Api) -> None:
    api.account.faults.set_errors({500: 1.0})
    assert (await api.patch_attributes("1", {"1001": "a@example.com"}))[0] == 500
    assert api.account.profile(KEYSPACE, "1") is None


async def test_faults_after_write_apply_the_write(api: Api) -> None:
    api.account.faults.set_errors({503: 1.0}, after_write=True)
    assert (await api.patch_attributes("1", {"1001": "a@example.com"}))[0] == 503
    profile = api.account.profile(KEYSPACE, "1")
    assert profile is not None and profile.attributes
    api.account.faults.clear()
    assert (await api.patch_attributes("1", {"1002": "x"}))[0] == 204


async def test_added_latency(api: Api) -> None:
    api.account.faults.set_latency(0.2)
    started = time.perf_counter()
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    assert time.perf_counter() - started >= 0.2
    api.account.faults.set_latency(0.05, 0.1)
    started = time.perf_counter()
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    assert time.perf_counter() - started >= 0.05
    assert api.account.faults_injected["latency"] == 2


async def test_outage_503_for_a_period(api: Api, clock: FakeClock) -> None:
    api.account.faults.start_outage(clock(), 30)
    statuses = {(await api.call("GET", "/audience/sections"))[0] for _ in range(5)}
    statuses.add((await api.call("POST", "/oauth/token", json={}, auth=False))[0])
    assert statuses == {503}
    clock.advance(30)
    assert (await api.call("GET", "/audience/sections"))[0] == 200


async def test_outage_with_connection_resets(api: Api, clock: FakeClock) -> None:
    api.account.faults.start_outage(clock(), 10, mode="reset")
    with pytest.raises(aiohttp.ClientConnectionError):
        await api.call("GET", "/audience/sections")
    api.account.faults.end_outage()
    assert (await api.call("GET", "/audience/sections"))[0] == 200


async def test_faults_over_http(api: Api, clock: FakeClock) -> None:
    body = {"error_rates": {"500": 1.0}, "latency": 0, "seed": 1}
    status, _, faults = await api.call("PATCH", "/_sandbox/faults", json=body, auth=False)
    assert status == 200 and faults["error_rates"] == {"500": 1.0}
    assert (await api.call("GET", "/audience/sections"))[0] == 500
    status, _, faults = await api.call("DELETE", "/_sandbox/faults", auth=False)
    assert faults["error_rates"] == {}
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    status, _, faults = await api.call(
        "PATCH", "/_sandbox/faults", json={"outage": {"seconds": 5}}, auth=False
    )
    assert faults["outage"]["active"] is True
    assert (await api.call("GET", "/audience/sections"))[0] == 503
    clock.advance(5)
    assert (await api.call("GET", "/audience/sections"))[0] == 200
    status, _, _ = await api.call("PATCH", "/_sandbox/faults", json={"error_rates": {"418": 0.5}}, auth=False)
    assert status == 400


def test_fault_settings_are_validated() -> None:
    from sandbox.apsis import Faults

    faults = Faults()
    for rates in ({404: 0.1}, {500: 1.5}, {500: 0.6, 503: 0.6}):
        with pytest.raises(ValueError):
            faults.set_errors(rates)
    with pytest.raises(ValueError):
        faults.set_latency(0.2, 0.1)
    with pytest.raises(ValueError):
        faults.start_outage(0.0, 1.0, mode="fire")
