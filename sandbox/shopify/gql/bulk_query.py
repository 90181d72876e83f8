"""The export query of `bulkOperationRunQuery`: checked against the schema, reduced to a node selection.

Shopify validates the inner query and answers `userErrors` (`code: INVALID`) when it is not
valid GraphQL for the schema. This sandbox exports customers only: the query's one top-level
field is `customers` (`edges { node { ... } }` or `nodes { ... }`), and the node selection may
not hold nested connections or links to other records (Shopify would write those as separate
JSONL lines with `__parentId`; the sandbox refuses them with a clear message instead).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionNode,
    parse,
    validate,
)

from sandbox.shopify.gql.context import PROTECTED_FIELDS

NOT_IN_RECORD = frozenset({"addressesV2", "orders", "lastOrder"})


@dataclass
class Export:
    selections: Sequence[SelectionNode] = ()
    fragments: dict[str, FragmentDefinitionNode] = field(default_factory=dict)
    field_names: set[str] = field(default_factory=set)
    errors: list[dict[str, Any]] = field(default_factory=list)

    @property
    def protected(self) -> bool:
        return bool(self.field_names & PROTECTED_FIELDS["Customer"])


def _invalid(message: str) -> Export:
    return Export(errors=[{"field": ["query"], "message": message, "code": "INVALID"}])


def _names(selections: Sequence[SelectionNode], fragments: dict[str, FragmentDefinitionNode]) -> set[str]:
    names: set[str] = set()
    for selection in selections:
        if isinstance(selection, FieldNode):
            names.add(selection.name.value)
        elif isinstance(selection, InlineFragmentNode):
            names |= _names(selection.selection_set.selections, fragments)
        elif isinstance(selection, FragmentSpreadNode) and selection.name.value in fragments:
            names |= _names(fragments[selection.name.value].selection_set.selections, fragments)
    return names


def plan_export(schema: GraphQLSchema, query: str) -> Export:
    try:
        document = parse(query)
    except GraphQLError as exc:
        return _invalid(f"Invalid bulk query: {exc.message}")
    errors = validate(schema, document)
    if errors:
        return _invalid(f"Invalid bulk query: {errors[0].message}")
    operations = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if len(operations) != 1 or operations[0].operation.value != "query":
        return _invalid("Bulk queries must contain exactly one query operation.")
    fragments = {d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)}
    top = [s for s in operations[0].selection_set.selections if isinstance(s, FieldNode)]
    if len(top) != 1 or top[0].name.value != "customers" or top[0].selection_set is None:
        return _invalid(
            "The sandbox exports customers only: the query's one top-level field must be `customers`."
        )
    node: FieldNode | None = None
    for part in top[0].selection_set.selections:
        if isinstance(part, FieldNode) and part.name.value == "nodes":
            node = part
        elif isinstance(part, FieldNode) and part.name.value == "edges" and part.selection_set is not None:
            node = next(
                (
                    s
                    for s in part.selection_set.selections
                    if isinstance(s, FieldNode) and s.name.value == "node"
                ),
                node,
            )
    if node is None or node.selection_set is None:
        return _invalid("Bulk queries select the customers as `edges { node { ... } }` or `nodes { ... }`.")
    selections = node.selection_set.selections
    names = _names(selections, fragments)
    nested = sorted(names & NOT_IN_RECORD)
    if nested:
        return _invalid(
            f"The sandbox bulk export does not support nested connections or links: {', '.join(nested)}."
        )
    return Export(selections, fragments, names)
