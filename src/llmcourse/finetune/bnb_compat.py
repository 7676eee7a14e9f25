"""bitsandbytes internals that training a 4-bit base on a CPU depends on (checked: bitsandbytes 0.50).

On a CPU with AVX512-BF16, `Linear4bit.forward` repacks its weight for a faster inference kernel
the first time it runs outside training mode (an evaluation pass), and keeps that layout: training
forwards after it go through a kernel that adds the bias in place (RuntimeError on biased models
such as Qwen 2) and has no backward. Training must never take that path, so the switch
`support_avx512bf16_for_cpu` is turned off on every 4-bit layer of a model being trained.
`tests/test_bnb_compat.py` fails when bitsandbytes renames or drops it.
"""

from __future__ import annotations

from typing import Any

CHECKED = "0.50.2"
SWITCH = "support_avx512bf16_for_cpu"


def keep_4bit_layers_trainable(model: Any) -> int:
    """Turn off the CPU inference repacking on every 4-bit layer of `model`; returns how many."""
    import bitsandbytes as bnb

    layers = [module for module in model.modules() if isinstance(module, bnb.nn.Linear4bit)]
    for layer in layers:
        if not hasattr(layer, SWITCH):
            raise RuntimeError(f"bitsandbytes {bnb.__version__}: Linear4bit has no '{SWITCH}' (checked with {CHECKED}); "
                               "see llmcourse/finetune/bnb_compat.py")
        setattr(layer, SWITCH, False)
    return len(layers)
