"""The lab cache: each stage's output in a folder named by its recipe, llmcourse's version and the
lab data version, so a finished stage is reused and a changed one is rebuilt."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from llmcourse import __version__
from llmcourse.core.cache import llmcourse_home


def cache_folder(name: str, *key: Any) -> Path:
    """The lab folder for stage `name` made from `key` (JSON-able values: a recipe's YAML, a path,
    settings); llmcourse's version and the lab data version are part of every key."""
    from llmcourse.lab import DATA_VERSION

    text = json.dumps([list(key), __version__, DATA_VERSION], sort_keys=True, default=str)
    return llmcourse_home() / "lab" / f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"


def cache_path(name: str, recipe: Any) -> Path:
    """The lab folder for stage `name` run from this exact recipe."""
    from llmcourse.recipes.loader import dump_recipe

    return cache_folder(name, dump_recipe(recipe))


def run_cached(name: str, recipe: Any, runner: Callable[..., Any], force: bool = False) -> tuple[Path, bool]:
    """Run `recipe` with `runner` into its cache folder unless a finished run is there.

    Returns (folder, built_now). A run counts as finished once it wrote `report.json`, which every
    command writes last, inside its atomic output.
    """
    path = cache_path(name, recipe)
    if path.exists() and (path / "report.json").exists() and not force:
        return path, False
    runner(recipe.model_copy(update={"output_dir": str(path)}), overwrite=True)
    return path, True
