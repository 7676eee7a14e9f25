"""The base of every recipe model and the translation of pydantic errors into user messages."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from llmcourse.core.errors import did_you_mean


class Recipe(BaseModel):
    """Base for recipe sections: unknown keys are errors, values are checked on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


class CommandRecipe(Recipe):
    """Base for a whole command's recipe: every command writes one output folder."""

    output_dir: str | None = None


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) of the nested model reached by `loc`, for suggestions."""
    current: Any = model
    for part in loc:
        if isinstance(part, int) or current is None:
            continue
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return []
        current = _model_in(field.annotation)
    if current is None or not hasattr(current, "model_fields"):
        return []
    names = [info.alias or name for name, info in current.model_fields.items()]
    if not [p for p in loc if not isinstance(p, int)] and hasattr(model, "flat_key_names"):
        names += model.flat_key_names()
    return names


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel class inside an annotation such as `Foo`, `Foo | None` or `list[Foo]`."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _describe(error: dict[str, Any], model: type[BaseModel], written: dict[tuple[str, ...], str]) -> str:
    """One line for one pydantic error: `path: what is wrong, got VALUE`, the path as the user wrote it."""
    loc = tuple(error["loc"])
    path = ".".join(str(p) for p in loc) or "(recipe)"
    if tuple(str(p) for p in loc[:2]) in written:
        path = ".".join([written[tuple(str(p) for p in loc[:2])], *(str(p) for p in loc[2:])])
    kind = error["type"]
    ctx = error.get("ctx") or {}
    got = error.get("input")
    if kind == "extra_forbidden":
        parent = loc[:-1]
        return f"{path}: unknown key{did_you_mean(str(loc[-1]), _fields_at(model, parent))}"
    if kind == "missing":
        return f"{path}: is required"
    comparisons = {
        "greater_than": ("must be >", "gt"),
        "greater_than_equal": ("must be >=", "ge"),
        "less_than": ("must be <", "lt"),
        "less_than_equal": ("must be <=", "le"),
    }
    if kind in comparisons:
        words, key = comparisons[kind]
        return f"{path}: {words} {ctx.get(key)}, got {got!r}"
    if kind == "literal_error":
        return f"{path}: must be one of {ctx.get('expected')}, got {got!r}"
    message = str(error["msg"])
    message = message.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    message = message[:1].lower() + message[1:]
    if kind.endswith(("_type", "_parsing")):
        return f"{path}: {message}, got {got!r}"
    return f"{path}: {message}"


def format_validation_error(exc: ValidationError, model: type[BaseModel], written: dict[tuple[str, ...], str] | None = None) -> list[str]:
    """Every problem of a failed validation, one line each, in recipe order; `written` maps a nested
    path (`("train", "evals_per_epoch")`) to the key the user wrote (`evals_per_epoch`)."""
    return [_describe(error, model, written or {}) for error in exc.errors()]
