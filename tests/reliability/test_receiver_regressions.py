"""Receiver bugs the reliability suite's fuzzing found, pinned as plain tests."""

from __future__ import annotations

import redis.asyncio as aioredis

from core.keys import Keys
from mappings.installation import Installations
from tests.receiver.helpers import body_of, headers, running_receiver


async def test_body_that_does_not_decode_with_its_content_encoding_is_a_400(
    demo_installations: Installations, redis: aioredis.Redis, keys: Keys
) -> None:
    # Found by the fuzz scenario: a signed body sent with `Content-Encoding: gzip` that is not
    # gzip made aiohttp raise while reading it, and the receiver answered 500.
    body = body_of({"id": 7000000000001})
    sent = {**headers(body), "Content-Encoding": "gzip"}
    async with running_receiver(demo_installations, redis, keys) as (server, http):
        async with http.post(server.make_url("/webhooks/shopify"), data=body, headers=sent) as response:
            assert response.status == 400
            assert "Content-Encoding" in (await response.json())["detail"]
    assert await redis.zcard(keys.realtime_queue) == 0
