"""The untrusted-JSON reader: whatever it is given, a value or InvalidJson, never another exception."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mappings.fhir import jsonio


def nested(depth: int, open_: str = "[", close: str = "]") -> str:
    return open_ * depth + close * depth


def test_nesting_up_to_the_limit_parses_and_beyond_is_refused_with_a_position() -> None:
    assert jsonio.loads(nested(jsonio.MAX_DEPTH)) is not None
    objects = '{"a":' * jsonio.MAX_DEPTH + "1" + "}" * jsonio.MAX_DEPTH
    assert jsonio.loads(objects)["a"]["a"]["a"] is not None
    past = jsonio.MAX_DEPTH + 1
    for text, column in ((nested(past), past), (nested(10_000), past), ("[{" * 5_000, past),
                         ("[" * 100_000, past), ('{"a":' * 10_000, 5 * jsonio.MAX_DEPTH + 1),
                         ("[\n" * 10_000, 1)):
        with pytest.raises(jsonio.JsonTooDeep) as caught:
            jsonio.loads(text)
        assert isinstance(caught.value, jsonio.InvalidJson)
        assert caught.value.column == column
    assert caught.value.line == past


def test_brackets_inside_strings_do_not_count_either_way() -> None:
    many = '"' + "[" * 5_000 + '"'
    assert jsonio.loads(f"[{many}, {{\"x\": \"\\\"]]]]\"}}]")[1]["x"] == '"]]]]'
    # closing brackets in strings must not hide real depth
    hidden = "[" * (jsonio.MAX_DEPTH + 1) + '"' + "]" * 500 + '"' + "]" * (jsonio.MAX_DEPTH + 1)
    with pytest.raises(jsonio.JsonTooDeep):
        jsonio.loads(hidden)


def test_encodings() -> None:
    assert jsonio.loads(b'\xef\xbb\xbf{"a": 1}') == {"a": 1}  # UTF-8 byte order mark skipped
    for data in ('{"a": 1}'.encode("utf-16"), '{"a": 1}'.encode("utf-32"), b'{"a": "\xff"}', b"\xc3"):
        with pytest.raises(jsonio.InvalidJson, match="not UTF-8"):
            jsonio.loads(data)


@pytest.mark.parametrize("text", ['{"a": NaN}', '[Infinity]', '[-Infinity]', '{"a": "\\ud800"}',
                                  '{"\\udc00": 1}', '["x\\udfff"]', '{"a": 1, "b": 2, "a": 3}', ""])
def test_not_json_or_not_storable(text: str) -> None:
    with pytest.raises(jsonio.InvalidJson) as caught:
        jsonio.loads(text)
    assert "\\u" not in str(caught.value)


def test_what_stays_accepted() -> None:
    assert jsonio.loads('["\\ud83d\\ude00", "\\\\ud800"]') == ["\U0001f600", "\\ud800"]  # a pair; an escaped backslash
    assert jsonio.loads('{"a": {"a": 1}, "b": [{"a": 2}]}') == {"a": {"a": 1}, "b": [{"a": 2}]}
    assert jsonio.loads("[1e999999, 1.50, " + "9" * 5000 + "]") == [Decimal("1e999999"), Decimal("1.50"),
                                                                    Decimal("9" * 5000)]
    assert jsonio.loads("[1.5]", exact_numbers=False) == [1.5]


json_text = st.one_of(
    st.text(alphabet='[]{}",:0123456789.eE+-tfnaulrsNI\\ u\ud800', max_size=300),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=3), kids, max_size=3),
                 max_leaves=40).map(lambda v: jsonio.dumps(v)),
)


@settings(max_examples=400, deadline=None, derandomize=True, database=None)
@given(data=st.one_of(json_text, json_text.map(lambda t: t.encode("utf-8", "surrogatepass")),
                      st.binary(max_size=200)))
def test_only_invalid_json_escapes(data: str | bytes) -> None:
    try:
        jsonio.loads(data)
    except jsonio.InvalidJson:
        pass
