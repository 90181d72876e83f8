"""The once-only ledger of an order's events in Redis: the hash `Keys.order_sent(shop, order,
"purchase")` with a `sending` / `sent` / `unknown` mark per section and item, claimed and
collapsed atomically by Lua (`claim`, `finish`), checked before any work (`all_done`), kept
`SENT_TTL_S`; the per-order lock that lets one sender at a time work on an order
(`lock_order`, `unlock_order`); and forgetting a shop's marks and cached products
(`forget_shop_orders`, for `shop/redact`). The package docstring says why the marks are
shaped this way."""

from __future__ import annotations

import os
from collections.abc import Sequence

from core.redis_conn import typed
from worker.context import WorkerContext

PURCHASE = "purchase"  # the event kind in Keys.order_sent: the order event with its line events
SENT_TTL_S = 400 * 24 * 3600
LOCK_TTL_MS = 120_000

SENDING, SENT, UNKNOWN = "sending", "sent", "unknown"
CLAIMED, WAS_SENT, NOW_UNKNOWN, WAS_UNKNOWN = 0, 1, 2, 3

# KEYS[1] the order's hash. ARGV: ttl, section, then the items' fields. Per item: 0 = claimed
# now (marked sending: send it), 1 = sent before, 2 = found `sending` from an attempt that did
# not finish (now marked unknown: report it, do not send), 3 = unknown already.
_CLAIM = """
local key, ttl, section = KEYS[1], tonumber(ARGV[1]), ARGV[2]
local out = {}
local done = redis.call('HEXISTS', key, section) == 1
for i = 3, #ARGV do
  if done then
    out[#out + 1] = 1
  else
    local v = redis.call('HGET', key, ARGV[i])
    if not v then
      redis.call('HSET', key, ARGV[i], 'sending')
      out[#out + 1] = 0
    elseif v == 'sent' then
      out[#out + 1] = 1
    elseif v == 'sending' then
      redis.call('HSET', key, ARGV[i], 'unknown')
      out[#out + 1] = 2
    else
      out[#out + 1] = 3
    end
  end
end
redis.call('EXPIRE', key, ttl)
return out
"""
# KEYS[1] the order's hash. ARGV: ttl, section, then the section's item fields. Collapses them
# into one `section` field once each is sent or unknown; returns the number unknown, or -1
# when some item is still open (a failed POST: the retry finishes the section).
_FINISH = """
local key, ttl, section = KEYS[1], tonumber(ARGV[1]), ARGV[2]
if redis.call('HEXISTS', key, section) == 1 then return 0 end
local unknown = 0
for i = 3, #ARGV do
  local v = redis.call('HGET', key, ARGV[i])
  if v == 'unknown' then unknown = unknown + 1
  elseif v ~= 'sent' then return -1 end
end
local summary = 'sent'
if unknown > 0 then summary = 'sent unknown=' .. unknown end
redis.call('HSET', key, section, summary)
if #ARGV > 2 then redis.call('HDEL', key, unpack(ARGV, 3)) end
redis.call('EXPIRE', key, ttl)
return unknown
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


async def claim(app: WorkerContext, key: str, section: str, fields: Sequence[str]) -> list[int]:
    """Mark the items' fields `sending` where unmarked; per field its status (`CLAIMED` ...)."""
    status = await app.script(_CLAIM)(keys=[key], args=[SENT_TTL_S, section, *fields])
    return [int(s) for s in status]


async def finish(app: WorkerContext, key: str, section: str, fields: Sequence[str]) -> None:
    """Collapse a section's item fields into its one summary field, once all are handled."""
    await app.script(_FINISH)(keys=[key], args=[SENT_TTL_S, section, *fields])


async def all_done(app: WorkerContext, key: str, sections: Sequence[str]) -> bool:
    """Is every one of `sections` sent (or settled as unknown)? Refreshes the marks' TTL if so."""
    if not sections:
        return False  # nothing to send: `plan_order` says so
    marks = await typed(app.redis.hmget(key, list(sections)))
    if all(mark is not None for mark in marks):
        await app.redis.expire(key, SENT_TTL_S)  # seen again: keep remembering it
        return True
    return False


async def lock_order(app: WorkerContext, key: str) -> str | None:
    """Take the order's lock (`<key>:lock`); its token, or None while another sender holds it."""
    token = os.urandom(8).hex()
    if not await app.redis.set(f"{key}:lock", token, nx=True, px=LOCK_TTL_MS):
        return None
    return token


async def unlock_order(app: WorkerContext, key: str, token: str) -> None:
    await app.script(_RELEASE)(keys=[f"{key}:lock"], args=[token])


async def forget_shop_orders(app: WorkerContext, domain: str) -> int:
    """Remove a shop's order marks and cached products (for `shop/redact`). Not for
    `app/uninstalled`: the APSIS profiles and their events stay, and a reinstall must not send
    the same orders again."""
    removed = 0
    for pattern in (app.keys.order_sent(domain, "*", "*"), app.keys.product(domain, "*")):
        async for key in app.redis.scan_iter(match=pattern, count=1000):
            removed += int(await app.redis.delete(key))
    return removed
