"""The APSIS One client: typed methods over one aiohttp session, shared limits, shared token.

Every request: a permit of this process's APSIS semaphore, a slot in the profile key's bucket
(profile routes, consents included) and then in the account's bucket, the account's shared token
(taken after the slots, so a wait in the limiter cannot outlive it), one HTTP request.
401/403 invalidates the token, fetches a fresh one and tries once more (not a 403 on a consent
route: that is the keyspace's `manage_subscriptions` refusing, and a new token cannot change it);
a 401 again is transient (bad credentials fail at the token endpoint, as `AuthError`). Transient failures are
retried inside the retry policy's budget, then raised as `TransientApiError`; the rest raise
`PermanentApiError` subclasses carrying APSIS's problem `detail`.

Consent is Consent 2.0 only: per profile, channel and topic under `/v2/.../consents`; topics from
`/v2/audience/sections/{s}/topics`. No Consent 1.0 route (per address, consent lists,
subscriptions) is called: APSIS blocks them on migrated accounts, and every new account is one.

Writes are idempotent: merge-patch and consent writes by nature (a consent already of that type is
409, taken as done), profile deletion treats 404 as done; events are not (APSIS keeps every POSTed event), so callers dedup them before calling.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal

import aiohttp
import orjson
from redis.asyncio import Redis

from core.keys import Keys
from core.logging import get_logger
from mappings.installation import ApsisAccount, Limits
from worker.apsis_consent import (
    CONSENT_OUTCOMES,
    ConsentOutcome,
    ProfileConsents,
    consent_forbidden,
    parse_profile_consents,
)
from worker.apsis_definitions import channel_discriminator, current_versions
from worker.apsis_refusals import RefusalAttribution
from worker.apsis_token import TokenCache
from worker.errors import (
    AuthError,
    LimiterTimeoutError,
    NotFoundError,
    PayloadTooLargeError,
    PermanentApiError,
    TransientApiError,
    error_from_response,
    parse_retry_after,
)
from worker.http import Answer, build_url, new_session, send
from worker.payloads import MAX_BODY_BYTES, TooLargeError, batch_items, split_merge_patch
from worker.ratelimit import (
    Bucket,
    RateLimiter,
    WaitTooLongError,
    apsis_account_bucket,
    apsis_profile_bucket,
    permit,
)
from worker.retry import RetryPolicy, call_with_retries

log = get_logger(__name__)

Json = dict[str, Any]
ConsentType = Literal["opt-in", "opt-out"]

# Route templates: the metrics label and, formatted with quoted parameters, the request path.
KEYSPACES = "/audience/keyspaces"
SECTIONS = "/audience/sections"
ATTRIBUTES = "/audience/sections/{section}/attributes"
TOPICS = "/v2/audience/sections/{section}/topics"
EVENTS = "/audience/sections/{section}/events"
PROFILE = "/audience/keyspaces/{keyspace}/profiles/{profile_key}"
PROFILE_ATTRIBUTES = PROFILE + "/sections/{section}/attributes"
PROFILE_EVENTS = PROFILE + "/sections/{section}/events"
PROFILE_CONSENTS = "/v2" + PROFILE + "/sections/{section}/consents"
CONSENT_SOURCE = "Shopify"  # shown in APSIS's consent log next to each consent we write

_RETRY_AFTER_429_S = 1.0  # when a 429 carries no Retry-After


class ApsisClient:
    def __init__(
        self,
        account: ApsisAccount,
        redis: Redis,
        limiter: RateLimiter,
        keys: Keys,
        session: aiohttp.ClientSession | None = None,
        limits: Limits | None = None,
        *,
        retry: RetryPolicy | None = None,
        max_wait_s: float | None = None,
        pool_concurrency: int | None = None,
        token_bucket: Bucket | None = None,
    ) -> None:
        self.account = account
        self.limits = limits or Limits()
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.max_wait_s = max_wait_s
        self.pool_concurrency = pool_concurrency  # optional cap over all processes (Redis leases)
        self._own_session = session is None
        self.session = session or new_session()
        self.tokens = TokenCache(
            account, redis, limiter, keys, self.session, self.limits, bucket=token_bucket
        )
        self.account_bucket = apsis_account_bucket(account, self.limits)
        self._refusals = RefusalAttribution()
        self._semaphore = limiter.concurrency(f"apsis:{account.client_id}", self.limits.apsis_concurrency)

    async def close(self) -> None:
        if self._own_session:
            await self.session.close()

    async def __aenter__(self) -> ApsisClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # --- definitions ------------------------------------------------------------------------

    async def keyspaces(self) -> list[Json]:
        return await self._items(KEYSPACES)

    async def sections(self) -> list[Json]:
        return await self._items(SECTIONS)

    async def attributes(self, section: str) -> list[Json]:
        return await self._items(ATTRIBUTES, section=section)

    async def topics(self, section: str) -> list[Json]:
        """The section's topics: `discriminator`, `name`, `folder_discriminator` and, for a
        channel-specific topic, `channel_discriminator`."""
        return await self._items(TOPICS, section=section)

    async def events(self, section: str) -> list[Json]:
        return await self._items(EVENTS, section=section)

    async def attribute_versions(self, section: str) -> dict[str, str]:
        """Attribute discriminator -> its live (non-deprecated) version id."""
        return current_versions(await self.attributes(section))

    # --- profiles ---------------------------------------------------------------------------

    async def patch_attributes(
        self, keyspace: str, profile_key: str, section: str, body: Mapping[str, Any]
    ) -> int:
        """Merge-patch the profile's attributes (creates the profile); returns the PATCH count.

        A body over 100 kB is sent as several PATCHes of independent members."""
        try:
            parts = split_merge_patch(body, MAX_BODY_BYTES)
        except TooLargeError as exc:
            raise PayloadTooLargeError(
                "apsis", None, "payload too large", str(exc), method="PATCH", route=PROFILE_ATTRIBUTES
            ) from None
        for part in parts:
            await self.request(
                "PATCH",
                PROFILE_ATTRIBUTES,
                body=orjson.dumps(part),
                content_type="application/merge-patch+json",
                profile=(keyspace, profile_key),
                params={"keyspace": keyspace, "profile_key": profile_key, "section": section},
            )
        return len(parts)

    async def get_attributes(self, keyspace: str, profile_key: str, section: str) -> Json | None:
        """The profile's attributes in `section`, or None when the profile does not exist."""
        answer = await self.request(
            "GET",
            PROFILE_ATTRIBUTES,
            profile=(keyspace, profile_key),
            missing_ok=True,
            params={"keyspace": keyspace, "profile_key": profile_key, "section": section},
        )
        if answer is None:
            return None
        data = answer.json()
        return data if isinstance(data, dict) else {}

    async def add_events(
        self, keyspace: str, profile_key: str, section: str, items: Sequence[Mapping[str, Any]]
    ) -> int:
        """POST events in as few bodies under 100 kB as possible; returns the POST count.

        Not idempotent: APSIS keeps every event it receives, so the caller dedups."""
        try:
            batches = batch_items(items, MAX_BODY_BYTES)
        except TooLargeError as exc:
            raise PayloadTooLargeError(
                "apsis", None, "payload too large", str(exc), method="POST", route=PROFILE_EVENTS
            ) from None
        for batch in batches:
            await self.request(
                "POST",
                PROFILE_EVENTS,
                body=orjson.dumps({"items": batch}),
                profile=(keyspace, profile_key),
                params={"keyspace": keyspace, "profile_key": profile_key, "section": section},
            )
        return len(batches)

    async def delete_profile(self, keyspace: str, profile_key: str) -> bool:
        """Delete the profile and its events; False if it was already gone (idempotent)."""
        answer = await self.request(
            "DELETE",
            PROFILE,
            profile=(keyspace, profile_key),
            missing_ok=True,
            params={"keyspace": keyspace, "profile_key": profile_key},
        )
        return answer is not None

    # --- consents ---------------------------------------------------------------------------

    async def write_consent(
        self,
        keyspace: str,
        profile_key: str,
        section: str,
        channel: str,
        topic: str,
        type: ConsentType,
        *,
        reason: str,
    ) -> ConsentOutcome:
        """Give the profile one consent (Consent 2.0). Idempotent: a consent already of that type
        answers 409 ("transition not supported"), which is taken as done and logged."""
        body = {
            "topic_discriminator": topic,
            "channel_discriminator": channel_discriminator(channel),
            "type": type,
            "reason": reason,
            "source": CONSENT_SOURCE,
        }
        try:
            answer = await self.request(
                "POST",
                PROFILE_CONSENTS,
                body=orjson.dumps(body),
                profile=(keyspace, profile_key),
                consent_route=True,
                params={"keyspace": keyspace, "profile_key": profile_key, "section": section},
            )
        except PermanentApiError as exc:
            if exc.status != 409:
                raise
            log.info("apsis_consent_already_set", section=section, topic=topic, type=type, detail=exc.detail)
            return "unchanged"
        assert answer is not None
        return CONSENT_OUTCOMES.get(answer.status, "updated")

    async def read_consents(
        self, keyspace: str, profile_key: str, section: str, *, suppression_addresses: Iterable[str] = ()
    ) -> ProfileConsents:
        """The profile's consents in the section (every type), and which of its addresses (and of
        `suppression_addresses`) are suppressed. A profile APSIS does not know has none."""
        query: list[tuple[str, str]] = [("suppression_addresses", a) for a in suppression_addresses if a]
        answer = await self.request(
            "GET",
            PROFILE_CONSENTS,
            profile=(keyspace, profile_key),
            missing_ok=True,
            consent_route=True,
            query=query,
            params={"keyspace": keyspace, "profile_key": profile_key, "section": section},
        )
        return parse_profile_consents(answer.json() if answer is not None else None)

    # --- plumbing: permits ----------------------------------------------------------------

    def request_permit(self, method: str, route: str) -> contextlib.AbstractAsyncContextManager[None]:
        return permit(
            self.limiter,
            self._semaphore,
            api="apsis",
            name=f"apsis:{self.account.client_id}",
            pool_size=self.pool_concurrency,
            max_wait_s=self.max_wait_s,
            method=method,
            route=route,
        )

    # --- plumbing: requests ---------------------------------------------------------------

    async def _items(self, route: str, **params: str) -> list[Json]:
        answer = await self.request("GET", route, params=params)
        assert answer is not None
        data = answer.json() or {}
        return list(data.get("items") or [])

    async def request(
        self,
        method: str,
        route: str,
        *,
        body: bytes | None = None,
        content_type: str = "application/json",
        profile: tuple[str, str] | None = None,
        missing_ok: bool = False,
        consent_route: bool = False,
        query: Sequence[tuple[str, str]] | None = None,
        params: Mapping[str, str] | None = None,
    ) -> Answer | None:
        """One call with retries; None for a 404 when `missing_ok` (public: imports and reports use it)."""
        url = build_url(self.account.base_url, route, None, **(params or {}))
        if query:
            url = url.with_query(query)
        buckets = [self.account_bucket]
        if profile is not None:
            # The profile key's bucket first: its slot may be far off, and an account slot
            # reserved now and used then would be wasted for everyone.
            buckets.insert(0, apsis_profile_bucket(self.account, self.limits, *profile))

        async def attempt() -> Answer | None:
            try:
                return await self._attempt(method, url, route, body, content_type, buckets, consent_route)
            except NotFoundError:
                if missing_ok:
                    return None
                raise

        return await call_with_retries(attempt, self.retry, api="apsis")

    async def _attempt(
        self,
        method: str,
        url: Any,
        route: str,
        body: bytes | None,
        content_type: str,
        buckets: list[Bucket],
        consent_route: bool = False,
    ) -> Answer:
        async with self.request_permit(method, route):
            answer, token = await self._send(method, url, route, body, content_type, buckets)
            if answer.status == 401 or (answer.status == 403 and not consent_route):
                # Maybe revoked or expired early: one fresh token, one more try.
                await self.tokens.invalidate(token)
                answer, token = await self._send(method, url, route, body, content_type, buckets)
                if answer.status == 401:
                    # A token minted moments ago refused: revoked again, or expired while the
                    # request waited. Bad credentials fail at the token endpoint instead, so this
                    # is worth a later try, never a dropped write.
                    await self.tokens.invalidate(token)
                    log.warning("apsis_token_refused", route=route)
                    raise TransientApiError(
                        "apsis", 401, "Unauthorized", "a fresh token was refused", method=method, route=route
                    )
        if answer.status < 400:
            return answer
        retry_after = parse_retry_after(answer.headers.get("Retry-After"))
        if answer.status == 429:
            retry_after = _RETRY_AFTER_429_S if retry_after is None else retry_after
            held = self._refusals.held(buckets[0], self.account_bucket, time.monotonic())
            await self.limiter.hold(held, retry_after)
            log.warning("apsis_rate_limited", route=route, bucket=held.kind, retry_after_s=retry_after)
        error = error_from_response(
            "apsis", answer.status, answer.body, retry_after=retry_after, method=method, route=route
        )
        if consent_route and answer.status == 403:
            error = consent_forbidden(error)
        elif isinstance(error, AuthError):
            log.error("apsis_auth_failed", status=answer.status, client_id=self.account.client_id)
        raise error

    async def _send(
        self,
        method: str,
        url: Any,
        route: str,
        body: bytes | None,
        content_type: str,
        buckets: list[Bucket],
    ) -> tuple[Answer, str]:
        """Slots in `buckets` first, then the token: a wait in the limiter cannot outlive it."""
        try:
            await self.limiter.acquire_all(buckets, max_wait_s=self.max_wait_s)
        except WaitTooLongError as exc:
            kind = exc.bucket.kind if exc.bucket is not None else "apsis"
            raise LimiterTimeoutError(
                "apsis", None, "rate limit", f"{kind} bucket busy", exc.wait_s, method=method, route=route
            ) from None
        token = await self.tokens.get()
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        return await send(self.session, "apsis", method, url, route, headers=headers, body=body), token
