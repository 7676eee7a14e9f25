"""The mergekit internals llmcourse touches (`llmcourse.merge.compat`): fails when a release changes them."""

from __future__ import annotations

import inspect

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
