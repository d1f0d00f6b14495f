"""The original's small query language for finding a value in a JSON answer.

    test                      member `test`
    a.b                       member `b` of object `a`
    a[0]  a["u2"]             element 0 of an array, member `u2` (same as a.u2)
    a[{"k": "v", "n": 3}].x   the first array element whose members match, then its `x`
    tuple[0][1]               steps chain

`parse_query` checks a query once (when a definition is loaded); `run_query` applies it.
"""

from __future__ import annotations

import json
import re
from typing import Any

Step = str | int | dict[str, Any]

_NAME = re.compile(r"[^.\[\]]+")


class QueryError(ValueError):
    """A query that does not parse, or does not find its value."""


def parse_query(query: str) -> tuple[Step, ...]:
    """The steps of `query`; QueryError when it is malformed."""
    steps: list[Step] = []
    i, n = 0, len(query)
    if not query.strip():
        raise QueryError("is empty")
    expect_name = True
    while i < n:
        ch = query[i]
        if ch == ".":
            if expect_name:
                raise QueryError(f"has an empty name at {i}")
            expect_name = True
            i += 1
        elif ch == "[":
            depth, end, in_string = 0, i, False
            while end < n:  # the matching ], skipping brackets inside strings and objects
                c = query[end]
                if in_string:
                    if c == "\\":
                        end += 1
                    elif c == '"':
                        in_string = False
                elif c == '"':
                    in_string = True
                elif c in "[{":
                    depth += 1
                elif c in "]}":
                    depth -= 1
                    if depth == 0:
                        break
                end += 1
            if end >= n:
                raise QueryError(f"has an unclosed [ at {i}")
            inner = query[i + 1:end].strip()
            try:
                index = json.loads(inner)
            except json.JSONDecodeError:
                raise QueryError(f"has a bad index [{inner}]") from None
            if isinstance(index, bool) or not isinstance(index, (int, str, dict)):
                raise QueryError(f"index [{inner}] must be a number, a string or an object")
            steps.append(index)
            expect_name = False
            i = end + 1
        else:
            m = _NAME.match(query, i)
            assert m is not None
            steps.append(m.group(0).strip())
            expect_name = False
            i = m.end()
    if expect_name:
        raise QueryError("ends with .")
    return tuple(steps)


def run_query(data: Any, steps: tuple[Step, ...]) -> Any:
    """The value `steps` lead to in `data`; QueryError naming the step that found nothing."""
    node = data
    for step in steps:
        if isinstance(step, dict):
            if not isinstance(node, list):
                raise QueryError(f"{json.dumps(step)}: not an array")
            match = next((item for item in node if isinstance(item, dict) and all(
                item.get(k) == v for k, v in step.items())), None)
            if match is None:
                raise QueryError(f"no element matches {json.dumps(step)}")
            node = match
        elif isinstance(step, int):
            if not isinstance(node, list) or not -len(node) <= step < len(node):
                raise QueryError(f"[{step}]: no such element")
            node = node[step]
        else:
            if not isinstance(node, dict) or step not in node:
                raise QueryError(f"{step}: no such member")
            node = node[step]
    return node
