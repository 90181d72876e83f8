"""Typed keys of the objects the receiver's application holds."""

from __future__ import annotations

import redis.asyncio as aioredis
from aiohttp import web

from core.keys import Keys
from receiver.enqueue import BatchEnqueuer
from receiver.live import LiveInstallations
from receiver.metrics import ReceiverMetrics

INSTALLATIONS = web.AppKey("installations", LiveInstallations)  # replaced on a reload
ENQUEUER = web.AppKey("enqueuer", BatchEnqueuer)
METRICS = web.AppKey("metrics", ReceiverMetrics)
KEYS = web.AppKey("keys", Keys)
REDIS = web.AppKey("redis", aioredis.Redis)
ADMIN_TOKEN = web.AppKey("admin_token", str)
