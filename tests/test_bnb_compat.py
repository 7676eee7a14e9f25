"""The bitsandbytes behaviour `finetune/bnb_compat.py` guards against, and the guard."""

from __future__ import annotations

import pytest

bnb = pytest.importorskip("bitsandbytes", reason="pip install 'llmcourse[bnb]'")


def _biased_4bit_layer():
    import torch

    layer = bnb.nn.Linear4bit(64, 64, bias=True, compute_dtype=torch.float32, quant_type="nf4")
    layer.load_state_dict(torch.nn.Linear(64, 64).state_dict())
    return layer.to("cpu")


def test_the_switch_exists_on_4bit_layers() -> None:
    from llmcourse.finetune.bnb_compat import SWITCH

    assert hasattr(_biased_4bit_layer(), SWITCH), "bitsandbytes changed Linear4bit: revisit finetune/bnb_compat.py"


def test_an_eval_pass_no_longer_breaks_training() -> None:
    import torch

    from llmcourse.finetune.bnb_compat import keep_4bit_layers_trainable

    model = torch.nn.Sequential(_biased_4bit_layer())
    assert keep_4bit_layers_trainable(model) == 1
    x = torch.randn(3, 64)
    model.eval()
    with torch.no_grad():
        model(x)
    model.train()
    inputs = torch.randn(3, 64, requires_grad=True)
    model(inputs).sum().backward()  # raised "a view of a leaf Variable..." on AVX512-BF16 CPUs before the guard
    assert inputs.grad is not None and inputs.grad.abs().sum() > 0, "gradients flow through the frozen 4-bit weight"
