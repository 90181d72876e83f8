"""Every GraphQL document the Shopify client can send, and which API versions each is sent to.

Contract: each document is a module-level string named `*_QUERY` or `*_MUTATION`; nothing else in
the worker builds GraphQL text (the contract test validates every such constant against
Shopify's published schemas, `@shopify/dev-mcp` `dist/data/admin_<version>.json.gz`).
`VERSIONS` names, for the documents not sent to every version, the first and last version
they are sent to (inclusive, `None` open): SMS consent moved from `defaultPhoneNumber.marketing*`
(deprecated from 2025-10 with no replacement until 2026-10) to
`defaultPhoneNumber.smsMarketingConsent` (2026-10 on). `DEPRECATED_ALLOWED` lists, per document,
the deprecated fields it must still read because its versions offer nothing else.
`customer_documents(version)` picks the set for the version a shop's client calls.

No deprecated `Customer.email`, `phone`, `emailMarketingConsent`, `smsMarketingConsent`:
email and its consent come from `defaultEmailAddress`, the phone from `defaultPhoneNumber`.
Page sizes are variables (`$first`): the client chooses them from the query's cost.
"""

from __future__ import annotations

from dataclasses import dataclass

_ADDRESS = """
    firstName lastName company address1 address2 city province provinceCode country
    countryCodeV2 zip phone
"""

_CUSTOMER_COMMON = f"""
    id legacyResourceId firstName lastName note state tags verifiedEmail taxExempt locale
    numberOfOrders createdAt updatedAt
    amountSpent {{ amount currencyCode }}
    defaultEmailAddress {{ emailAddress marketingState marketingOptInLevel marketingUpdatedAt }}
    defaultAddress {{ {_ADDRESS} }}
"""

_CUSTOMER_FIELDS = f"""
fragment CustomerFields on Customer {{
    {_CUSTOMER_COMMON}
    defaultPhoneNumber {{
      phoneNumber
      smsMarketingConsent {{ state optInLevel updatedAt collectedFrom }}
    }}
}}
"""

# Before 2026-10 the SMS consent is only on the (deprecated) `marketing*` fields of the phone.
_CUSTOMER_FIELDS_LEGACY = f"""
fragment CustomerFields on Customer {{
    {_CUSTOMER_COMMON}
    defaultPhoneNumber {{
      phoneNumber marketingState marketingOptInLevel marketingUpdatedAt marketingCollectedFrom
    }}
}}
"""

_CUSTOMER = """
query customer($id: ID!) {
  customer(id: $id) { ...CustomerFields }
}
"""

_CUSTOMERS = """
query customers($first: Int!, $after: String, $query: String) {
  customers(first: $first, after: $after, query: $query, sortKey: ID) {
    pageInfo { hasNextPage endCursor }
    nodes { ...CustomerFields }
  }
}
"""

CUSTOMER_QUERY = _CUSTOMER + _CUSTOMER_FIELDS
CUSTOMER_LEGACY_QUERY = _CUSTOMER + _CUSTOMER_FIELDS_LEGACY
CUSTOMERS_QUERY = _CUSTOMERS + _CUSTOMER_FIELDS
CUSTOMERS_LEGACY_QUERY = _CUSTOMERS + _CUSTOMER_FIELDS_LEGACY

CUSTOMERS_COUNT_QUERY = """
query customersCount($query: String) {
  customersCount(query: $query, limit: null) { count precision }
}
"""

# The bulk export's inner query (no page sizes: a bulk operation walks the whole connection).
BULK_CUSTOMERS_QUERY = (
    """
{
  customers { edges { node { ...CustomerFields } } }
}
"""
    + _CUSTOMER_FIELDS
)
BULK_CUSTOMERS_LEGACY_QUERY = (
    """
{
  customers { edges { node { ...CustomerFields } } }
}
"""
    + _CUSTOMER_FIELDS_LEGACY
)

_MONEY = "shopMoney { amount currencyCode }"

_ORDER_LINE = f"""
    id quantity sku title variantTitle vendor
    product {{ legacyResourceId }}
    variant {{ legacyResourceId }}
    originalUnitPriceSet {{ {_MONEY} }}
    originalTotalSet {{ {_MONEY} }}
    discountedTotalSet(withCodeDiscounts: true) {{ {_MONEY} }}
"""

ORDERS_QUERY = f"""
query orders($first: Int!, $after: String, $query: String, $lines: Int!) {{
  orders(first: $first, after: $after, query: $query, sortKey: CREATED_AT, reverse: true) {{
    pageInfo {{ hasNextPage endCursor }}
    nodes {{
      id legacyResourceId name number email createdAt processedAt cancelledAt updatedAt
      currencyCode displayFinancialStatus discountCodes
      customer {{ legacyResourceId }}
      totalPriceSet {{ {_MONEY} }}
      subtotalPriceSet {{ {_MONEY} }}
      totalDiscountsSet {{ {_MONEY} }}
      totalShippingPriceSet {{ {_MONEY} }}
      totalTaxSet {{ {_MONEY} }}
      lineItems(first: $lines) {{
        pageInfo {{ hasNextPage endCursor }}
        nodes {{ {_ORDER_LINE} }}
      }}
    }}
  }}
}}
"""

