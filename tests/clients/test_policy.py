"""Pure parts: error typing from problem JSON, the retry policy, body splitting."""

from __future__ import annotations

import itertools
import random

import orjson
import pytest

from worker.errors import (
    ApiError,
    AuthError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentApiError,
    RateLimitedError,
    TransientApiError,
    error_from_response,
    is_transient,
    parse_retry_after,
)
from worker.payloads import TooLargeError, batch_items, split_merge_patch
from worker.retry import RetryPolicy, call_with_retries


def problem(status: int, detail: str = "d") -> bytes:
    return orjson.dumps({"title": "T", "status": status, "detail": detail})


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, PermanentApiError),
        (401, AuthError),
        (403, AuthError),
        (404, NotFoundError),
        (409, PermanentApiError),
        (413, PayloadTooLargeError),
        (415, PermanentApiError),
        (408, TransientApiError),
        (429, RateLimitedError),
        (500, TransientApiError),
        (501, TransientApiError),
        (503, TransientApiError),
    ],
)
def test_statuses_map_to_types(status: int, cls: type[ApiError]) -> None:
    error = error_from_response("apsis", status, problem(status, "why"))
    assert type(error) is cls
    assert (error.title, error.detail) == ("T", "why")
    assert is_transient(error) == (status in (408, 429, 500, 501, 503))


def test_other_bodies() -> None:
    shopify = error_from_response("shopify", 422, b'{"errors": {"email": ["is invalid", "is taken"]}}')
    assert shopify.detail == "email: is invalid, is taken"
    assert error_from_response("shopify", 404, b'{"errors": "Not Found"}').detail == "Not Found"
    assert error_from_response("apsis", 502, b"<html>bad gateway</html>").detail == "<html>bad gateway</html>"
    assert error_from_response("apsis", 500, b"").detail == ""


def test_error_text_never_shows_an_address() -> None:
    error = error_from_response("apsis", 400, problem(400, "address jane.doe@example.com is invalid"))
    assert "jane.doe@example.com" not in str(error)
    assert error.detail == "address jane.doe@example.com is invalid"  # the raw detail is kept


def test_parse_retry_after() -> None:
    assert parse_retry_after("2") == 2
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None
    assert parse_retry_after("-1") is None


def test_full_jitter_stays_under_the_exponential_cap() -> None:
    policy = RetryPolicy(base_delay_s=0.5, max_delay_s=4)
    rng = random.Random(1)
    for attempt, cap in [(0, 0.5), (1, 1), (2, 2), (3, 4), (8, 4)]:
        samples = [policy.backoff(attempt, rng) for _ in range(200)]
        assert all(0 <= s <= cap for s in samples)
        assert max(samples) > cap * 0.8  # full range, not a fixed delay


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


async def test_retry_honours_retry_after_then_succeeds() -> None:
    clock = _Clock()
    outcomes: list[Exception | str] = [RateLimitedError("apsis", 429, retry_after=3), "ok"]

    async def call() -> str:
        outcome = outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    policy = RetryPolicy(max_attempts=3, base_delay_s=0.1, budget_s=10)
    assert await call_with_retries(call, policy, sleep=clock.sleep, clock=clock) == "ok"
    assert len(clock.sleeps) == 1 and 3 <= clock.sleeps[0] <= 3.1


async def test_retry_stops_at_max_attempts_and_surfaces_the_error() -> None:
    clock = _Clock()
    tries = 0

    async def call() -> None:
        nonlocal tries
        tries += 1
        raise TransientApiError("shopify", 503)

    with pytest.raises(TransientApiError):
        await call_with_retries(call, RetryPolicy(max_attempts=4), sleep=clock.sleep, clock=clock)
    assert tries == 4


async def test_retry_stops_when_the_budget_would_be_exceeded() -> None:
    clock = _Clock()
    tries = 0

    async def call() -> None:
        nonlocal tries
        tries += 1
        raise RateLimitedError("apsis", 429, retry_after=20)

    with pytest.raises(RateLimitedError):
        await call_with_retries(
            call, RetryPolicy(max_attempts=10, budget_s=30), sleep=clock.sleep, clock=clock
        )
    assert tries == 2  # one wait of 20 s fits in 30 s, a second does not


async def test_permanent_errors_are_not_retried() -> None:
    tries = 0

    async def call() -> None:
        nonlocal tries
        tries += 1
        raise PermanentApiError("apsis", 400)

    with pytest.raises(PermanentApiError):
        await call_with_retries(call, RetryPolicy(max_attempts=5))
    assert tries == 1


def test_split_merge_patch_fills_parts_exactly_to_the_limit() -> None:
    body = {f"k{i}": "v" * 10 for i in range(20)}
    parts = split_merge_patch(body, limit=100)
    assert all(len(orjson.dumps(p)) <= 100 for p in parts)
    assert {k: v for p in parts for k, v in p.items()} == body
    # greedy: every part but the last is too full to take the next member
    for part, following in itertools.pairwise(parts):
        key = next(iter(following))
        assert len(orjson.dumps({**part, key: following[key]})) > 100
    assert split_merge_patch({}) == [{}]
    with pytest.raises(TooLargeError):
        split_merge_patch({"k": "v" * 200}, limit=100)


def test_batch_items_respects_the_limit_and_order() -> None:
    items = [{"n": i, "pad": "x" * (i % 7)} for i in range(100)]
    batches = batch_items(items, limit=200)
    assert all(len(orjson.dumps({"items": b})) <= 200 for b in batches)
    assert [item for batch in batches for item in batch] == items
    assert batch_items([]) == []
    with pytest.raises(TooLargeError):
        batch_items([{"pad": "x" * 300}], limit=200)
