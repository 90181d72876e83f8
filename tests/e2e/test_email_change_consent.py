"""An email change folded into one apply after a consent change of the old address.

The reliability suite's apsis-errors loss (customer 7000000000214): a subscribed customer turned
`pending` (the old address's topics opted out) and changed email address a few seconds later;
one apply folded both `customers/update` deliveries. APSIS, asked what the old address had,
still answered with the topics being opted out in that same apply (not sent yet), and they were
carried to the new address. Writes planned in the apply and not yet sent must win over APSIS's
answer for their topics; topics the apply did not touch still come from APSIS.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from core.keys import Keys
from mappings.installation import CHANNELS
from sandbox.shopify.models import Customer
from sandbox.shopify.serialize import serialize_customer
from tests.e2e.harness import SECTION_MAIN, Pipeline, pipeline, wait_until_time_moves
from worker import sync
from worker.runtime import TransientError
from worker.sync_update import Update
from worker.sync_writes import send_writes

EMAIL = CHANNELS["email"]
NEWSLETTER = "com.apsis1.consent-lists.newsletter"
NEWS, OFFERS = "com.apsis1.topics.news", "com.apsis1.topics.offers"
EXTRA = "com.apsis1.topics.events"  # on the newsletter list, not mapped by demo.toml
OLD, NEW = "old.address@example.com", "new.address@example.org"


def _opted_in(p: Pipeline, address: str) -> list[str]:
    return sorted(p.account.opted_in_topics(EMAIL, address, SECTION_MAIN, NEWSLETTER))


def _hook(p: Pipeline, customer: Customer) -> Update:
    now = time.time()
    return Update(
        kind="topic",
        topic="customers/update",
        payload=serialize_customer(customer, p.shop.api_version, for_webhook=True),
        received_at=now,
        triggered_at=now,
    )


async def _deposit(p: Pipeline, update_id: str, update: Update) -> None:
    await p.app.customers.deposit(p.shop.domain, update.payload["id"], update_id, update.to_dict())


async def _synced_subscriber(p: Pipeline) -> Customer:
    customer = await p.store.create_customer(email=OLD, email_state="subscribed")
    assert await sync.submit(p.app, p.shop, "wh:first", _hook(p, customer)) == "written"
    assert _opted_in(p, OLD) == [NEWS, OFFERS]
    return customer


def _form_opt_in(p: Pipeline, address: str, topic: str) -> None:
    """Consent given outside Shopify (a form in APSIS itself)."""
    body = {
        "section_discriminator": SECTION_MAIN,
        "consent_list_discriminator": NEWSLETTER,
        "topic_discriminator": topic,
        "type": "opt-in",
    }
    p.account.add_consent(EMAIL, address, body)


async def test_an_opt_out_folded_before_an_email_change_is_not_carried(redis_url: str, keys: Keys) -> None:
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await _synced_subscriber(p)
        _form_opt_in(p, OLD, EXTRA)  # untouched by Shopify: it still moves
        wait_until_time_moves()
        pending = await p.store.set_email_consent(customer.id, "pending")
        await _deposit(p, "wh:pending", _hook(p, pending))
        wait_until_time_moves()
        moved = await p.store.change_email(customer.id, NEW)
        await _deposit(p, "wh:moved", _hook(p, moved))

        applied = await sync.apply_pending(p.app, p.shop, customer.id)

        assert applied is not None and set(applied.outcomes) == {"wh:pending", "wh:moved"}
        assert _opted_in(p, OLD) == []
        # Only the form's topic moved (the oracle knows nothing of it, so no `mismatches` here).
        assert _opted_in(p, NEW) == [EXTRA]


async def test_a_staged_opt_out_never_sent_wins_over_apsis(
    redis_url: str, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The opt-outs come from an earlier apply cut off before it sent them (staged, not saved):
    the retry's re-plan of the same update writes nothing more, only the staged writes say so."""
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await _synced_subscriber(p)
        wait_until_time_moves()
        pending = await p.store.set_email_consent(customer.id, "pending")
        real_send = send_writes

        async def send_fails(*args: Any, **kwargs: Any) -> int:
            raise TransientError("APSIS unreachable")

        monkeypatch.setattr(sync, "send_writes", send_fails)
        with pytest.raises(TransientError):
            await sync.submit(p.app, p.shop, "wh:pending", _hook(p, pending))
        monkeypatch.setattr(sync, "send_writes", real_send)
        assert (await p.app.customers.load(p.shop.domain, customer.id)).staged is not None
        assert _opted_in(p, OLD) == [NEWS, OFFERS], "the opt-outs were never sent"

        wait_until_time_moves()
        moved = await p.store.change_email(customer.id, NEW)
        await _deposit(p, "wh:moved", _hook(p, moved))
        applied = await sync.apply_pending(p.app, p.shop, customer.id)

        assert applied is not None and set(applied.outcomes) == {"wh:pending", "wh:moved"}
        assert _opted_in(p, OLD) == []
        assert _opted_in(p, NEW) == []
        assert p.mismatches([customer.id]) == []


async def test_an_opt_out_sent_earlier_does_not_override_a_later_form_opt_in(
    redis_url: str, keys: Keys
) -> None:
    """The saved state's opt-out was sent long ago; the person opted in again through APSIS."""
    async with pipeline(redis_url, keys, customers=2, workers=()) as p:
        customer = await _synced_subscriber(p)
        wait_until_time_moves()
        pending = await p.store.set_email_consent(customer.id, "pending")
        assert await sync.submit(p.app, p.shop, "wh:pending", _hook(p, pending)) == "written"
        assert _opted_in(p, OLD) == []
        _form_opt_in(p, OLD, NEWS)
        wait_until_time_moves()
        moved = await p.store.change_email(customer.id, NEW)

        assert await sync.submit(p.app, p.shop, "wh:moved", _hook(p, moved)) == "written"

        assert _opted_in(p, OLD) == []
        assert _opted_in(p, NEW) == [NEWS]
