"""The client's GraphQL and the sandbox's schema, held to Shopify's published Admin API schemas.

1. Every `*_QUERY` / `*_MUTATION` constant of `worker.shopify_queries` is valid against each
   supported version it is sent to (`VERSIONS`), and selects no deprecated field (apart from
   those `DEPRECATED_ALLOWED` names for it) and no deprecated enum value.
2. The sandbox's SDL is a subset of the published 2026-10 schema: every type it serves exists
   there of the same kind, every field with the same type (named type, list and non-null
   wrapping), every argument and input field likewise, every enum value, every interface.
Skipped, with the reason, when npm or the registry cannot provide `@shopify/dev-mcp`.
"""

from __future__ import annotations

from typing import Any

import pytest
from graphql import (
    DocumentNode,
    EnumValueNode,
    FieldNode,
    GraphQLEnumType,
    GraphQLInputObjectType,
    GraphQLInterfaceType,
    GraphQLNamedType,
    GraphQLObjectType,
    GraphQLSchema,
    GraphQLString,
    GraphQLUnionType,
    TypeInfo,
    TypeInfoVisitor,
    Visitor,
    get_named_type,
    parse,
    validate,
    visit,
)

from sandbox.shopify.gql.schema import SCHEMA as SANDBOX
from tests.contract.shopify_schemas import NEWEST, SUPPORTED, SchemaUnavailableError, admin_schema
from worker import shopify_queries

DOCUMENTS = {
    name: value
    for name, value in vars(shopify_queries).items()
    if name.endswith(("_QUERY", "_MUTATION")) and isinstance(value, str)
}


@pytest.fixture(scope="module")
def published() -> dict[str, GraphQLSchema]:
    try:
        return {version: admin_schema(version) for version in SUPPORTED}
    except SchemaUnavailableError as exc:
        pytest.skip(f"Shopify's published schemas unavailable: {exc}")


def _sent_to(name: str) -> list[str]:
    first, last = getattr(shopify_queries, "VERSIONS", {}).get(name, (None, None))
    return [v for v in SUPPORTED if (first is None or v >= first) and (last is None or v <= last)]


class _Deprecated(Visitor):
    """Collects `Type.field` of deprecated fields and `Enum.VALUE` of deprecated enum values."""

    def __init__(self, type_info: TypeInfo) -> None:
        super().__init__()
        self.type_info = type_info
        self.found: set[str] = set()

    def enter_field(self, node: FieldNode, *_: Any) -> None:
        definition = self.type_info.get_field_def()
        parent = self.type_info.get_parent_type()
        if definition is not None and parent is not None and definition.deprecation_reason:
            self.found.add(f"{parent.name}.{node.name.value}")

    def enter_enum_value(self, node: EnumValueNode, *_: Any) -> None:
        enum = get_named_type(self.type_info.get_input_type())
        if isinstance(enum, GraphQLEnumType):
            value = enum.values.get(node.value)
            if value is not None and value.deprecation_reason:
                self.found.add(f"{enum.name}.{node.value}")


def deprecated_in(schema: GraphQLSchema, document: DocumentNode) -> set[str]:
    type_info = TypeInfo(schema)
    collector = _Deprecated(type_info)
    visit(document, TypeInfoVisitor(type_info, collector))
    return collector.found


def test_the_worker_has_documents() -> None:
    assert len(DOCUMENTS) >= 8, sorted(DOCUMENTS)
    assert any(name.endswith("_MUTATION") for name in DOCUMENTS)


@pytest.mark.parametrize("name", sorted(DOCUMENTS))
def test_document_is_valid_and_current_for_each_version(
    published: dict[str, GraphQLSchema], name: str
) -> None:
    document = parse(DOCUMENTS[name])
    allowed = getattr(shopify_queries, "DEPRECATED_ALLOWED", {}).get(name, frozenset())
    versions = _sent_to(name)
    assert versions, f"{name} is sent to no supported version"
    for version in versions:
        schema = published[version]
        errors = validate(schema, document)
        assert not errors, f"{name} against {version}: " + "; ".join(e.message for e in errors)
        stale = deprecated_in(schema, document) - allowed
        assert not stale, f"{name} against {version} uses deprecated {sorted(stale)}"


