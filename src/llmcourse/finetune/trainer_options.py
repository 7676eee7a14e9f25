"""Axolotl's trainer keys that go to transformers' TrainingArguments under their own names, and
early stopping: shared by `sft` and `dpo`."""

from __future__ import annotations

from typing import Any

from llmcourse.core.errors import UserError
from llmcourse.recipes.sft import SftRecipe


def passed_through(recipe: SftRecipe, has_eval: bool) -> dict[str, Any]:
    """TrainingArguments keywords for the recipe's pass-through keys (only those that are set)."""
    t = recipe.train
    kwargs: dict[str, Any] = {}
    for key in ("ddp_find_unused_parameters", "accelerator_config", "gradient_checkpointing_kwargs"):
        if getattr(t, key) is not None:
            kwargs[key] = getattr(t, key)
    if t.remove_unused_columns is not None:
        kwargs["remove_unused_columns"] = False
    if recipe.fsdp:  # Axolotl writes a list ([full_shard, auto_wrap]); transformers takes them space-separated
        kwargs["fsdp"] = " ".join(recipe.fsdp) if isinstance(recipe.fsdp, list) else recipe.fsdp
    if recipe.fsdp_config:
        kwargs["fsdp_config"] = dict(recipe.fsdp_config)
    if t.save_strategy in ("no", "epoch"):
        kwargs["save_strategy"] = t.save_strategy
    if t.early_stopping_patience:
        if not has_eval:
            raise UserError("early_stopping_patience: needs held-out data to watch", hint="set val_set_size (e.g. 0.05)")
        kwargs.update(metric_for_best_model="eval_loss", greater_is_better=False)
    return kwargs


def early_stopping(recipe: SftRecipe) -> list[Any]:
    """transformers' EarlyStoppingCallback when the recipe asks for it (none otherwise)."""
    if not recipe.train.early_stopping_patience:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=recipe.train.early_stopping_patience)]
