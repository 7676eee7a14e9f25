"""A random Llama of a chosen size with the lab tokenizer, saved locally: the benchmarks' big model."""

from __future__ import annotations

from pathlib import Path


def build_random_llama(folder: Path, hidden: int, layers: int, seed: int = 0) -> tuple[int, float]:
    """Save a random Llama (intermediate 2.75 × hidden, 64-dim heads, GQA 2:1) and the lab tokenizer
    into `folder` as safetensors; returns (parameters, weight MB). Builds the lab base if needed."""
    from transformers import AutoTokenizer

    from llmcourse.lab.model import count_parameters, init_model, llama_config
    from llmcourse.finetune.pretrain import build_lab as build

    tokenizer = AutoTokenizer.from_pretrained(build([])["path"])
    config = llama_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, hidden_size=hidden,
                          intermediate_size=int(hidden * 2.75), num_hidden_layers=layers, num_attention_heads=hidden // 64,
                          num_key_value_heads=hidden // 128, max_position_embeddings=256)
    model = init_model(config, seed=seed)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return count_parameters(model), sum(p.stat().st_size for p in folder.glob("*.safetensors")) / 1e6