def test_deprecated_fields_are_found() -> None:
    """The deprecation walk itself: `Customer.email` is deprecated in the sandbox SDL too."""
    document = parse(
        '{ customer(id: "gid://shopify/Customer/1") { email defaultEmailAddress { emailAddress } } }'
    )
    assert deprecated_in(SANDBOX, document) == {"Customer.email"}


def _wrapping(type_: Any) -> str:
    return str(type_)  # e.g. `[String!]!`: the named type with its list and non-null wrapping


def _kind(named: GraphQLNamedType) -> str:
    return type(named).__name__


def sandbox_not_in(published: GraphQLSchema) -> list[str]:
    problems: list[str] = []
    for name, ours in SANDBOX.type_map.items():
        if name.startswith("__"):
            continue
        theirs = published.get_type(name)
        if theirs is None:
            problems.append(f"type {name} does not exist")
            continue
        if _kind(ours) != _kind(theirs):
            problems.append(f"type {name} is a {_kind(ours)} here, a {_kind(theirs)} there")
            continue
        if isinstance(ours, GraphQLObjectType | GraphQLInterfaceType):
            assert isinstance(theirs, GraphQLObjectType | GraphQLInterfaceType)
            missing = {i.name for i in ours.interfaces} - {i.name for i in theirs.interfaces}
            problems.extend(f"{name} does not implement {i} there" for i in sorted(missing))
            for field_name, field in ours.fields.items():
                other = theirs.fields.get(field_name)
                if other is None:
                    problems.append(f"field {name}.{field_name} does not exist")
                    continue
                if _wrapping(field.type) != _wrapping(other.type):
                    problems.append(f"{name}.{field_name}: {field.type} here, {other.type} there")
                for arg_name, arg in field.args.items():
                    published_arg = other.args.get(arg_name)
                    if published_arg is None:
                        problems.append(f"argument {name}.{field_name}({arg_name}) does not exist")
                    elif _wrapping(arg.type) != _wrapping(published_arg.type):
                        problems.append(
                            f"{name}.{field_name}({arg_name}): {arg.type} here, {published_arg.type} there"
                        )
                required = {
                    a for a, v in other.args.items() if str(v.type).endswith("!") and v.default_value is None
                }
                problems.extend(
                    f"{name}.{field_name} lacks required argument {a}"
                    for a in sorted(required - set(field.args))
                )
        elif isinstance(ours, GraphQLInputObjectType):
            assert isinstance(theirs, GraphQLInputObjectType)
            for field_name, input_field in ours.fields.items():
                other_input = theirs.fields.get(field_name)
                if other_input is None:
                    problems.append(f"input field {name}.{field_name} does not exist")
                elif _wrapping(input_field.type) != _wrapping(other_input.type):
                    problems.append(f"{name}.{field_name}: {input_field.type} here, {other_input.type} there")
        elif isinstance(ours, GraphQLEnumType):
            assert isinstance(theirs, GraphQLEnumType)
            problems.extend(
                f"enum value {name}.{v} does not exist" for v in sorted(set(ours.values) - set(theirs.values))
            )
        elif isinstance(ours, GraphQLUnionType):
            assert isinstance(theirs, GraphQLUnionType)
            extra = {t.name for t in ours.types} - {t.name for t in theirs.types}
            problems.extend(f"union {name} has no member {t} there" for t in sorted(extra))
    return problems


def test_sandbox_schema_is_a_subset_of_the_published_one(published: dict[str, GraphQLSchema]) -> None:
    problems = sandbox_not_in(published[NEWEST])
    assert not problems, "\n".join(problems)
    roots = [(s.query_type, s.mutation_type) for s in (SANDBOX, published[NEWEST])]
    assert [[t.name if t else None for t in pair] for pair in roots] == [["QueryRoot", "Mutation"]] * 2


def test_the_subset_check_catches_a_wrong_type(published: dict[str, GraphQLSchema]) -> None:
    """The check is not vacuous: a field typed differently from Shopify's is reported."""
    customer = SANDBOX.get_type("Customer")
    assert isinstance(customer, GraphQLObjectType)
    field = customer.fields["legacyResourceId"]
    original = field.type
    try:
        field.type = GraphQLString  # Shopify: UnsignedInt64!
        assert "Customer.legacyResourceId: String here, UnsignedInt64! there" in sandbox_not_in(
            published[NEWEST]
        )
    finally:
        field.type = original
