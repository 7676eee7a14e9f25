"""The mergekit internals llmcourse touches, all here: checked against mergekit 0.1.5 (`pyproject.toml`
allows `>=0.1.5,<0.2`); `tests/test_merge_compat.py` fails when a release changes any of them.

- `mergekit.graph.tqdm` and `mergekit.merge.tqdm`: the module attributes its tensor loop calls; we put
  a rich progress bar there for the duration of a merge and restore them.
- `mergekit.io.loader.TensorLoader.get`: the classmethod that opens an input shard; for safetensors we
  hand back a reader that opens the file per tensor, so mapped pages are released after each read
  (peak RSS ~ one tensor instead of the whole mapped shard; `benchmarks/merge_cost.py` measures it).
"""

from __future__ import annotations

import contextlib
from types import SimpleNamespace
from typing import Any, Iterator

from llmcourse.core.console import err

CHECKED = "0.1.5"


@contextlib.contextmanager
def rich_progress(description: str) -> Iterator[None]:
    """Show mergekit's tensor-task loop as a rich progress bar (mergekit itself uses tqdm)."""
    import mergekit.graph
    import mergekit.merge
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=False)

    def track(iterable: Any, desc: str | None = None, disable: bool = False, **_: Any) -> Iterator[Any]:
        items = list(iterable)
        label = description if desc in (None, "Executing graph") else desc
        if desc == "Warmup loader cache":
            yield from items
            return
        yield from progress.track(items, total=len(items), description=label)

    shim = SimpleNamespace(tqdm=track)
    saved = (mergekit.graph.tqdm, mergekit.merge.tqdm)
    mergekit.graph.tqdm = mergekit.merge.tqdm = shim
    try:
        with progress:
            yield
    finally:
        mergekit.graph.tqdm, mergekit.merge.tqdm = saved


class _ShardReadPerTensor:
    """A safetensors shard that is opened for each tensor it gives and closed again, so that the
    pages of the memory-mapped input are released after every read (mergekit keeps a shard mapped
    while it works through it: the pages it has read count in the process's memory)."""

    def __init__(self, path: str, device: str) -> None:
        from safetensors import safe_open

        self.path, self.device = path, device
        with safe_open(path, framework="pt", device=device) as shard:
            self._keys = list(shard.keys())

    def keys(self) -> list[str]:
        """The tensor names in the shard."""
        return self._keys

    def get_tensor(self, key: str) -> Any:
        """One tensor, copied out of the file."""
        from safetensors import safe_open

        with safe_open(self.path, framework="pt", device=self.device) as shard:
            return shard.get_tensor(key).clone()


@contextlib.contextmanager
def inputs_read_per_tensor() -> Iterator[None]:
    """Make mergekit read safetensors inputs through `_ShardReadPerTensor` while it merges."""
    from mergekit.io.loader import TensorLoader

    original = TensorLoader.__dict__["get"]

    def get(cls: Any, shard_path: str, use_lazy_unpickle: bool = False, device: str | None = None) -> Any:
        if shard_path.lower().endswith(".safetensors"):
            return _ShardReadPerTensor(shard_path, device or "cpu")
        return original.__func__(cls, shard_path, use_lazy_unpickle, device)

    TensorLoader.get = classmethod(get)
    try:
        yield
    finally:
        TensorLoader.get = original
