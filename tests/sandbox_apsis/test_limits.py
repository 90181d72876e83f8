"""Rate limits: 100 requests/s per account, 10/s per profile key; 429 with Retry-After over them.

The clock is frozen, so "within one second" is exact and nothing depends on timing.
"""

from __future__ import annotations

import asyncio

import aiohttp

from sandbox.apsis import ApsisSandbox, default_account
from tests.sandbox_apsis.conftest import Api, FakeClock


async def test_account_limit(api: Api, clock: FakeClock) -> None:
    statuses = [(await api.call("GET", "/audience/sections"))[0] for _ in range(100)]
    assert statuses == [200] * 100  # none when under
    status, headers, body = await api.call("GET", "/audience/sections")
    assert status == 429
    assert headers["Content-Type"].startswith("application/problem+json")
    assert headers["Retry-After"] == "1"
    assert body["status"] == 429
    assert api.account.rate_limited["account"] == 1
    assert api.account.request_count(status=429) == 1
    clock.advance(1.0)
    assert (await api.call("GET", "/audience/sections"))[0] == 200


async def test_profile_limit(api: Api, clock: FakeClock) -> None:
    statuses = [(await api.patch_attributes("42", {"1008": n}))[0] for n in range(10)]
    assert statuses == [204] * 10
    status, headers, _ = await api.patch_attributes("42", {"1008": 10})
    assert status == 429 and headers["Retry-After"] == "1"
    # Refused writes change nothing; other profiles are not limited by this one.
    assert api.account.profile("com.apsis1.integrations.keyspaces.sandbox.shopify", "42").attributes  # type: ignore[union-attr]
    assert (await api.get_attributes("42"))[0] == 429
    assert (await api.patch_attributes("43", {"1008": 1}))[0] == 204
    assert api.account.rate_limited["profile"] == 2
    clock.advance(1.0)
    assert (await api.patch_attributes("42", {"1008": 11}))[0] == 204


async def test_sliding_window(api: Api, clock: FakeClock) -> None:
    for _ in range(5):
        assert (await api.patch_attributes("9", {"1008": 1}))[0] == 204
    clock.advance(0.5)
    for _ in range(5):
        assert (await api.patch_attributes("9", {"1008": 1}))[0] == 204
    assert (await api.patch_attributes("9", {"1008": 1}))[0] == 429
    clock.advance(0.5)  # the first five left the window
    for _ in range(5):
        assert (await api.patch_attributes("9", {"1008": 1}))[0] == 204
    assert (await api.patch_attributes("9", {"1008": 1}))[0] == 429


async def test_consents_count_in_the_profile_key_limit(api: Api) -> None:
    assert (await api.patch_attributes("c", {"1002": "C"}))[0] == 204
    statuses = [
        (await api.consent("c", "com.apsis1.topics.news", kind))[0] for kind in ["opt-in", "opt-out"] * 4
    ]
    statuses.append((await api.consents("c"))[0])
    assert statuses == [201] + [204] * 7 + [200]
    assert (await api.consent("c", "com.apsis1.topics.offers"))[0] == 429  # the 11th on key "c"
    assert (await api.patch_attributes("d", {"1002": "D"}))[0] == 204  # another key is free


async def test_limits_configurable_and_disabled(api: Api) -> None:
    api.account.set_rate_limits(account=None, profile=3)
    statuses = [(await api.patch_attributes("1", {"1008": n}))[0] for n in range(5)]
    assert statuses == [204, 204, 204, 429, 429]
    status, _, limits = await api.call(
        "PATCH", "/_sandbox/limits", json={"profile_per_second": None}, auth=False
    )
    assert status == 200 and limits["profile_per_second"] is None
    statuses = [(await api.patch_attributes("1", {"1008": n}))[0] for n in range(150)]
    assert set(statuses) == {204}


async def test_concurrent_burst_on_real_clock_is_counted_consistently() -> None:
    # Real clock, 150 at once: the first 100 always pass; how many more depends on how long the
    # burst takes on this machine, so only consistency is asserted, never timing.
    account = default_account()
    async with ApsisSandbox(account) as sandbox, aiohttp.ClientSession() as session:
        api = Api(session, sandbox)
        await api.login()
        statuses = await asyncio.gather(*(api.call("GET", "/audience/keyspaces") for _ in range(150)))
    codes = [s[0] for s in statuses]
    assert codes.count(200) >= 100
    assert set(codes) <= {200, 429}
    assert account.rate_limited["account"] == codes.count(429)
