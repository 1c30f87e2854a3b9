"""JSON from outside (an upload line, an acknowledgement, a line given to ``mdmbus produce``),
parsed with a bound on nesting: Python's parser recurses once per level, and a line nested
100,000 deep would end in RecursionError (a 500, or a crashed command) instead of a refusal
that names what is wrong. Every caller parses such JSON here."""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["TooDeep", "loads", "MAX_DEPTH"]

#: The default bound (settings.json_max_depth); the contract's deepest record is far below it.
MAX_DEPTH = 64

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class TooDeep(ValueError):
    """Nested deeper than the bound; a ValueError, so callers that refuse bad JSON refuse it."""

    reason = "json_too_deep"

    def __init__(self, max_depth: int) -> None:
        super().__init__(f"JSON nested deeper than {max_depth} levels")
        self.max_depth = max_depth


def _depth_over(data: bytes, max_depth: int) -> bool:
    depth = 0
    for m in _TOKENS.finditer(data):
        c = m.group()[:1]
        if c in (b"[", b"{"):
            depth += 1
            if depth > max_depth:
                return True
        elif c in (b"]", b"}"):
            depth -= 1
    return False


def loads(data: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """``json.loads`` that raises :class:`TooDeep` past ``max_depth`` levels. The exact scan
    runs only when the text holds more brackets than the bound (a count at C speed)."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.count(b"[") + raw.count(b"{") > max_depth and _depth_over(raw, max_depth):
        raise TooDeep(max_depth)
    try:
        return json.loads(raw)
    except RecursionError:
        raise TooDeep(max_depth) from None