# The rest of an order's lines when the first page of them did not hold them all.
ORDER_LINES_QUERY = f"""
query orderLines($id: ID!, $first: Int!, $after: String) {{
  order(id: $id) {{
    lineItems(first: $first, after: $after) {{
      pageInfo {{ hasNextPage endCursor }}
      nodes {{ {_ORDER_LINE} }}
    }}
  }}
}}
"""

PRODUCTS_QUERY = """
query products($ids: [ID!]!) {
  nodes(ids: $ids) {
    ... on Product {
      id legacyResourceId handle productType vendor updatedAt
      featuredMedia { preview { image { url } } }
    }
  }
}
"""

WEBHOOKS_QUERY = """
query webhookSubscriptions($first: Int!, $after: String) {
  webhookSubscriptions(first: $first, after: $after) {
    pageInfo { hasNextPage endCursor }
    nodes { id legacyResourceId topic uri format apiVersion { handle } createdAt updatedAt }
  }
}
"""

WEBHOOK_CREATE_MUTATION = """
mutation webhookSubscriptionCreate($topic: WebhookSubscriptionTopic!, $subscription: WebhookSubscriptionInput!) {
  webhookSubscriptionCreate(topic: $topic, webhookSubscription: $subscription) {
    webhookSubscription { id legacyResourceId topic uri format apiVersion { handle } createdAt updatedAt }
    userErrors { field message }
  }
}
"""

WEBHOOK_DELETE_MUTATION = """
mutation webhookSubscriptionDelete($id: ID!) {
  webhookSubscriptionDelete(id: $id) {
    deletedWebhookSubscriptionId
    userErrors { field message }
  }
}
"""

ACCESS_SCOPES_QUERY = """
query accessScopes {
  currentAppInstallation { accessScopes { handle } }
}
"""

SHOP_QUERY = """
query shop {
  shop {
    id name email myshopifyDomain currencyCode ianaTimezone createdAt
    plan { publicDisplayName partnerDevelopment shopifyPlus }
  }
}
"""

BULK_RUN_MUTATION = """
mutation bulkOperationRunQuery($query: String!) {
  bulkOperationRunQuery(query: $query, groupObjects: false) {
    bulkOperation { id status }
    userErrors { field message code }
  }
}
"""

BULK_OPERATION_QUERY = """
query bulkOperation($id: ID!) {
  node(id: $id) {
    ... on BulkOperation {
      id status errorCode createdAt completedAt objectCount rootObjectCount fileSize url partialDataUrl
    }
  }
}
"""

SMS_CONSENT_ON_PHONE = "2026-10"  # `CustomerPhoneNumber.smsMarketingConsent` from this version

# Documents not sent to every supported version: name -> (first, last), inclusive.
VERSIONS: dict[str, tuple[str | None, str | None]] = {
    "CUSTOMER_QUERY": (SMS_CONSENT_ON_PHONE, None),
    "CUSTOMERS_QUERY": (SMS_CONSENT_ON_PHONE, None),
    "BULK_CUSTOMERS_QUERY": (SMS_CONSENT_ON_PHONE, None),
    "CUSTOMER_LEGACY_QUERY": (None, "2026-07"),
    "CUSTOMERS_LEGACY_QUERY": (None, "2026-07"),
    "BULK_CUSTOMERS_LEGACY_QUERY": (None, "2026-07"),
}

_PHONE_MARKETING = frozenset(
    {
        "CustomerPhoneNumber.marketingState",
        "CustomerPhoneNumber.marketingOptInLevel",
        "CustomerPhoneNumber.marketingUpdatedAt",
        "CustomerPhoneNumber.marketingCollectedFrom",
    }
)
# Deprecated fields a document must read because its versions have no replacement yet.
DEPRECATED_ALLOWED: dict[str, frozenset[str]] = {
    "CUSTOMER_LEGACY_QUERY": _PHONE_MARKETING,
    "CUSTOMERS_LEGACY_QUERY": _PHONE_MARKETING,
    "BULK_CUSTOMERS_LEGACY_QUERY": _PHONE_MARKETING,
}


@dataclass(frozen=True, slots=True)
class CustomerDocuments:
    """The customer documents for one API version."""

    customer: str
    customers: str
    bulk: str


def customer_documents(version: str) -> CustomerDocuments:
    """The customer documents a client calling `version` sends (versions compare as text:
    `YYYY-MM`; `unstable` sorts after every dated one)."""
    if version >= SMS_CONSENT_ON_PHONE:
        return CustomerDocuments(CUSTOMER_QUERY, CUSTOMERS_QUERY, BULK_CUSTOMERS_QUERY)
    return CustomerDocuments(CUSTOMER_LEGACY_QUERY, CUSTOMERS_LEGACY_QUERY, BULK_CUSTOMERS_LEGACY_QUERY)
