"""`llmcourse sft`: full, LoRA and QLoRA fine-tuning with TRL's SFTTrainer.

We tokenize ourselves (any chat template, loss only on assistant turns unless `train_on_inputs`)
and hand TRL a pre-tokenized dataset; TRL runs the loop. With `sample_packing` we pack rows in the
shuffled order (`finetune.packing`) for SDPA attention; with flash-attention TRL packs (padding-free,
best-fit decreasing) for its varlen kernels. Outputs follow the Hugging Face layout; adapters can be merged at the end.
"""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.errors import Interrupted, UserError
from llmcourse.finetune import data as sft_data
from llmcourse.finetune.adapters import attach_lora
from llmcourse.finetune.common import (
    check_output_or_checkpoint, interrupt_callback, lab_skills_of, latest_checkpoint, load_model_for, prepare_tokenizer, push_output,
)
from llmcourse.finetune.sources import check_source
from llmcourse.finetune.trackers import check_reporters, report_settings
from llmcourse.core.modelio import check_model_source, hub_offline, looks_like_local_path
from llmcourse.core.outputs import MetricsLog, atomic_output
from llmcourse.recipes.sft import SftRecipe

DEEPSPEED_PRESETS = ("zero1", "zero2", "zero3")

def preflight(recipe: SftRecipe) -> None:
    """Checks that need no heavy import: model and dataset paths, distributed presets."""
    check_model_source(recipe.base_model, recipe.allow_pickle)
    if recipe.tokenizer and looks_like_local_path(recipe.tokenizer) and not Path(recipe.tokenizer).expanduser().is_dir():
        raise UserError(f"tokenizer: folder not found: {recipe.tokenizer}", hint="pass a tokenizer folder or a hub id")
    for index, source in enumerate(recipe.datasets):
        check_source(source, f"datasets.{index}")
    if recipe.deepspeed and deepspeed_preset(recipe.deepspeed) is None and not Path(recipe.deepspeed).exists():
        raise UserError(f"deepspeed: '{recipe.deepspeed}' is neither a preset ({', '.join(DEEPSPEED_PRESETS)}) nor a JSON file")
    if recipe.deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise UserError("deepspeed: the deepspeed package is not installed", hint="pip install deepspeed (GPU clusters only)")
    optimizer = recipe.train.optimizer
    if any(part in optimizer for part in ("bnb", "8bit", "paged", "lion_")) and importlib.util.find_spec("bitsandbytes") is None:
        raise UserError(f"optimizer: {optimizer} is a bitsandbytes optimizer, and bitsandbytes is not installed",
                        hint="pip install 'llmcourse[bnb]', or optimizer: adamw_torch")
    check_reporters(recipe)
    if recipe.hub_model_id and hub_offline():
        raise UserError("hub_model_id: HF_HUB_OFFLINE is set, so the output could not be pushed", hint="unset HF_HUB_OFFLINE, or remove hub_model_id")


def deepspeed_preset(name: str) -> str | None:
    """Our preset for `name`: a preset's own name, or Axolotl's `deepspeed_configs/zeroN*.json` when
    that file is not here (its ZeRO stage; the preset has no CPU offload)."""
    if name in DEEPSPEED_PRESETS:
        return name
    stem = Path(name).stem
    if Path(name).parent.name == "deepspeed_configs" and not Path(name).exists() and stem[:5] in DEEPSPEED_PRESETS:
        return stem[:5]
    return None


def deepspeed_config(name: str | None) -> str | None:
    """A shipped DeepSpeed preset's path, or the user's JSON file."""
    if not name:
        return None
    preset = deepspeed_preset(name)
    if preset:
        if preset != name:
            err.print(f"[yellow]note:[/] deepspeed: {name} is not here; using the {preset} preset (ZeRO stage {preset[-1]}, no offload)")
        return str(Path(__file__).parent / "presets" / f"ds_{preset}.json")
    return name


def packs_rows_itself(recipe: SftRecipe) -> bool:
    """Whether we pack (one row per packed sequence, for SDPA) rather than TRL (one flattened row
    per batch, for flash-attention's varlen kernels)."""
    from llmcourse.finetune.adapters import attention_implementation

    return recipe.sample_packing and attention_implementation(recipe.attn_implementation) != "flash_attention_2"


