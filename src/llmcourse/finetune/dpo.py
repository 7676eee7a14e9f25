"""`llmcourse dpo` / `orpo`: preference tuning with TRL (DPOTrainer; ORPO and SimPO from trl.experimental).

The recipe is the SFT recipe plus preference keys; pairs are normalised to conversational form and
TRL applies the chat template and left-pads the prompts. With LoRA and no `ref_model`, the
reference is the base with the adapter disabled (no second copy in memory).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

from llmcourse.core.console import err
from llmcourse.core.errors import Interrupted, UserError
from llmcourse.core.modelio import check_model_source
from llmcourse.core.outputs import MetricsLog, atomic_output
from llmcourse.recipes.dpo import DpoRecipe

# rl -> builder of (trainer class, config) from the recipe and the shared TrainingArguments kwargs.
PREFERENCE_TRAINERS: dict[str, Callable[[DpoRecipe, dict[str, Any]], tuple[Any, Any]]] = {}


def register_trainer(*names: str) -> Callable:
    """Register the builder of TRL trainer + config for the given `rl` values."""

    def wrap(builder: Callable) -> Callable:
        for name in names:
            PREFERENCE_TRAINERS[name] = builder
        return builder

    return wrap


@register_trainer("dpo", "ipo")
def _dpo_trainer(recipe: DpoRecipe, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from trl import DPOConfig, DPOTrainer

    loss_type, loss_weights = recipe.dpo_losses
    config = DPOConfig(
        **kwargs, beta=recipe.beta, loss_type=loss_type, loss_weights=loss_weights,
        label_smoothing=recipe.label_smoothing, use_weighting=recipe.use_weighting, max_length=recipe.sequence_limit,
        precompute_ref_log_probs=recipe.precompute_ref_log_probs, gradient_checkpointing=recipe.train.gradient_checkpointing,
    )
    return DPOTrainer, config


@register_trainer("orpo")
def _orpo_trainer(recipe: DpoRecipe, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    return ORPOTrainer, ORPOConfig(**kwargs, beta=recipe.beta, max_length=recipe.sequence_limit)


@register_trainer("simpo")
def _simpo_trainer(recipe: DpoRecipe, kwargs: dict[str, Any]) -> tuple[Any, Any]:
    from trl.experimental.cpo import CPOConfig, CPOTrainer

    config = CPOConfig(**kwargs, loss_type="simpo", cpo_alpha=recipe.sft_weight, beta=recipe.beta,
                       simpo_gamma=recipe.simpo_gamma, label_smoothing=recipe.label_smoothing, max_length=recipe.sequence_limit)
    return CPOTrainer, config


def preflight(recipe: DpoRecipe) -> None:
    """Checks that need no heavy import (paths, presets), then the reference model's source."""
    from llmcourse.finetune.sft import preflight as sft_preflight

    sft_preflight(recipe)
    if recipe.ref_model:
        check_model_source(recipe.ref_model, recipe.allow_pickle)


def load_reference(recipe: DpoRecipe, policy: Any) -> Any:
    """The explicit reference model (frozen, in eval mode), or None for the implicit one."""
    if not recipe.ref_model:
        return None
    from transformers import AutoModelForCausalLM

    source = check_model_source(recipe.ref_model, recipe.allow_pickle)
    try:
        model = AutoModelForCausalLM.from_pretrained(source, dtype=policy.dtype, trust_remote_code=recipe.trust_remote_code,
                                                     use_safetensors=None if recipe.allow_pickle else True)
    except (OSError, ValueError) as exc:
        raise UserError(f"ref_model: cannot load '{recipe.ref_model}': {str(exc).splitlines()[0]}") from exc
    return model.eval().requires_grad_(False)


def run(recipe: DpoRecipe, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Preference-tune the model on the recipe's pairs; returns the summary written to `report.json`."""
    preflight(recipe)
    output = Path(recipe.output_dir or "outputs/dpo")
    from llmcourse.finetune.common import (
        check_output_or_checkpoint, interrupt_callback, latest_checkpoint, load_model_for, prepare_tokenizer,
    )

    check_output_or_checkpoint(output, overwrite, resume)
    from llmcourse.core.libraries import quiet_libraries
    from llmcourse.finetune.common import quiet_trainer, trainer_callbacks, training_kwargs

    quiet_libraries()
    import torch
    from accelerate import PartialState
    from datasets import Dataset

    from llmcourse.finetune.adapters import attach_lora
    from llmcourse.finetune.dpo_report import finish, measure
    from llmcourse.finetune.preference_data import load_pairs

    state = PartialState(cpu=not torch.cuda.is_available())
    started = time.perf_counter()
    if state.is_main_process:
        err.print(f"[bold]{recipe.rl}[/] {recipe.base_model} → {output} ({recipe.adapter if recipe.adapter != 'none' else 'full'})")
    tokenizer, template, added = prepare_tokenizer(recipe)
    pairs = load_pairs(recipe, tokenizer)
    model = load_model_for(recipe, tokenizer, template)
    before = measure(recipe, model, tokenizer, pairs.eval) if state.is_main_process else ({}, [])
    if recipe.adapter != "none":
        model = attach_lora(model, recipe, added_tokens=bool(added))
    reference = load_reference(recipe, model)

    with atomic_output(output, overwrite, resume=resume, main_process=state.is_main_process) as folder:
        state.wait_for_everyone()
        from llmcourse.finetune.trackers import report_settings
        from llmcourse.finetune.trainer_options import early_stopping, passed_through

        kwargs = {**training_kwargs(recipe.train, str(folder / "checkpoints"), bool(pairs.eval)), **report_settings(recipe)}
        if recipe.train.save_steps:
            kwargs.update(save_strategy="steps", save_steps=recipe.train.save_steps)
        kwargs.update(passed_through(recipe, bool(pairs.eval)))
        trainer_class, config = PREFERENCE_TRAINERS[recipe.rl](recipe, kwargs)
        metrics = MetricsLog(folder / "metrics.jsonl") if state.is_main_process else None
        stopper = interrupt_callback()
        callbacks = [stopper] + (trainer_callbacks(metrics, recipe.rl) if metrics else []) + early_stopping(recipe)
        extra = {"ref_model": reference} if recipe.rl in ("dpo", "ipo") else {}
        trainer = trainer_class(
            model=model, args=config, train_dataset=Dataset.from_list(pairs.train),
            eval_dataset=Dataset.from_list(pairs.eval) if pairs.eval else None,
            processing_class=tokenizer, callbacks=callbacks, **extra,
        )
        quiet_trainer(trainer)
        try:
            result = trainer.train(resume_from_checkpoint=latest_checkpoint(folder) if resume else recipe.resume_from_checkpoint)
        finally:
            stopper.restore()
        if stopper.requested:
            raise Interrupted(f"stopped at step {trainer.state.global_step}; a checkpoint is in {folder / 'checkpoints'}. "
                              f"Resume with the same command plus --resume.")
        summary = finish(recipe, trainer, result, tokenizer, folder, pairs, before, template, started, state.is_main_process)
    summary["output_dir"] = str(output)
    if recipe.hub_model_id and state.is_main_process:
        from llmcourse.finetune.common import push_output

        summary["pushed"] = push_output(output, recipe)
    return summary
