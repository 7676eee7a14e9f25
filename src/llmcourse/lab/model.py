"""The tiny Llama-architecture model factory."""

from __future__ import annotations

from typing import Any


def llama_config(vocab_size: int, eos_token_id: int, pad_token_id: int, **dims: Any):
    """A `LlamaConfig` with the lab's special-token ids and the given dimensions."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab_size,
        bos_token_id=eos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        **dims,
    )


def init_model(config: Any, seed: int):
    """A freshly initialised causal LM for `config`, identical for the same seed on CPU."""
    import torch
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config)


def count_parameters(model: Any) -> int:
    """Number of parameters in a torch module."""
    return sum(p.numel() for p in model.parameters())
