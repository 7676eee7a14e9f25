"""`llmcourse sft`: full, LoRA and QLoRA fine-tuning with TRL's SFTTrainer.

We tokenize ourselves (any chat template, loss only on assistant turns unless `train_on_inputs`)
and hand TRL a pre-tokenized dataset; TRL does packing (padding-free BFD), loss masking and the
loop. Outputs follow the Hugging Face layout; adapters can be merged at the end.
"""

from __future__ import annotations

import importlib.util
import resource
import signal
import time
from pathlib import Path
from typing import Any

from llmcourse.console import err
from llmcourse.data import check_source, is_lab
from llmcourse.errors import Interrupted, UserError
from llmcourse.finetune import data as sft_data
from llmcourse.finetune.adapters import attach_lora, load_base
from llmcourse.finetune.templates import prepare_chat_template, stop_token_ids
from llmcourse.modelio import check_model_source, load_tokenizer, looks_like_local_path
from llmcourse.outputs import MetricsLog, atomic_output, check_output_free, partial_path
from llmcourse.recipes.sft import SftRecipe

DEEPSPEED_PRESETS = ("zero1", "zero2", "zero3")


def preflight(recipe: SftRecipe) -> None:
    """Checks that need no heavy import: model and dataset paths, distributed presets."""
    check_model_source(recipe.base_model, recipe.allow_pickle)
    if recipe.tokenizer and looks_like_local_path(recipe.tokenizer) and not Path(recipe.tokenizer).expanduser().is_dir():
        raise UserError(f"tokenizer: folder not found: {recipe.tokenizer}", hint="pass a tokenizer folder or a hub id")
    for index, source in enumerate(recipe.datasets):
        check_source(source, f"datasets.{index}")
    if recipe.deepspeed and recipe.deepspeed not in DEEPSPEED_PRESETS and not Path(recipe.deepspeed).exists():
        raise UserError(f"deepspeed: '{recipe.deepspeed}' is neither a preset ({', '.join(DEEPSPEED_PRESETS)}) nor a JSON file")
    if recipe.deepspeed and importlib.util.find_spec("deepspeed") is None:
        raise UserError("deepspeed: the deepspeed package is not installed", hint="pip install deepspeed (GPU clusters only)")
    if recipe.hub_model_id:
        err.print(f"[yellow]warning:[/] hub_model_id: llmcourse does not push; upload the output with "
                  f"`hf upload {recipe.hub_model_id} OUTPUT_DIR`")


def prepare_tokenizer(recipe: SftRecipe) -> tuple[Any, str, list[str]]:
    """The tokenizer with the recipe's chat template and special tokens installed."""
    tokenizer = load_tokenizer(recipe.tokenizer or check_model_source(recipe.base_model, recipe.allow_pickle), recipe.trust_remote_code)
    added: list[str] = []
    for role, token in recipe.special_tokens.items():
        if getattr(tokenizer, f"{role}_token", None) != token:
            if token not in tokenizer.get_vocab():
                added.append(token)
            tokenizer.add_special_tokens({f"{role}_token": token})
    template, template_tokens = prepare_chat_template(tokenizer, recipe.chat_template)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, template, added + template_tokens


def deepspeed_config(name: str | None) -> str | None:
    """A shipped DeepSpeed preset's path, or the user's JSON file."""
    if not name:
        return None
    if name in DEEPSPEED_PRESETS:
        return str(Path(__file__).parent / "presets" / f"ds_{name}.json")
    return name


