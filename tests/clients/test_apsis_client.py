"""The APSIS One client against mocked HTTP (aioresponses) and the real Redis."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import aiohttp
import orjson
import pytest
from aioresponses import CallbackResult, aioresponses
from redis.asyncio import Redis

from core.keys import Keys
from mappings.installation import Limits
from tests.clients.conftest import REDIS_URL, calls, make_account
from worker.apsis_client import ApsisClient
from worker.apsis_consent import ConsentForbiddenError
from worker.apsis_definitions import current_version, current_versions
from worker.errors import (
    AuthError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
)
from worker.payloads import MAX_BODY_BYTES
from worker.ratelimit import Bucket, RateLimiter
from worker.retry import NO_RETRY, RetryPolicy

BASE = "http://apsis.test"
TOKEN_URL = f"{BASE}/oauth/token"
KS = "com.apsis1.integrations.keyspaces.test.shopify"
SECTION = "com.apsis1.sections.abc"
FAST_RETRY = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=0.05, budget_s=5)
PROBLEM = {"Content-Type": "application/problem+json"}


def profile_url(pk: str = "42", section: str = SECTION) -> str:
    return f"{BASE}/audience/keyspaces/{KS}/profiles/{pk}/sections/{section}/attributes"


def token_ok(http: aioresponses, token: str = "tok-1", expires_in: int = 86400, repeat: bool = False) -> None:
    http.post(
        TOKEN_URL,
        payload={"access_token": token, "expires_in": expires_in, "token_type": "Bearer"},
        repeat=repeat,
    )


def token_bucket(name: str = "apsis-token:test") -> Bucket:
    # The real bucket allows one request per 6.3 s; tests that refresh need a faster one.
    return Bucket(name, rate_per_s=100, burst=10)


@pytest.fixture
async def client(redis: Redis, keys: Keys, limiter: RateLimiter) -> AsyncIterator[ApsisClient]:
    async with ApsisClient(
        make_account(BASE), redis, limiter, keys, limits=Limits(), retry=NO_RETRY, token_bucket=token_bucket()
    ) as c:
        yield c


def auth_headers(http: aioresponses, method: str, url: str) -> list[str]:
    return [kw["headers"]["Authorization"] for _, kw in calls(http, method, url)]


# --- token ------------------------------------------------------------------------------------


async def test_token_is_fetched_with_client_credentials_and_used(
    http: aioresponses, client: ApsisClient
) -> None:
    token_ok(http)
    http.get(f"{BASE}/audience/sections", payload={"items": [{"discriminator": SECTION}]})
    assert await client.sections() == [{"discriminator": SECTION}]
    [(_, token_call)] = calls(http, "POST", TOKEN_URL)
    assert orjson.loads(token_call["data"]) == {
        "grant_type": "client_credentials",
        "client_id": "client-1",
        "client_secret": "s3cret",
    }
    assert auth_headers(http, "GET", f"{BASE}/audience/sections") == ["Bearer tok-1"]


async def test_token_is_shared_through_redis_by_two_clients(
    http: aioresponses, redis: Redis, keys: Keys
) -> None:
    token_ok(http)
    http.get(f"{BASE}/audience/keyspaces", payload={"items": []}, repeat=True)
    other_redis = Redis.from_url(REDIS_URL)
    try:
        first = ApsisClient(make_account(BASE), redis, RateLimiter(redis, keys), keys, retry=NO_RETRY)
        second = ApsisClient(
            make_account(BASE), other_redis, RateLimiter(other_redis, keys), keys, retry=NO_RETRY
        )
        async with first, second:
            await first.keyspaces()
            await second.keyspaces()
            await first.keyspaces()
    finally:
        await other_redis.aclose()
    assert len(calls(http, "POST", TOKEN_URL)) == 1
    assert auth_headers(http, "GET", f"{BASE}/audience/keyspaces") == ["Bearer tok-1"] * 3


async def test_token_is_refreshed_when_due(
    http: aioresponses, client: ApsisClient, redis: Redis, keys: Keys
) -> None:
    token_ok(http, "tok-1", expires_in=100)
    token_ok(http, "tok-2", expires_in=100)
    http.get(f"{BASE}/audience/keyspaces", payload={"items": []}, repeat=True)
    await client.keyspaces()
    ttl = await redis.pttl(keys.token("client-1"))
    assert 80_000 < ttl <= 90_000  # a little under the lifetime
    # 15 s left of 100: past 80% of the lifetime, so the next call refreshes. A fresh client
    # (no in-memory copy) sees it through Redis's clock.
    await redis.pexpire(keys.token("client-1"), 5_000)
    client.tokens._cached = None
    await client.keyspaces()
    await client.keyspaces()
    assert len(calls(http, "POST", TOKEN_URL)) == 2
    assert auth_headers(http, "GET", f"{BASE}/audience/keyspaces") == [
        "Bearer tok-1",
        "Bearer tok-2",
        "Bearer tok-2",
    ]


async def test_expired_token_is_fetched_again(
    http: aioresponses, client: ApsisClient, redis: Redis, keys: Keys
) -> None:
    token_ok(http, "tok-1")
    token_ok(http, "tok-2")
    http.get(f"{BASE}/audience/keyspaces", payload={"items": []}, repeat=True)
    await client.keyspaces()
    await redis.delete(keys.token("client-1"))  # the TTL ran out
    client.tokens._cached = None
    await client.keyspaces()
    assert auth_headers(http, "GET", f"{BASE}/audience/keyspaces") == ["Bearer tok-1", "Bearer tok-2"]


async def test_401_refreshes_the_token_once_and_retries(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http, "tok-1")
    token_ok(http, "tok-2")
    url = f"{BASE}/audience/keyspaces"
    http.get(url, status=401, payload={"title": "Unauthorized", "status": 401}, headers=PROBLEM)
    http.get(url, payload={"items": [{"discriminator": KS}]})
    assert await client.keyspaces() == [{"discriminator": KS}]
    assert auth_headers(http, "GET", url) == ["Bearer tok-1", "Bearer tok-2"]


async def test_403_after_a_fresh_token_is_an_auth_error(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http, "tok-1")
    token_ok(http, "tok-2")
    url = f"{BASE}/audience/keyspaces"
    http.get(url, status=403, payload={"title": "Forbidden", "detail": "no access"}, repeat=True)
    with pytest.raises(AuthError) as raised:
        await client.keyspaces()
    assert raised.value.detail == "no access"
    assert len(calls(http, "GET", url)) == 2
    assert len(calls(http, "POST", TOKEN_URL)) == 2


async def test_401_after_a_fresh_token_is_transient(http: aioresponses, client: ApsisClient) -> None:
    """Revoked again, or expired while the request waited for its slot: a later try, never a
    dropped write (bad credentials fail at the token endpoint, the test below)."""
    token_ok(http, "tok-1")
    token_ok(http, "tok-2")
    token_ok(http, "tok-3")
    url = f"{BASE}/audience/keyspaces"
    http.get(url, status=401, payload={"title": "Unauthorized", "status": 401}, headers=PROBLEM, repeat=True)
    client.retry = NO_RETRY
    with pytest.raises(TransientApiError) as raised:
        await client.keyspaces()
    assert raised.value.status == 401
    assert not isinstance(raised.value, AuthError)
    assert auth_headers(http, "GET", url) == ["Bearer tok-1", "Bearer tok-2"]


async def test_bad_credentials_are_an_auth_error(http: aioresponses, client: ApsisClient) -> None:
    http.post(TOKEN_URL, status=401, payload={"title": "Unauthorized", "detail": "invalid client"})
    with pytest.raises(AuthError, match="invalid client"):
        await client.keyspaces()


async def test_invalidate_only_deletes_the_same_token(
    http: aioresponses, client: ApsisClient, redis: Redis, keys: Keys
) -> None:
    token_ok(http, "tok-1")
    token = await client.tokens.get()
    await client.tokens.invalidate("some-older-token")
    assert await redis.exists(keys.token("client-1"))
    await client.tokens.invalidate(token)
    assert not await redis.exists(keys.token("client-1"))


async def test_token_is_not_logged_or_in_errors(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http, "tok-secret-123")
    http.get(f"{BASE}/audience/sections", status=400, payload={"title": "Bad", "detail": "nope"})
    with pytest.raises(PermanentApiError) as raised:
        await client.sections()
    assert "tok-secret-123" not in str(raised.value)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 404, 409, 413, 415, 422])
async def test_permanent_statuses_carry_the_problem_detail(
    http: aioresponses, client: ApsisClient, status: int
) -> None:
    token_ok(http)
    body = {"title": "Problem", "status": status, "detail": f"detail of {status}"}
    http.patch(profile_url(), status=status, payload=body, headers=PROBLEM)
    with pytest.raises(PermanentApiError) as raised:
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x"})
    error = raised.value
    assert (error.status, error.title, error.detail, error.api) == (
        status,
        "Problem",
        f"detail of {status}",
        "apsis",
    )
    assert (
        error.route == "/audience/keyspaces/{keyspace}/profiles/{profile_key}/sections/{section}/attributes"
    )
    assert isinstance(error, NotFoundError) == (status == 404)


@pytest.mark.parametrize("status", [408, 429, 500, 501, 502, 503, 504])
async def test_transient_statuses(http: aioresponses, client: ApsisClient, status: int) -> None:
    token_ok(http)
    http.patch(
        profile_url(), status=status, payload={"title": "Try later", "status": status}, headers=PROBLEM
    )
    with pytest.raises(TransientApiError) as raised:
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x"})
    assert raised.value.status == status


async def test_connection_error_is_transient(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.patch(profile_url(), exception=aiohttp.ClientConnectionError("refused"))
    with pytest.raises(TransientApiError) as raised:
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x"})
    assert raised.value.status is None


async def test_transient_errors_are_retried_within_the_budget(
    http: aioresponses, client: ApsisClient
) -> None:
    client.retry = FAST_RETRY
    token_ok(http)
    http.patch(profile_url(), status=503, payload={"title": "Unavailable"})
    http.patch(profile_url(), exception=aiohttp.ServerDisconnectedError())
    http.patch(profile_url(), status=204)
    assert await client.patch_attributes(KS, "42", SECTION, {"1001": "x"}) == 1
    assert len(calls(http, "PATCH", profile_url())) == 3


async def test_retries_give_up_after_max_attempts(http: aioresponses, client: ApsisClient) -> None:
    client.retry = FAST_RETRY
    token_ok(http)
    http.patch(profile_url(), status=500, payload={"title": "Oops"}, repeat=True)
    with pytest.raises(TransientApiError):
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x"})
    assert len(calls(http, "PATCH", profile_url())) == 3


async def test_429_carries_retry_after_and_holds_the_bucket(
    http: aioresponses, client: ApsisClient, limiter: RateLimiter
) -> None:
    token_ok(http)
    http.patch(profile_url(), status=429, payload={"title": "Too many"}, headers={"Retry-After": "3"})
    with pytest.raises(RateLimitedError) as raised:
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x"})
    assert raised.value.retry_after == 3
    state = await limiter.redis.get(limiter.keys.limiter(f"apsis-profile:client-1:{KS}:42"))
    assert state is not None  # the profile bucket is held: its next slot is ~3 s away
    with pytest.raises(Exception, match="rate limit"):
        await limiter.acquire_bucket(Bucket(f"apsis-profile:client-1:{KS}:42", 9.5, 1), max_wait_s=2)


async def test_429s_on_two_profiles_at_once_hold_the_account_not_a_profile(
    http: aioresponses, client: ApsisClient, limiter: RateLimiter
) -> None:
    # APSIS does not say which limit a 429 hit; two keys refused within a second are the account's.
    token_ok(http)
    for pk in ("41", "42"):
        http.patch(profile_url(pk), status=429, payload={"title": "Too many"}, headers={"Retry-After": "3"})
    with pytest.raises(RateLimitedError):
        await client.patch_attributes(KS, "41", SECTION, {"1001": "x"})
    account = client.account_bucket
    assert await limiter.acquire_bucket(account, max_wait_s=0.5) < 0.5  # one key: the account is free
    with pytest.raises(RateLimitedError):
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x"})
    with pytest.raises(Exception, match="rate limit"):
        await limiter.acquire_bucket(account, max_wait_s=2)  # held ~3 s
    profile_42 = await limiter.redis.get(limiter.keys.limiter(f"apsis-profile:client-1:{KS}:42"))
    assert profile_42 is not None  # its slot was taken for the request, but not held for 3 s
    assert await limiter.acquire_bucket(Bucket(f"apsis-profile:client-1:{KS}:42", 6, 4), max_wait_s=0.5) < 0.5


async def test_429_without_retry_after_defaults(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.get(f"{BASE}/audience/sections", status=429, payload={"title": "Too many"})
    with pytest.raises(RateLimitedError) as raised:
        await client.sections()
    assert raised.value.retry_after == 1.0


# --- payloads ---------------------------------------------------------------------------------


async def test_patch_over_100kb_is_split_into_several_patches(
    http: aioresponses, client: ApsisClient
) -> None:
    token_ok(http)
    http.patch(profile_url(), status=204, repeat=True)
    body = {str(1000 + i): "x" * 30_000 for i in range(5)}  # ~150 kB in all
    assert await client.patch_attributes(KS, "42", SECTION, body) == 2
    sent = [kw["data"] for _, kw in calls(http, "PATCH", profile_url())]
    assert all(len(data) <= MAX_BODY_BYTES for data in sent)
    merged: dict[str, Any] = {}
    for data in sent:
        merged.update(orjson.loads(data))
    assert merged == body
    [(_, kw)] = calls(http, "PATCH", profile_url())[:1]
    assert kw["headers"]["Content-Type"] == "application/merge-patch+json"


async def test_patch_with_one_value_over_100kb_is_permanent(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    with pytest.raises(PayloadTooLargeError):
        await client.patch_attributes(KS, "42", SECTION, {"1001": "x" * 100_001})
    assert calls(http, "PATCH") == []


async def test_events_are_batched_under_100kb_in_order(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    url = f"{BASE}/audience/keyspaces/{KS}/profiles/42/sections/{SECTION}/events"
    http.post(url, status=204, repeat=True)
    items = [
        {"event_time": "2024-01-01T00:00:00Z", "version_id": "2001", "data": {"n": i, "pad": "p" * 1000}}
        for i in range(250)
    ]
    assert await client.add_events(KS, "42", SECTION, items) == 3
    sent = [kw["data"] for _, kw in calls(http, "POST", url)]
    assert all(len(data) <= MAX_BODY_BYTES for data in sent)
    assert [item["data"]["n"] for data in sent for item in orjson.loads(data)["items"]] == list(range(250))


async def test_event_over_100kb_alone_is_permanent(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    item = {"event_time": "2024-01-01T00:00:00Z", "version_id": "2001", "data": {"pad": "p" * 100_000}}
    with pytest.raises(PayloadTooLargeError):
        await client.add_events(KS, "42", SECTION, [item])


# --- consents, profiles, definitions -----------------------------------------------------------


def consents_url(profile_key: str = "42") -> str:
    return f"{BASE}/v2/audience/keyspaces/{KS}/profiles/{profile_key}/sections/{SECTION}/consents"


async def test_consent_2_write_is_per_profile_channel_and_topic(
    http: aioresponses, client: ApsisClient
) -> None:
    token_ok(http)
    http.post(consents_url(), status=201)
    http.post(consents_url(), status=204)
    http.post(
        consents_url(), status=409, payload={"title": "Conflict", "status": 409, "detail": "transition"}
    )
    assert await client.write_consent(KS, "42", SECTION, "email", "topic", "opt-in", reason="r") == "created"
    assert await client.write_consent(KS, "42", SECTION, "sms", "topic", "opt-out", reason="r") == "updated"
    # 409: the consent already has that type: done, not an error
    assert await client.write_consent(KS, "42", SECTION, "sms", "topic", "opt-out", reason="r") == "unchanged"
    bodies = [orjson.loads(kw["data"]) for _, kw in calls(http, "POST", consents_url())]
    assert bodies[0] == {
        "topic_discriminator": "topic",
        "channel_discriminator": "com.apsis1.channels.email",
        "type": "opt-in",
        "reason": "r",
        "source": "Shopify",
    }
    assert bodies[1]["channel_discriminator"] == "com.apsis1.channels.sms"
    assert calls(http, "POST", f"{BASE}/audience/channels") == []  # no Consent 1.0 route


async def test_consent_write_refused_by_the_keyspace_is_permanent_without_a_new_token(
    http: aioresponses, client: ApsisClient
) -> None:
    token_ok(http)
    http.post(
        consents_url(), status=403, payload={"title": "Forbidden", "status": 403, "detail": "no consent"}
    )
    with pytest.raises(ConsentForbiddenError, match="manage_subscriptions"):
        await client.write_consent(KS, "42", SECTION, "email", "topic", "opt-in", reason="r")
    token_calls = calls(http, "POST", f"{BASE}/oauth/token")
    assert len(token_calls) == 1  # a new token cannot change a keyspace's permission


async def test_read_consents_and_suppression(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.get(
        re.compile(re.escape(consents_url()) + r"\?.*"),
        payload={
            "items": [
                {"topic_discriminator": "t1", "channel_discriminator": "com.apsis1.channels.email",
                 "type": "opt-in", "modified_at": "2025-01-02T03:04:05Z"},
                {"topic_discriminator": "t2", "channel_discriminator": "com.apsis1.channels.email",
                 "type": "opt-out", "modified_at": None},
            ],
            "suppressions": [{"address": "a@example.com", "channel_discriminator": "com.apsis1.channels.email"}],
        },
    )  # fmt: skip
    http.get(re.compile(re.escape(consents_url("43")) + r".*"), status=404, payload={"title": "Not found"})
    read = await client.read_consents(KS, "42", SECTION, suppression_addresses=["a@example.com", "+4670"])
    assert read.consents[("com.apsis1.channels.email", "t1")][0] == "opt-in"
    assert read.consents[("com.apsis1.channels.email", "t1")][1] == datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert read.consents[("com.apsis1.channels.email", "t2")] == ("opt-out", None, "")
    assert read.suppressed == frozenset({"a@example.com"})
    [(url, _)] = calls(http, "GET", consents_url())
    assert sorted(url.query.getall("suppression_addresses")) == ["+4670", "a@example.com"]
    empty = await client.read_consents(KS, "43", SECTION)
    assert empty.consents == {} and empty.suppressed == frozenset()


async def test_delete_profile_is_idempotent(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    url = f"{BASE}/audience/keyspaces/{KS}/profiles/42"
    http.delete(url, status=204)
    http.delete(url, status=404, payload={"title": "Not found"})
    assert await client.delete_profile(KS, "42") is True
    assert await client.delete_profile(KS, "42") is False


async def test_get_attributes(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    http.get(profile_url("42"), payload={"1001": "a@example.com"})
    http.get(profile_url("43"), status=404, payload={"title": "Not found"})
    assert await client.get_attributes(KS, "42", SECTION) == {"1001": "a@example.com"}
    assert await client.get_attributes(KS, "43", SECTION) is None


async def test_definitions_and_live_versions(http: aioresponses, client: ApsisClient) -> None:
    token_ok(http)
    attributes: list[dict[str, Any]] = [
        {
            "discriminator": "email",
            "versions": [{"id": "1", "deprecated_at": "2023-01-01"}, {"id": "7", "deprecated_at": None}],
        },
        {"discriminator": "gone", "versions": [{"id": "2", "deprecated_at": "2023-01-01"}]},
    ]
    http.get(f"{BASE}/audience/sections/{SECTION}/attributes", payload={"items": attributes})
    http.get(
        f"{BASE}/v2/audience/sections/{SECTION}/topics",
        payload={
            "items": [{"discriminator": "t", "folder_discriminator": "f", "channel_discriminator": None}]
        },
    )
    http.get(f"{BASE}/audience/sections/{SECTION}/events", payload={"items": []})
    assert await client.attribute_versions(SECTION) == {"email": "7"}
    assert current_version(attributes[1]) is None
    assert current_versions(attributes) == {"email": "7"}
    assert await client.topics(SECTION) == [
        {"discriminator": "t", "folder_discriminator": "f", "channel_discriminator": None}
    ]
    assert await client.events(SECTION) == []


async def test_due_token_is_still_used_while_the_token_endpoint_limit_says_wait(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    token_ok(http, "tok-1", expires_in=100)
    token_ok(http, "tok-2", expires_in=100)
    http.get(f"{BASE}/audience/keyspaces", payload={"items": []}, repeat=True)
    slow = Bucket("apsis-token:slow", rate_per_s=1 / 600, burst=1)  # one token per 10 minutes
    async with ApsisClient(
        make_account(BASE), redis, limiter, keys, retry=NO_RETRY, token_bucket=slow
    ) as client:
        await client.keyspaces()
        await redis.pexpire(keys.token("client-1"), 5_000)  # due for refresh, still valid
        client.tokens._cached = None
        await client.keyspaces()  # no error, no wait: the old token goes on
    assert len(calls(http, "POST", TOKEN_URL)) == 1
    assert auth_headers(http, "GET", f"{BASE}/audience/keyspaces") == ["Bearer tok-1", "Bearer tok-1"]


async def test_pool_concurrency_caps_open_requests(
    http: aioresponses, redis: Redis, keys: Keys, limiter: RateLimiter
) -> None:
    token_ok(http)
    active = peak = 0

    async def slow(url: Any, **kwargs: Any) -> CallbackResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.02)
        active -= 1
        return CallbackResult(status=204)

    http.patch(re.compile(rf"^{re.escape(BASE)}/audience/keyspaces/.*"), callback=slow, repeat=True)
    async with ApsisClient(
        make_account(BASE), redis, limiter, keys, retry=NO_RETRY, pool_concurrency=2
    ) as client:
        await asyncio.gather(*(client.patch_attributes(KS, str(i), SECTION, {"1": i}) for i in range(12)))
    assert peak == 2
