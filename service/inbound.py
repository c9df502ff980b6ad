"""What any request body may hold: bounded JSON of text a database can store.

Every request schema derives from :class:`InboundModel`, which checks the raw body before the
fields are validated: at most ``MAX_DEPTH`` levels of nesting (a deeper value could be stored
but not rendered again: pydantic's serializer stops at 255 levels, and every route that shows
the job would fail), and strings, keys included, of at most ``MAX_TEXT`` characters without
NUL (Postgres cannot store it) or lone surrogates (not encodable as UTF-8). Types are strict: ``"16"`` or ``true`` is not a
number and ``0`` is not a boolean. Anything else is a 422 naming where it is, before anything
is written.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, model_validator
from pydantic_core import PydanticCustomError

__all__ = ["MAX_DEPTH", "MAX_TEXT", "InboundModel", "json_problem"]

#: Levels of nesting a request body may have (task options are a few levels deep at most).
MAX_DEPTH = 32
#: Characters a string anywhere in a body may have (fields with their own bound have less).
MAX_TEXT = 10_000
_BAD_TEXT = re.compile("[\x00\ud800-\udfff]")


def _short(path: str) -> str:
    return path if len(path) <= 80 else f"{path[:40]}...{path[-30:]}"


def json_problem(value: Any, *, max_depth: int = MAX_DEPTH, max_text: int = MAX_TEXT) -> str | None:
    """What makes a decoded JSON value unacceptable, with its path, or None."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        item, depth, path = stack.pop()
        if isinstance(item, str):
            where = _short(path) or "the top"
            if _BAD_TEXT.search(item):
                return f"text at {where} holds a NUL character or a lone surrogate"
            if len(item) > max_text:
                return f"text at {where} is longer than {max_text} characters"
            continue
        if not isinstance(item, dict | list):
            continue
        if depth > max_depth:
            return f"{_short(path) or 'the value'} is nested more than {max_depth} levels deep"
        if isinstance(item, dict):
            for key, child in item.items():
                if isinstance(key, str) and (_BAD_TEXT.search(key) or len(key) > max_text):
                    where = _short(path) or "the top"
                    return f"a key at {where} is too long or holds a NUL or a lone surrogate"
                stack.append((child, depth + 1, f"{path}.{key}" if path else str(key)))
        else:
            stack.extend((child, depth + 1, f"{path}[{i}]") for i, child in enumerate(item))
    return None


class InboundModel(BaseModel):
    """A request schema: unknown fields rejected, finite floats, strict types, bounded JSON."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)

    @model_validator(mode="before")
    @classmethod
    def _bounded_json(cls, data: Any) -> Any:
        problem = json_problem(data)
        if problem is not None:
            raise PydanticCustomError("value_error", problem)
        return data
