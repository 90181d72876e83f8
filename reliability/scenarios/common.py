"""The end of every scenario: settle, then compare APSIS with the store customer by customer,
count purchase events per order, and account for dead letters and failed deliveries."""

from __future__ import annotations

from reliability.report import Result
from reliability.stack import DOMAIN, Stack, orders_available

MAX_LISTED = 10


async def finish(s: Stack, result: Result, *, settle_s: float, all_customers: bool) -> None:
    try:
        await s.settle(settle_s)
    except TimeoutError:
        left = await s.queued_functions()
        result.fail(f"did not settle within {settle_s:.0f} s; still queued: {', '.join(left[:5])}")
    ids = s.all_ids() if all_customers else sorted(s.touched())
    checked, problems = s.check(ids)
    result.checked += checked
    result.lost += len({p.split(":", 1)[0] for p in problems})
    result.problems += problems[:MAX_LISTED]
    if orders_available():
        orders = s.check_orders()
        # Events the worker itself reported as uncertain (an ambiguous APSIS answer, e.g. a 500,
        # after which it does not resend: at most once rather than twice) are counted apart;
        # only events missing without that report count as lost.
        uncertain = [o for o in orders.lost_orders if await _flagged_uncertain(s, *o)]
        problems = [p for p in orders.problems if not any(p.startswith(f"order {o}:") for o, _ in uncertain)]
        result.lost += orders.lost - len(uncertain)
        result.duplicated += orders.duplicated
        result.problems += problems[:MAX_LISTED]
        result.figures["orders_checked"] = orders.checked
        if uncertain:
            result.figures["order_events_uncertain"] = len(uncertain)
            result.notes.append(
                f"{len(uncertain)} orders' events missing after ambiguous APSIS answers, each reported"
                " by the worker as uncertain (order_events_uncertain), by design not resent"
            )
    else:
        result.notes.append("purchase events not checked: the worker has no orders job yet")
    for sync_id in s.full_sync_ids:
        record = await s.full_sync_record(sync_id)
        result.figures[f"full_sync_{len(s.full_sync_ids)}"] = {
            k: record.get(k) for k in ("state", "total", "seen", "synced", "unchanged", "skipped", "failed")
        }
        result.expect(record.get("state") == "finished", f"full sync {sync_id} ended {record.get('state')}")
        result.expect(
            not record.get("failed"), f"full sync {sync_id}: {record.get('failed')} customers failed"
        )
    failed = [r for r in s.store.deliverer.records.values() if r.state == "failed"]
    if failed:
        result.lost += len(failed)
        result.fail(f"{len(failed)} webhooks never delivered (last statuses {failed[0].statuses[-3:]})")
    letters = await s.dead_letters()
    result.figures["dead_letters"] = len(letters)
    result.figures["webhooks_delivered"] = sum(
        1 for r in s.store.deliverer.records.values() if r.state == "delivered"
    )
    result.figures["apsis_requests"] = sum(s.account.requests.values())
    result.figures["apsis_429"] = sum(s.account.rate_limited.values())
    for letter in letters[:MAX_LISTED]:
        result.fail(f"dead letter {letter['function']}: {letter['error'][:200]}")
    for svc in s.receivers + s.workers:
        if not svc.running:
            result.fail(f"{svc.name} is not running at the end")


async def _flagged_uncertain(s: Stack, order_id: int, section: str) -> bool:
    """The worker marked this order's events in this section `unknown` (see worker/orders/)."""
    marks = await s.redis.hgetall(s.keys.order_sent(DOMAIN, order_id, "purchase"))  # type: ignore[misc]
    for field, value in marks.items():
        name, text = field.decode(), value.decode()
        if name == section and "unknown" in text:
            return True
        if name.startswith(f"{section}|") and text == "unknown":
            return True
    return False
