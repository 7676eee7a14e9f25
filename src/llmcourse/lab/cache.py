"""The lab cache: each stage's output in a folder named by its recipe, llmcourse's version and the
lab data version, so a finished stage is reused and a changed one is rebuilt. Two processes that
want the same stage at once (two demos, a test session and its background demo) build it once: the
second waits on the first's lock and reuses its folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Iterator

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
    command writes last, inside its atomic output. While another process builds the same folder,
    this one waits for it and then reuses its run.
    """
    path = cache_path(name, recipe)
    if _finished(path) and not force:
        return path, False
    with building(path):
        if _finished(path) and not force:  # built by another process while this one waited
            return path, False
        runner(recipe.model_copy(update={"output_dir": str(path)}), overwrite=True)
    return path, True


def _finished(path: Path) -> bool:
    return (path / "report.json").is_file()


@contextlib.contextmanager
def building(path: Path) -> Iterator[None]:
    """Hold the lock of cache folder `path` (a file in `.locks` beside it; the system releases it
    when the process ends, so a crash leaves no stale lock). Without `fcntl` (Windows), no lock."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover
        yield
        return
    locks = path.parent / ".locks"
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / path.name, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
