"""Purchase events from Shopify orders: the imperative shell around `mappings.orders`.

What happens to an order (`send_order`, used by the `record_order` job and by history):

- Trigger: only deliveries of the installation's `[shop.orders] event_topic` (default
  `orders/paid`; `orders/create` for stores without payments) send events; the other topic is
  acknowledged and does nothing (the customer's own webhooks keep the profile current).
- Profile: the customer's, in every section the customer is synced to (`SyncState.sections`).
  A customer never synced yet is synced first, from a fetch of the whole customer (the order's
  embedded copy lacks addresses, and at 2025-01 tags and consent) or, when the fetch fails for
  good, from that copy. A customer in no section gets no events; a deleted one neither.
- Guests (no customer): skipped and counted (`shopsync_orders_total{outcome="guest_skipped"}`)
  unless `[shop.orders] guests = "email"`: then the profile key is `guest:<email, lower-cased>`
  in the installation's keyspace, in the sections without conditions, and the section's
  mapped `email` attribute is set on it so the marketer can find and segment it. The same
  address over many guest orders is one profile. If the guest later opens an account, the
  customer profile (keyed by id) is a separate profile; the guest's past events stay on the
  `guest:` profile (this service does not merge the two). `customers/redact` does not reach
  `guest:` profiles yet.
- Refunds and cancellations: APSIS events cannot be retracted, so a purchase is sent once, as
  it happened, and later refunds or cancellations send nothing (no negative revenue; the order
  event carries `financial_status` as of sending). An order that is already cancelled when
  its webhook is handled is not sent. History sends only orders that are not cancelled and,
  for `orders/paid` installations, paid or partially refunded (see
  `mappings.orders.is_settled_purchase`): a backfill leaves out what is known to be undone.
- Once only: `Keys.order_sent(shop, order_id, "purchase")` is a hash remembering, per section
  and item (`<section>|order`, `<section>|line:<line id>`), `sending` then `sent`; once every
  item of a section is handled the item fields collapse into one `<section>` field (`sent`, or
  `sent unknown=N`). Kept `SENT_TTL_S` (about 13 months, refreshed whenever the order is seen
  again). The webhook topic is not part of it: `orders/create`, `orders/paid`, duplicates,
  retries and history all meet the same marks. One sender per order at a time
  (`<order key>:lock`).
- Crashes: APSIS keeps every event it is sent, so items are marked `sending` before their POST
  and `sent` after it. A failure that proves APSIS did not take the request (an answer of 4xx,
  408, 429 or 503, a refused connection, our limiter) removes the `sending` marks, so the retry
  sends them. A failure that leaves it open (no answer: timeout, reset, crash, job timeout; or
  500/502/504) leaves them: a retry that finds `sending` does NOT send those items again, marks
  them `unknown`, logs `order_events_uncertain` (order, section, item count) and counts
  `shopsync_order_events_uncertain_total`. So the worst case of a crash at the worst moment is
  that one POST's items (at most 100 kB, part of one section's events for one order) are
  missing in APSIS, never that revenue is counted twice.
- Batches: each section's items go in POSTs under 100 kB (`mappings.orders.batches`). The
  APSIS client used for events does no retries of its own (`events_client`); `worker.orders.posts` repeats
  a POST only after an answer that proves it was not taken (429, 503, ...), so a POST is never
  repeated behind the marks' back.
- Product details (handle, image, type, vendor) come from `worker.products` (Redis cache,
  refreshed by `products/update`, `refresh_product`). The product URL is
  `https://<shop domain>/products/<handle>` (Shopify redirects the myshopify domain to the
  store's primary domain).
- History (`sync_past_orders`, `sync_customer_orders`): the same `send_order` for every order
  of the store (or of one customer), newest first, within Shopify's 60-day window unless the
  store granted `read_all_orders`.

The package: `jobs` (the webhook jobs), `send` (one order end to end), `target` (who receives
the events), `ledger` (the once-only marks and the order lock), `posts` (the POSTs, once),
`history` (past orders), `result` (what they report). This module exposes the public names.
"""

from worker.orders.history import history_floor, sync_customer_orders, sync_past_orders
from worker.orders.jobs import record_order, refresh_product
from worker.orders.ledger import forget_shop_orders
from worker.orders.result import HistoryResult, OrderResult
from worker.orders.send import send_order

__all__ = [
    "HistoryResult",
    "OrderResult",
    "forget_shop_orders",
    "history_floor",
    "record_order",
    "refresh_product",
    "send_order",
    "sync_customer_orders",
    "sync_past_orders",
]
