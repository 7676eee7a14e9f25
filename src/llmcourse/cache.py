"""Where the lab keeps what it builds: `$LLMCOURSE_HOME`, default `~/.cache/llmcourse`."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Callable

from llmcourse import __version__


def llmcourse_home() -> Path:
    """The cache root, from `$LLMCOURSE_HOME` or `~/.cache/llmcourse`."""
    return Path(os.environ.get("LLMCOURSE_HOME", Path.home() / ".cache" / "llmcourse")).expanduser().resolve()


def cache_path(name: str, recipe: Any) -> Path:
    """The lab folder for stage `name` run from this exact recipe with this llmcourse version."""
    from llmcourse.recipes.loader import dump_recipe

    from llmcourse.lab import DATA_VERSION

    digest = hashlib.sha256((dump_recipe(recipe) + __version__ + f"lab-data-{DATA_VERSION}").encode()).hexdigest()[:10]
    return llmcourse_home() / "lab" / f"{name}-{digest}"


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
