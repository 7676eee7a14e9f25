"""The mergekit internals llmcourse touches (`llmcourse.merge.compat`): fails when a release changes them."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

pytest.importorskip("mergekit", reason="pip install 'llmcourse[merge]'")


def test_the_tensor_loop_calls_module_level_tqdm_which_we_swap_and_restore() -> None:
    import mergekit.graph
    import mergekit.merge

    from llmcourse.merge.compat import rich_progress

    before = (mergekit.graph.tqdm, mergekit.merge.tqdm)
    for module in (mergekit.graph, mergekit.merge):  # the loops go through the module attribute `tqdm`
        assert "tqdm.tqdm(" in inspect.getsource(module), module.__name__
    with rich_progress("test"):
        assert mergekit.graph.tqdm is not before[0] and mergekit.merge.tqdm is not before[1]
        assert list(mergekit.graph.tqdm.tqdm(range(3), desc="Executing graph")) == [0, 1, 2]
    assert (mergekit.graph.tqdm, mergekit.merge.tqdm) == before


def test_tensor_loader_get_is_the_classmethod_we_replace(tmp_path: Path) -> None:
    import torch
    from mergekit.io.loader import TensorLoader
    from safetensors.torch import save_file

    from llmcourse.merge.compat import inputs_read_per_tensor

    original = TensorLoader.__dict__["get"]
    assert isinstance(original, classmethod)
    assert list(inspect.signature(original.__func__).parameters) == ["cls", "shard_path", "use_lazy_unpickle", "device"]
    shard = tmp_path / "model.safetensors"
    tensors = {"a": torch.arange(6.0).reshape(2, 3), "b": torch.ones(4)}
    save_file(tensors, str(shard))
    with inputs_read_per_tensor():
        loader = TensorLoader.get(str(shard))
        assert sorted(loader.keys()) == ["a", "b"]
        assert all(torch.equal(loader.get_tensor(name), value) for name, value in tensors.items())
    assert TensorLoader.__dict__["get"] is original