def sft_config(recipe: SftRecipe, folder: Path, has_eval: bool, steps_per_epoch: int) -> Any:
    """TRL's SFTConfig from the recipe: the shared loop settings plus packing and checkpointing."""
    import torch
    from trl import SFTConfig

    from llmcourse.training import training_kwargs

    t = recipe.train
    kwargs = training_kwargs(t, str(folder / "checkpoints"), has_eval)
    save_steps = t.save_steps or (max(1, steps_per_epoch // t.saves_per_epoch) if t.saves_per_epoch else None)
    if save_steps:
        kwargs.update(save_strategy="steps", save_steps=save_steps)
    if t.evals_per_epoch and has_eval:
        kwargs.update(eval_strategy="steps", eval_steps=max(1, steps_per_epoch // t.evals_per_epoch))
    liger = recipe.liger and torch.cuda.is_available() and importlib.util.find_spec("liger_kernel") is not None
    if recipe.liger and not liger:
        err.print("[yellow]warning:[/] liger: true needs a GPU and the liger-kernel package; training without it")
    tf32 = torch.cuda.is_available() if t.tf32 == "auto" else bool(t.tf32) and torch.cuda.is_available()
    return SFTConfig(
        **kwargs,
        max_length=recipe.sequence_len,
        packing=recipe.sample_packing,
        packing_strategy="bfd",
        include_num_input_tokens_seen="non_padding",
        use_liger_kernel=liger,
        tf32=tf32 or None,
        deepspeed=deepspeed_config(recipe.deepspeed),
        fsdp=recipe.fsdp or "",
        save_only_model=False,
    )


def latest_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` under the partial output's checkpoints folder."""
    checkpoints = sorted((folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def interrupt_callback() -> Any:
    """A callback that turns Ctrl-C into 'save a checkpoint and stop' instead of a lost run."""
    from transformers import TrainerCallback

    class StopOnInterrupt(TrainerCallback):
        def __init__(self) -> None:
            self.requested = False
            self.previous = signal.signal(signal.SIGINT, self._request)

        def _request(self, signum: int, frame: Any) -> None:
            self.requested = True
            err.print("\n[yellow]interrupt: saving a checkpoint, then stopping (Ctrl-C again to abort)[/]")
            signal.signal(signal.SIGINT, self.previous)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.requested:
                control.should_save = True
                control.should_training_stop = True

        def restore(self) -> None:
            signal.signal(signal.SIGINT, self.previous)

    return StopOnInterrupt()


def lab_skills_of(recipe: SftRecipe) -> list[str]:
    """The lab skills among the recipe's datasets, scored at the end of training."""
    from llmcourse.lab.skills import iter_skill_names

    names: list[str] = []
    for source in recipe.datasets:
        if is_lab(source.path) and source.path != "lab://corpus":
            names += [n for n in iter_skill_names(source.path.removeprefix("lab://")) if n not in names]
    return names


def peak_memory_mb() -> float:
    """Peak resident memory of this process (and peak CUDA allocation when on a GPU), in MB."""
    import torch

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if torch.cuda.is_available():
        return round(max(rss, torch.cuda.max_memory_allocated() / 2**20), 1)
    return round(rss, 1)


def check_output_or_checkpoint(output: Path, overwrite: bool, resume: bool) -> None:
    """A fresh run needs a free output; `--resume` needs a checkpoint in the partial one."""
    if not resume:
        check_output_free(output, overwrite)
    elif not latest_checkpoint(partial_path(output)):
        raise UserError(f"--resume: no checkpoint in {partial_path(output) / 'checkpoints'}",
                        hint="checkpoints are written every train.save_steps; start without --resume")


def load_model_for(recipe: SftRecipe, tokenizer: Any, template: str) -> Any:
    """The base, quantized as asked, with room for added tokens and the template's stop tokens."""
    model = load_base(recipe)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    model.generation_config.eos_token_id = stop_token_ids(tokenizer, template)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    return model


def run(recipe: SftRecipe, overwrite: bool = False, resume: bool = False) -> dict[str, Any]:
    """Fine-tune the base on the recipe's data; returns the summary written to `report.json`."""
    preflight(recipe)
    output = Path(recipe.output_dir or "outputs/sft")
    check_output_or_checkpoint(output, overwrite, resume)
    from llmcourse.training import quiet_libraries, quiet_trainer, trainer_callbacks

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
    encoded = sft_data.encode_all(tokenizer, sft_data.load_examples(recipe), recipe.sequence_len, recipe.train_on_inputs)
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
        callbacks = [stopper] + (trainer_callbacks(metrics, "sft") if metrics else [])
        config = sft_config(recipe, folder, bool(eval_rows), steps_per_epoch)
        trainer = SFTTrainer(
            model=model, args=config,
            train_dataset=Dataset.from_list(train_rows), eval_dataset=Dataset.from_list(eval_rows) if eval_rows else None,
            processing_class=tokenizer, callbacks=callbacks,
        )
        if recipe.sample_packing and getattr(model.config, "_attn_implementation", "") != "flash_attention_2":
            from llmcourse.finetune.packing import row_packed_collator

            # TRL refuses a custom collator with its padding-free packing, so it is swapped in afterwards.
            trainer.data_collator = row_packed_collator(tokenizer.pad_token_id, config.pad_to_multiple_of)
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
    return summary
