"""JSON from outside is parsed with a nesting bound (mdmbus/jsonlines.py)."""

from __future__ import annotations

import pytest

from mdmbus import jsonlines
from mdmbus.producer import parse_line


@pytest.mark.parametrize("depth", [65, 1000, 100_000])
def test_nesting_past_the_bound_is_too_deep(depth):
    with pytest.raises(jsonlines.TooDeep, match="deeper than 64"):
        jsonlines.loads("[" * depth + "]" * depth)
    with pytest.raises(jsonlines.TooDeep):
        jsonlines.loads('{"a":' * depth + "1" + "}" * depth)


def test_nesting_at_the_bound_and_brackets_inside_strings_are_fine():
    assert jsonlines.loads("[" * 64 + "]" * 64) is not None
    assert jsonlines.loads('{"a": "' + "[" * 500 + '"}') == {"a": "[" * 500}
    assert jsonlines.loads('["\\"[[[[", 1]') == ['"[[[[', 1]


def test_produce_refuses_a_deep_line_by_name_instead_of_crashing():
    rejection = parse_line("[" * 100_000 + "]" * 100_000, 7)
    assert (rejection.line, rejection.reason) == (7, "json_too_deep")