def sft_config(recipe: SftRecipe, folder: Path, has_eval: bool, steps_per_epoch: int) -> Any:
    """TRL's SFTConfig from the recipe: the shared loop settings plus packing and checkpointing."""
    import torch
    from trl import SFTConfig

    from llmcourse.finetune.common import training_kwargs
    from llmcourse.finetune.trainer_options import passed_through

    t = recipe.train
    kwargs = {**training_kwargs(t, str(folder / "checkpoints"), has_eval), **report_settings(recipe)}
    save_steps = t.save_steps or (max(1, steps_per_epoch // t.saves_per_epoch) if t.saves_per_epoch else None)
    if save_steps:
        kwargs.update(save_strategy="steps", save_steps=save_steps, save_total_limit=t.save_total_limit)
    if t.evals_per_epoch and has_eval:
        kwargs.update(eval_strategy="steps", eval_steps=max(1, steps_per_epoch // t.evals_per_epoch))
    kwargs.update(passed_through(recipe, has_eval))
    liger = recipe.liger and torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None
    if recipe.liger and not liger:
        err.print("[yellow]warning:[/] liger: true needs a GPU and the liger-kernel package; training without it")
    tf32 = torch.cuda.is_available() if t.tf32 == "auto" else bool(t.tf32) and torch.cuda.is_available()
    return SFTConfig(
        **kwargs,
        max_length=recipe.sequence_len,
        packing=recipe.sample_packing and not packs_rows_itself(recipe),
        packing_strategy="bfd",
        include_num_input_tokens_seen="non_padding",
        use_liger_kernel=liger,
        tf32=tf32 or None,
        deepspeed=deepspeed_config(recipe.deepspeed),
        save_only_model=False,
    )


def run(recipe: SftRecipe, overwrite: bool = False, resume: bool = False, callbacks: list[Any] | None = None) -> dict[str, Any]:
    """Fine-tune the base on the recipe's data; returns the summary written to `report.json`.

    `callbacks`: more transformers `TrainerCallback`s for the run (the benchmarks watch held-out loss).
    """
    preflight(recipe)
    output = Path(recipe.output_dir or "outputs/sft")
    check_output_or_checkpoint(output, overwrite, resume)
    from llmcourse.core.libraries import quiet_libraries
    from llmcourse.finetune.common import end_token_ids, quiet_trainer, trainer_callbacks
    from llmcourse.finetune.trainer_options import early_stopping

    quiet_libraries()
    import torch
    from accelerate import PartialState
    from datasets import Dataset
    from trl import SFTTrainer

    from llmcourse.finetune.sft_report import finish
    state = PartialState(cpu=not torch.cuda.is_available())
    started = time.perf_counter()
    if state.is_main_process:
        err.print(f"[bold]sft[/] {recipe.base_model} → {output} ({recipe.adapter if recipe.adapter != 'none' else 'full'})")
    tokenizer, template, added = prepare_tokenizer(recipe)
    end_tokens = (recipe.train_on_eos, end_token_ids(tokenizer, recipe, template))
    encoded = sft_data.encode_all(tokenizer, sft_data.load_examples(recipe), recipe.sequence_len, recipe.train_on_inputs, end_tokens)
    train_rows, eval_rows = sft_data.split_eval(encoded.rows, recipe.val_set_size, recipe.train.seed)
    if encoded.truncated and state.is_main_process:
        err.print(f"[yellow]note:[/] {encoded.truncated} example(s) longer than sequence_len={recipe.sequence_len} were truncated"
                  + (f", {encoded.dropped} dropped (nothing left to learn)" if encoded.dropped else ""))
    model = load_model_for(recipe, tokenizer, template)
    if recipe.adapter != "none":
        model = attach_lora(model, recipe, added_tokens=bool(added))
    batch = recipe.train.micro_batch_size * recipe.train.gradient_accumulation_steps * state.num_processes
    steps_per_epoch = max(1, len(train_rows) // batch)

    with atomic_output(output, overwrite, resume=resume, main_process=state.is_main_process) as folder:
        state.wait_for_everyone()
        metrics = MetricsLog(folder / "metrics.jsonl") if state.is_main_process else None
        stopper = interrupt_callback()
        callbacks = [stopper] + (trainer_callbacks(metrics, "sft") if metrics else []) + early_stopping(recipe) + list(callbacks or [])
        config = sft_config(recipe, folder, bool(eval_rows), steps_per_epoch)
        train_data = Dataset.from_list(train_rows)
        eval_data = Dataset.from_list(eval_rows) if eval_rows else None
        collator = None
        if packs_rows_itself(recipe):
            from llmcourse.finetune.packing import pack_rows, row_packed_collator

            seed = config.seed if config.shuffle_dataset else None
            open_rows = 1 if recipe.sample_packing_sequentially else 8
            train_data = pack_rows(train_rows, recipe.sequence_len, seed, open_rows, recipe.sample_packing_bin_size)
            if eval_rows and config.eval_packing is not False:
                eval_data = pack_rows(eval_rows, recipe.sequence_len, seed, open_rows, recipe.sample_packing_bin_size)
            collator = row_packed_collator(tokenizer.pad_token_id, config.pad_to_multiple_of)
        trainer = SFTTrainer(model=model, args=config, data_collator=collator, train_dataset=train_data, eval_dataset=eval_data,
                             processing_class=tokenizer, callbacks=callbacks)
        quiet_trainer(trainer)
        checkpoint = latest_checkpoint(folder) if resume else recipe.resume_from_checkpoint
        try:
            result = trainer.train(resume_from_checkpoint=checkpoint)
        finally:
            stopper.restore()
        if stopper.requested:
            raise Interrupted(
                f"stopped at step {trainer.state.global_step}; a checkpoint is in {folder / 'checkpoints'}. "
                f"Resume with the same command plus --resume."
            )
        summary = finish(recipe, trainer, result, tokenizer, folder, encoded, eval_rows, lab_skills_of(recipe),
                         template, started, state.is_main_process)
    summary["output_dir"] = str(output)
    if recipe.hub_model_id and state.is_main_process:
        summary["pushed"] = push_output(output, recipe)
    return summary
