"""What the per-customer sync asks APSIS about consent (Consent 2.0), around the pure plan.

- `address_attributes`: per section, the version ids of `com.apsis1.attributes.email` and
  `.mobile`, the attributes Email and SMS send to; a section that maps consent on a channel writes
  that attribute. Read from APSIS's definitions, kept in Redis for an hour and in the process for a
  minute (a definition change takes effect within the hour; `check` reports a missing one).
- `guard_consents`: before an apply sends opt-ins, or when it changes an address, one read of the
  profile's consents per section concerned (`GET /v2/.../consents`). Opt-ins APSIS already has
  are not sent, and an APSIS opt-out newer than Shopify's consent (an unsubscribe link) is kept
  (`mappings.consent.guard_opt_ins`); the state records what APSIS holds. An opt-out we wrote
  ourselves never holds an opt-in back: our `source`, or a profile import's opt-out named by the
  customer's marks (`mappings.consent.written_by_us`). The same read reports
  suppressed addresses: kept per shop in Redis for `status` and `/metrics`, logged masked, and
  never "fixed": an opt-in cannot lift a suppression, and we do not try.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence

import orjson
import structlog

from core.redis_conn import typed
from mappings.consent import ApsisConsent, guard_opt_ins, written_by_us
from mappings.installation import CHANNELS, Shop
from mappings.plan import AddressAttributes
from mappings.state import SyncState
from mappings.writes import OPT_IN, ConsentKey, ConsentWrite, Write
from worker.apsis_client import CONSENT_SOURCE
from worker.apsis_definitions import address_versions
from worker.context import WorkerContext

log = structlog.get_logger("worker.sync")

CACHE_TTL_S = 3600
LOCAL_TTL_S = 60.0
_local: dict[str, tuple[float, AddressAttributes]] = {}


async def address_attributes(app: WorkerContext, shop: Shop) -> AddressAttributes:
    """Per section with a consent mapping: `{"email" | "sms": version id}` from APSIS."""
    key = app.keys.address_attributes(shop.domain)
    cached = _local.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    raw = await app.redis.get(key)
    if raw is not None:
        found: AddressAttributes = orjson.loads(raw)
    else:
        apsis = app.apsis(shop)
        found = {
            section.discriminator: address_versions(await apsis.attribute_versions(section.discriminator))
            for section in shop.sections
            if section.consents
        }
        await app.redis.set(key, orjson.dumps(found), ex=CACHE_TTL_S)
    _local[key] = (time.monotonic() + LOCAL_TTL_S, found)
    return found


async def guard_consents(
    app: WorkerContext,
    shop: Shop,
    customer_id: int,
    writes: Sequence[Write],
    state: SyncState | None,
    address_changed: bool,
    marks: Mapping[str, float] | None = None,
) -> tuple[list[Write], SyncState | None]:
    """The writes to send and the state to save, after asking APSIS (see the module docstring)."""
    opt_in_sections = {w.section for w in writes if isinstance(w, ConsentWrite) and w.type == OPT_IN}
    if state is None or not (opt_in_sections or address_changed):
        return list(writes), state
    sections = opt_in_sections or {s.discriminator for s in shop.sections if s.consents} & set(state.sections)
    if not sections:
        return list(writes), state
    apsis = app.apsis(shop)
    profile_key = str(customer_id)
    addresses = [a for a in (state.email, state.phone) if a]
    known: dict[ConsentKey, ApsisConsent] = {}
    suppressed: set[str] = set()
    for section in sorted(sections):
        answer = await apsis.read_consents(
            shop.apsis.keyspace, profile_key, section, suppression_addresses=addresses
        )
        suppressed |= answer.suppressed
        for (channel, topic), (kind, modified_at, source) in answer.consents.items():
            key = ConsentKey(section, channel, topic)
            ours = written_by_us(key, kind, modified_at, source == CONSENT_SOURCE, marks or {})
            known[key] = ApsisConsent(kind, modified_at, ours)
    await _record_suppression(app, shop, customer_id, state, suppressed)
    times = {
        CHANNELS["email"]: state.times.get("email_consent"),
        CHANNELS["sms"]: state.times.get("sms_consent"),
    }
    guarded = guard_opt_ins(tuple(writes), known, times)
    for key, kind in guarded.kept_in_apsis.items():
        if kind != OPT_IN:
            log.info(
                "consent_opt_in_kept_out",
                customer_id=customer_id,
                consent_topic=key.topic,
                reason="an opt-out in APSIS is newer than the consent in Shopify",
            )
    if guarded.kept_in_apsis:
        state = dataclasses.replace(state, consents={**state.consents, **guarded.kept_in_apsis})
    return list(guarded.writes), state


async def _record_suppression(
    app: WorkerContext, shop: Shop, customer_id: int, state: SyncState, suppressed: set[str]
) -> None:
    key = app.keys.suppressed(shop.domain)
    channels = sorted(
        channel
        for channel, address in (("email", state.email), ("sms", state.phone))
        if address and address in suppressed
    )
    if not channels:
        await typed(app.redis.hdel(key, str(customer_id)))
        return
    await typed(
        app.redis.hset(
            key, str(customer_id), orjson.dumps({"channels": channels, "at": time.time()}).decode()
        )
    )
    app.metrics.inc("shopsync_suppressed_seen_total", {"shop": shop.domain})
    log.warning("address_suppressed", customer_id=customer_id, channels=channels)
