"""Refused protected customer data is never planned as a customer without those fields: the read
raises `ProtectedDataError` (a dead letter naming the missing access), other failed reads stay owed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from tests.clients.conftest import make_shop
from worker.errors import TransientApiError
from worker.shopify_errors import ProtectedDataError
from worker.sync_fetch import fill_from_shopify
from worker.sync_writes import MergedWrites


def app_raising(exc: Exception) -> Any:
    async def get_customer(customer_id: int) -> dict[str, Any]:
        raise exc

    client = SimpleNamespace(get_customer=get_customer)
    return SimpleNamespace(shopify=lambda shop: client)


async def test_refused_protected_data_is_raised_not_planned() -> None:
    refused = ProtectedDataError(["defaultEmailAddress"], "not approved to access the Customer object")
    with pytest.raises(ProtectedDataError) as raised:
        await fill_from_shopify(app_raising(refused), make_shop(), 5, None, False, MergedWrites())
    assert raised.value.fields == ("defaultEmailAddress",)
    assert not isinstance(raised.value, TransientApiError)


async def test_other_failed_reads_stay_owed() -> None:
    failed = TransientApiError("shopify", 503, "unavailable")
    merged = MergedWrites()
    state, error = await fill_from_shopify(app_raising(failed), make_shop(), 5, None, False, merged)
    assert state is None and error is not None and "503" in error
    assert merged.writes() == []
