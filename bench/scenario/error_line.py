"""One line for a pydantic validation error: the file, the dotted field and the problem.

For a union pydantic reports one error per member; the line names the most specific one
(an unknown key first, then the deepest location), and for an unknown key the closest
valid name and the valid ones.
"""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

__all__ = ["first_error_line"]


def first_error_line(exc: ValidationError, source: str, root: type[BaseModel]) -> str:
    """`source: field: problem` for the first error of `exc`, raised validating `root`."""
    err = _most_specific(exc.errors())
    loc = [str(p) for p in err["loc"] if not _is_union_tag(p)]
    field = ".".join(loc) or "(top level)"
    if err["type"] == "extra_forbidden":
        return f"{source}: {field}: unknown key{_suggest(root, tuple(err['loc']))}"
    if err["type"] == "missing":
        return f"{source}: {field}: required field is missing"
    message = err["msg"].removeprefix("Value error, ")
    got = err.get("input")
    plain = isinstance(got, (dict, list)) or got is None or repr(got) in message
    shown = "" if plain else f" (got {got!r})"
    return f"{source}: {field}: {message}{shown}"


def _most_specific(errors: list[Any]) -> Any:
    # For unions pydantic reports one error per member; prefer an unknown key, then the
    # deepest location, which is what the user actually mistyped.
    extra = [e for e in errors if e["type"] == "extra_forbidden"]
    pool = extra or errors
    return max(pool, key=lambda e: len(e["loc"]))


def _is_union_tag(part: Any) -> bool:
    # pydantic adds union member tags ("list[...]", "fixed", "function-after[...]") to locations.
    return isinstance(part, str) and (
        "[" in part or part in {"fixed", "uniform", "normal", "lognormal", "str"}
    )


def _suggest(root: type[BaseModel], raw_loc: tuple[Any, ...]) -> str:
    model = _model_at(root, list(raw_loc[:-1]))
    if model is None:
        return ""
    valid = list(model.model_fields)
    close = difflib.get_close_matches(str(raw_loc[-1]), valid, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"{hint} (valid: {', '.join(valid)})"


def _model_at(model: type[BaseModel], loc: list[Any]) -> type[BaseModel] | None:
    """Walk a pydantic error location (with its list indexes and union tags) to a model."""
    current: list[type[BaseModel]] = [model]
    for part in loc:
        if isinstance(part, int) or "[" in str(part):
            continue
        by_tag = [m for m in current if _tag_of(m) == part]
        if by_tag:
            current = by_tag
            continue
        fields = [m.model_fields[part] for m in current if part in m.model_fields]
        if not fields:
            return None
        current = _models_in(fields[0].annotation)
        if not current:
            return None
    return current[0] if len(current) == 1 else None


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _tag_of(model: type[BaseModel]) -> str | None:
    field = model.model_fields.get("dist")
    tags = typing.get_args(field.annotation) if field is not None else ()
    return tags[0] if tags else None
