"""Read a recipe file, apply `key=value` overrides and validate it, before anything heavy loads."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from llmcourse.core.errors import UserError
from llmcourse.recipes.base import format_validation_error

RecipeT = TypeVar("RecipeT", bound=BaseModel)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Load a YAML mapping from `path`, turning every way it can fail into a UserError."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"recipe file not found: {path}", hint="check the path, or list the shipped recipes with `llmcourse recipes ls`")
    if path.is_dir():
        raise UserError(f"recipe path is a folder, not a YAML file: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UserError(f"{path}: malformed YAML{where}: {problem}", hint="fix the YAML syntax; indentation uses spaces") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{path}: a recipe must be a YAML mapping of keys to values, got {type(data).__name__}")
    return data


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split `a.b.c=value` into its key path and YAML-parsed value."""
    key, sep, raw = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not key.strip() or any(not p for p in parts):
        raise UserError(f"bad override '{text}': expected key=value, e.g. train.learning_rate=1e-4")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"bad override '{text}': the value is not valid YAML") from exc
    return parts, value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Return a copy of `data` with each dotted `key=value` override set."""
    result = copy.deepcopy(data)
    for text in overrides:
        parts, value = parse_override(text)
        node: Any = result
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node, list) and part.isdigit() and int(part) < len(node):
                node = node[int(part)]
                continue
            if not isinstance(node, dict):
                raise UserError(f"bad override '{text}': '{'.'.join(parts[:depth])}' is not a mapping")
            node = node.setdefault(part, {})
        last = parts[-1]
        if isinstance(node, list) and last.isdigit() and int(last) < len(node):
            node[int(last)] = value
        elif isinstance(node, dict):
            node[last] = value
        else:
            raise UserError(f"bad override '{text}': '{'.'.join(parts[:-1])}' is not a mapping")
    return result


def validate(model: type[RecipeT], data: dict[str, Any], source: str = "recipe") -> RecipeT:
    """Validate `data` against `model`, reporting every problem at once as one UserError.

    Models that accept foreign keys without acting on them (Axolotl's `wandb_*`, ...) expose
    `split_ignored`; those keys produce one warning, never an error.
    """
    if hasattr(model, "split_ignored"):
        data, ignored = model.split_ignored(data)
        if ignored:
            from llmcourse.core.console import err

            err.print(f"[yellow]warning:[/] {source}: ignoring keys that llmcourse does not act on: {', '.join(ignored)}")
    written = model.written_keys(data) if hasattr(model, "written_keys") else {}
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        lines = format_validation_error(exc, model, written)
        count = f"{len(lines)} problem{'s' if len(lines) > 1 else ''}"
        raise UserError(f"{source}: {count}\n  " + "\n  ".join(lines)) from exc


def dump_recipe(recipe: BaseModel) -> str:
    """The resolved recipe as YAML, in field order, aliases as written by users."""
    data = recipe.model_dump(mode="json", by_alias=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
