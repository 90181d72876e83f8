"""Calculated query cost, by Shopify's documented rules, before (requested) and after (actual) a query.

https://shopify.dev/docs/apps/build/apis/graphql-admin/rate-limits: scalars and enums cost 0, an
object 1, an interface or union the most expensive of its possible selections, a connection 2
plus its page size (`first`/`last`) times the cost of one item, and a mutation field 10. Inside a
connection, `edges`, `cursor` and `pageInfo` are free and each `node` (or `nodes` item) is the
object. The requested cost assumes full pages; the actual cost counts what came back (a null
object costs nothing, a connection 2 plus its returned items). A requested cost over 1,000 is
refused before anything runs (MAX_COST_EXCEEDED).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLInterfaceType,
    GraphQLObjectType,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    get_named_type,
    is_leaf_type,
)
from graphql.utilities import value_from_ast_untyped

MUTATION_COST = 10
CONNECTION_BASE = 2
FREE_IN_CONNECTION = frozenset({"edges", "pageInfo", "cursor", "__typename"})
Missing = object()


class CostWalker:
    """Walks one operation with its types; `data` given: the actual cost, else the requested one."""

    def __init__(
        self,
        schema: GraphQLSchema,
        fragments: Mapping[str, FragmentDefinitionNode],
        variables: Mapping[str, Any],
    ) -> None:
        self.schema = schema
        self.fragments = fragments
        self.variables = variables

    def operation(self, op: OperationDefinitionNode, data: Any = Missing) -> int:
        if op.operation.value == "mutation":
            count = sum(
                1
                for s in op.selection_set.selections
                if isinstance(s, FieldNode) and s.name.value != "__typename"
            )
            return MUTATION_COST * count
        root = self.schema.query_type if op.operation.value == "query" else self.schema.subscription_type
        assert root is not None
        return self.selection(root, op.selection_set, data)

    def _groups(self, parent: Any, selection_set: SelectionSetNode) -> list[tuple[Any, list[FieldNode]]]:
        """Fields by the type they are selected on: the parent's own, then each type condition's."""
        own: list[FieldNode] = []
        conditioned: dict[str, list[FieldNode]] = {}

        def collect(sel_set: SelectionSetNode, condition: str | None) -> None:
            for selection in sel_set.selections:
                if isinstance(selection, FieldNode):
                    (conditioned.setdefault(condition, []) if condition else own).append(selection)
                else:
                    if isinstance(selection, InlineFragmentNode):
                        inner, cond = selection.selection_set, selection.type_condition
                    elif isinstance(selection, FragmentSpreadNode) and selection.name.value in self.fragments:
                        fragment = self.fragments[selection.name.value]
                        inner, cond = fragment.selection_set, fragment.type_condition
                    else:
                        continue
                    name = cond.name.value if cond is not None else None
                    collect(inner, condition if name in (None, getattr(parent, "name", None)) else name)

        collect(selection_set, None)
        groups: list[tuple[Any, list[FieldNode]]] = [(parent, own)]
        groups.extend((self.schema.get_type(name), fields) for name, fields in conditioned.items())
        return groups

    def selection(self, parent: Any, selection_set: SelectionSetNode, data: Any = Missing) -> int:
        groups = self._groups(parent, selection_set)
        total = sum(self.field(parent, f, data) for f in groups[0][1])
        extra = [sum(self.field(t, f, data) for f in fields) for t, fields in groups[1:] if t is not None]
        return total + max(extra, default=0)

    def _arg(self, node: FieldNode, name: str) -> Any:
        for arg in node.arguments or ():
            if arg.name.value == name:
                return value_from_ast_untyped(arg.value, dict(self.variables))
        return None

    def field(self, parent: Any, node: FieldNode, data: Any) -> int:
        name = node.name.value
        if name.startswith("__") or not isinstance(parent, GraphQLObjectType | GraphQLInterfaceType):
            return 0
        definition = parent.fields.get(name)
        if definition is None:
            return 0
        named = get_named_type(definition.type)
        if is_leaf_type(named) or node.selection_set is None:
            return 0
        key = node.alias.value if node.alias else name
        value = Missing if data is Missing else (data.get(key) if isinstance(data, dict) else None)
        if value is None:
            return 0
        if named.name.endswith("Connection") and isinstance(named, GraphQLObjectType):
            return self.connection(named, node, value)
        if isinstance(value, list):
            return 1 + max((self.selection(named, node.selection_set, v) for v in value), default=0)
        return 1 + self.selection(named, node.selection_set, value)

    def connection(self, conn: GraphQLObjectType, node: FieldNode, value: Any) -> int:
        assert node.selection_set is not None
        if value is Missing:
            size = self._arg(node, "first") or self._arg(node, "last") or 0
            return CONNECTION_BASE + int(size) * self._item(conn, node.selection_set, Missing)
        total = CONNECTION_BASE
        for selection in node.selection_set.selections:
            if not isinstance(selection, FieldNode) or selection.selection_set is None:
                continue
            key = selection.alias.value if selection.alias else selection.name.value
            items = value.get(key) or [] if isinstance(value, dict) else []
            if selection.name.value == "nodes":
                total += sum(self._object(conn, "nodes", selection.selection_set, item) for item in items)
            elif selection.name.value == "edges":
                edge_type = get_named_type(conn.fields["edges"].type)
                total += sum(self._edge(edge_type, selection.selection_set, item) for item in items)
        return total

    def _item(self, conn: GraphQLObjectType, selection_set: SelectionSetNode, data: Any) -> int:
        """The cost of one item of a connection page (requested: a full item)."""
        cost = 0
        for selection in selection_set.selections:
            if not isinstance(selection, FieldNode) or selection.selection_set is None:
                continue
            if selection.name.value == "nodes":
                cost += self._object(conn, "nodes", selection.selection_set, data)
            elif selection.name.value == "edges":
                cost += self._edge(get_named_type(conn.fields["edges"].type), selection.selection_set, data)
        return cost

    def _edge(self, edge_type: Any, selection_set: SelectionSetNode, data: Any) -> int:
        cost = 0
        for selection in selection_set.selections:
            if (
                isinstance(selection, FieldNode)
                and selection.name.value == "node"
                and selection.selection_set
            ):
                key = selection.alias.value if selection.alias else "node"
                value = data if data is Missing else (data.get(key) if isinstance(data, dict) else None)
                cost += self._object(edge_type, "node", selection.selection_set, value)
        return cost

    def _object(self, owner: Any, field_name: str, selection_set: SelectionSetNode, data: Any) -> int:
        if data is None:
            return 0
        return 1 + self.selection(get_named_type(owner.fields[field_name].type), selection_set, data)


def operation_cost(
    schema: GraphQLSchema,
    operation: OperationDefinitionNode,
    fragments: Mapping[str, FragmentDefinitionNode],
    variables: Mapping[str, Any],
    data: Any = Missing,
) -> int:
    """Requested cost without `data`; the actual cost of the answer's `data` with it."""
    return CostWalker(schema, fragments, variables).operation(operation, data)
