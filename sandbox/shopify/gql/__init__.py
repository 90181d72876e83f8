"""The GraphQL Admin API of the simulated store (see `endpoint.py` for the request's path).

`admin.graphql` is the schema (a subset of Shopify's published 2026-10 one), `schema.py` binds the
resolvers (`resolvers.py`, `admin_resolvers.py`) over the records shaped by `shapes.py`;
`connection.py` pages, `search.py` filters, `cost.py` prices a query, `bulk_query.py` checks a
bulk export, `context.py` holds what a request's resolvers share and the access rules.
"""
