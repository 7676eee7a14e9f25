"""The mergekit internals llmcourse touches, all here: checked against mergekit 0.1.5 (`pyproject.toml`
allows `>=0.1.5,<0.2`); `tests/test_merge_compat.py` fails when a release changes any of them.

- `mergekit.graph.tqdm` and `mergekit.merge.tqdm`: the module attributes its tensor loop calls; we put
  a rich progress bar there for the duration of a merge and restore them.

mergekit's own loading is left alone: under a memory cgroup smaller than its inputs, plain
`mergekit-yaml` finishes (the kernel drops the pages of the memory-mapped inputs it has read), so a
reader that reopened each shard per tensor, swapped in for `TensorLoader.get`, was removed
(`benchmarks/merge_cost.py --memory-limit`; benchmarks/README.md).
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
