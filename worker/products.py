"""Product details for order-line events, cached in Redis so a sale costs one product request.

- `Keys.product(shop, id)` holds the `ProductInfo` JSON (handle, image, type, vendor, and the
  product's `updated_at`) for `PRODUCT_TTL_S`; a product Shopify does not have (404) is
  remembered as missing for `MISSING_TTL_S`.
- `products/update` webhooks store the product they carry (`store_product`); a write never
  replaces a newer `updated_at` with an older one (webhooks arrive out of order, and a fetch
  may race a webhook).
- Misses are fetched together, 250 per request (`products.json?ids=`), so even an order of
  hundreds of new products costs a request or two; `products/{id}.json` is not needed.
- Misses do not stampede: one fetch per product at a time per process (single flight), and
  across processes a short Redis lock per product (`<product key>:lock`): the others poll the
  cache for up to `WAIT_FOR_FETCH_S` and only then fetch themselves.
- A failure to read a product other than "try again later" (say the app lost `read_products`)
  leaves the lines without product details rather than holding the purchase back.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
import structlog

from core.redis_conn import typed
from mappings.installation import Shop
from mappings.orders import ProductInfo, product_info
from mappings.payload_values import parse_time
from mappings.snapshot import iso_utc
from worker.context import WorkerContext
from worker.errors import ApiError, is_transient

log = structlog.get_logger("worker.products")

PRODUCT_TTL_S = 24 * 3600
MISSING_TTL_S = 3600
LOCK_TTL_MS = 15_000
WAIT_FOR_FETCH_S = 5.0
_POLL_S = 0.05
# What order lines need of a product (`image` is the main image).
PRODUCT_FIELDS = ("id", "handle", "image", "product_type", "vendor", "updated_at")

# KEYS[1] product key. ARGV: JSON value, its updated_at ('' when unknown), ttl (s).
# Keeps the stored value when it is newer than the one offered.
_STORE_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current and ARGV[2] ~= '' then
  local ok, old = pcall(cjson.decode, current)
  if ok and type(old) == 'table' and type(old.updated_at) == 'string' and old.updated_at > ARGV[2] then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'EX', tonumber(ARGV[3]))
return 1
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def encode(info: ProductInfo, updated_at: str | None) -> bytes:
    return orjson.dumps(
        {
            "id": info.id,
            "handle": info.handle,
            "image_url": info.image_url,
            "product_type": info.product_type,
            "vendor": info.vendor,
            "updated_at": updated_at,
        }
    )


def decode(raw: bytes | str) -> ProductInfo | None:
    """The cached product, or None for a product remembered as missing."""
    data = orjson.loads(raw)
    if data.get("missing"):
        return None
    return ProductInfo(
        id=int(data["id"]),
        handle=data.get("handle"),
        image_url=data.get("image_url"),
        product_type=data.get("product_type"),
        vendor=data.get("vendor"),
    )


def _updated_at(product: Mapping[str, Any]) -> str | None:
    try:
        when = parse_time(product.get("updated_at"), "updated_at")
    except ValueError:
        return None
    return iso_utc(when) if when else None


class ProductCache:
    """One per worker process and shop (see `products_of`)."""

    def __init__(self, app: WorkerContext, shop: Shop) -> None:
        self.app = app
        self.shop = shop
        self._store = app.redis.register_script(_STORE_IF_NEWER)
        self._release = app.redis.register_script(_RELEASE)
        self._inflight: dict[int, asyncio.Task[dict[int, ProductInfo | None]]] = {}

    async def close(self) -> None:  # WorkerContext.close() closes everything in `clients`
        for task in set(self._inflight.values()):
            task.cancel()

    def _key(self, product_id: int) -> str:
        return self.app.keys.product(self.shop.domain, product_id)

    async def store_product(self, product: Mapping[str, Any]) -> bool:
        """Cache a product resource (webhook body or API answer); False if a newer one is cached."""
        info = product_info(product)
        updated = _updated_at(product)
        stored = await self._store(
            keys=[self._key(info.id)], args=[encode(info, updated), updated or "", PRODUCT_TTL_S]
        )
        return bool(stored)

    async def get_many(self, product_ids: Iterable[int]) -> dict[int, ProductInfo]:
        """The products known to Shopify among `product_ids` (the rest are left out)."""
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return {}
        raw = await typed(self.app.redis.mget([self._key(pid) for pid in ids]))
        found: dict[int, ProductInfo] = {}
        misses: list[int] = []
        for pid, value in zip(ids, raw, strict=True):
            if value is None:
                misses.append(pid)
            elif (info := decode(value)) is not None:
                found[pid] = info
        self.app.metrics.inc("shopsync_product_cache_total", {"result": "hit"}, len(ids) - len(misses))
        if not misses:
            return found
        self.app.metrics.inc("shopsync_product_cache_total", {"result": "miss"}, len(misses))
        # Single flight: ids already being loaded by this process wait for that load.
        mine = [pid for pid in misses if pid not in self._inflight]
        if mine:
            task = asyncio.ensure_future(self._load(mine))
            for pid in mine:
                self._inflight[pid] = task
            task.add_done_callback(lambda t: self._loaded(t, mine))
        tasks = {id(t): t for t in (self._inflight[pid] for pid in misses if pid in self._inflight)}
        for loaded in await asyncio.gather(*(asyncio.shield(t) for t in tasks.values())):
            found.update({pid: info for pid, info in loaded.items() if pid in misses and info is not None})
        return found

    def _loaded(self, task: asyncio.Task[dict[int, ProductInfo | None]], ids: list[int]) -> None:
        for pid in ids:
            if self._inflight.get(pid) is task:
                del self._inflight[pid]
        if not task.cancelled():
            task.exception()  # retrieved here; the awaiting callers raise it

    async def _load(self, ids: list[int]) -> dict[int, ProductInfo | None]:
        """Fetch `ids` in as few requests as possible; across processes, an id another process
        is fetching (its lock is held) is read from the cache once that process stored it."""
        token = os.urandom(8).hex()
        async with self.app.redis.pipeline(transaction=False) as pipe:
            for pid in ids:
                pipe.set(f"{self._key(pid)}:lock", token, nx=True, px=LOCK_TTL_MS)
            locked = await pipe.execute()
        mine = [pid for pid, ok in zip(ids, locked, strict=True) if ok]
        others = [pid for pid, ok in zip(ids, locked, strict=True) if not ok]
        result: dict[int, ProductInfo | None] = {}
        try:
            if mine:
                result.update(await self._fetch(mine))
        finally:
            for pid in mine:
                await self._release(keys=[f"{self._key(pid)}:lock"], args=[token])
        if others:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + WAIT_FOR_FETCH_S
            while others and loop.time() < deadline:
                await asyncio.sleep(_POLL_S)
                raw = await typed(self.app.redis.mget([self._key(pid) for pid in others]))
                for pid, value in zip(list(others), raw, strict=True):
                    if value is not None:
                        result[pid] = decode(value)
                        others.remove(pid)
            if others:  # the other process is taking too long: fetch them ourselves
                result.update(await self._fetch(others))
        return result

    async def _fetch(self, ids: list[int]) -> dict[int, ProductInfo | None]:
        try:
            products = await self.app.shopify(self.shop).get_products(ids, fields=PRODUCT_FIELDS)
        except ApiError as exc:
            if is_transient(exc):
                raise
            log.warning("product_fetch_failed", product_ids=ids[:10], error=str(exc))
            return {}  # not cached: the next order tries again
        result: dict[int, ProductInfo | None] = dict.fromkeys(ids)
        for product in products:
            await self.store_product(product)
            result[product_info(product).id] = product_info(product)
        missing = [pid for pid, info in result.items() if info is None]
        if missing:
            async with self.app.redis.pipeline(transaction=False) as pipe:
                for pid in missing:
                    pipe.set(self._key(pid), orjson.dumps({"id": pid, "missing": True}), ex=MISSING_TTL_S)
                await pipe.execute()
        return result


def products_of(app: WorkerContext, shop: Shop) -> ProductCache:
    """The process's product cache of a shop (kept with the API clients, closed with them)."""
    key = f"products:{shop.domain}"
    cache = app.clients.get(key)
    if not isinstance(cache, ProductCache):
        cache = app.clients[key] = ProductCache(app, shop)
    return cache
