"""`is_json` must say exactly what orjson (the worker's parser) says, only faster."""

from __future__ import annotations

import codecs

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from receiver.jsoncheck import is_json


def orjson_accepts(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


CASES = [
    (b'{"id": 1, "email": "a@example.com"}', True),
    (b'{"note": "\\/ \\u0026 \\u2028 \xc3\xa5"}', True),  # Shopify's escaping, raw UTF-8
    (b"[]", True),
    (b"null", True),
    (b" \t\r\n{} ", True),
    (b"18446744073709551615", True),
    (b"123456789012345678901234567890", True),  # beyond 64 bits: simdjson refuses, orjson takes
    (b'{"big": -9223372036854775809}', True),
    (b"[" * 1024 + b"]" * 1024, True),
    (b"[" * 1025 + b"]" * 1025, False),
    (codecs.BOM_UTF8 + b"{}", False),  # simdjson takes a byte order mark, orjson does not
    (b"", False),
    (b"{", False),
    (b'{"a":1}x', False),
    (b"{'a': 1}", False),
    (b"[1,]", False),
    (b"01", False),
    (b"1e400", False),
    (b"NaN", False),
    (b'"\\ud800"', False),  # a lone surrogate
    (b'"\xff"', False),  # not UTF-8
    (b'"\xed\xa0\x80"', False),  # an encoded surrogate
    (b'{"a": "\x01"}', False),  # a raw control character
]


@pytest.mark.parametrize(("body", "expected"), CASES)
def test_table(body: bytes, expected: bool) -> None:
    assert orjson_accepts(body) is expected  # the table states orjson's view...
    assert is_json(body) is expected  # ...and is_json agrees


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
edits = st.lists(
    st.tuples(
        st.integers(0, 10_000),
        st.sampled_from(list(b'{}[]":,.-+eE019\\/u \x00\x1f\x7f\xc3\xa5\xed\xa0\x80\xff')),
    ),
    max_size=3,
)


def _edit(body: bytes, changes: list[tuple[int, int]], delete: bool) -> bytes:
    out = bytearray(body)
    for position, byte in changes:
        at = position % (len(out) + 1)
        if delete and at < len(out):
            del out[at]
        else:
            out[at:at] = bytes([byte])
    return bytes(out)


@settings(max_examples=1500, deadline=None)
@given(value=json_values, changes=edits, delete=st.booleans(), big=st.integers(min_value=2**64))
def test_agrees_with_orjson_on_generated_and_damaged_json(
    value: object, changes: list[tuple[int, int]], delete: bool, big: int
) -> None:
    body = orjson.dumps(value)
    for candidate in (body, _edit(body, changes, delete), body.replace(b"0", str(big).encode(), 1)):
        assert is_json(candidate) is orjson_accepts(candidate), candidate
