"""Shared by pretrain, sft and dpo: the tokenizer and model a recipe asks for, Trainer arguments,
a rich progress bar and `metrics.jsonl`, checkpoints, resume and Ctrl-C."""

from __future__ import annotations

import resource
import signal
import time
from pathlib import Path
from typing import Any

from llmcourse.core.chat_templates import prepare_chat_template, stop_token_ids
from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.core.modelio import check_model_source, load_tokenizer
from llmcourse.core.outputs import MetricsLog, check_output_free, partial_path
from llmcourse.finetune.adapters import load_base
from llmcourse.finetune.sources import is_lab
from llmcourse.recipes.common import TrainSection
from llmcourse.recipes.sft import SftRecipe


def trainer_callbacks(metrics: MetricsLog, description: str) -> list[Any]:
    """Instances of the progress and metrics callbacks (transformers is imported lazily)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
    from transformers import TrainerCallback

    class RichProgress(TrainerCallback):
        """A rich progress bar over optimizer steps, showing the latest loss and learning rate."""

        def __init__(self) -> None:
            self.progress: Progress | None = None
            self.task: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                console=err, transient=False,
            )
            self.progress.start()
            self.task = self.progress.add_task(description, total=state.max_steps, stats="")

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if self.progress is None or not logs:
                return
            names = {"loss": "loss", "eval_loss": "eval loss", "learning_rate": "lr", "train_tokens_per_second": "tok/s",
                     "rewards/chosen": "r_chosen", "rewards/rejected": "r_rejected", "rewards/accuracies": "reward acc",
                     "rewards/margins": "margin"}
            stats = "  ".join(
                f"{names[key]}={value:.4g}" for key, value in logs.items()
                if key in names and isinstance(value, (int, float))
            )
            if stats:
                self.progress.update(self.task, stats=stats)

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.progress is not None:
                self.progress.update(self.task, completed=state.global_step)
                self.progress.stop()
                self.progress = None

    class MetricsWriter(TrainerCallback):
        """Every Trainer log record, with step, epoch and wall time, appended to metrics.jsonl."""

        def __init__(self) -> None:
            self.start = time.perf_counter()

        def on_log(self, args: Any, state: Any, control: Any, logs: dict | None = None, **kwargs: Any) -> None:
            if logs:
                record = {"step": state.global_step, "epoch": state.epoch, "time_s": round(time.perf_counter() - self.start, 3)}
                record.update(logs)
                metrics.write(record)

    return [RichProgress(), MetricsWriter()]


def quiet_trainer(trainer: Any) -> None:
    """Remove transformers' own console printers (our callbacks replace them)."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _resolve_precision(flag: Any, supported: bool) -> bool:
    return bool(supported) if flag == "auto" else bool(flag) and supported


def training_kwargs(t: TrainSection, output_dir: str, has_eval: bool) -> dict[str, Any]:
    """Keyword arguments for `TrainingArguments` (or TRL's configs) from a recipe's train section.

    Precision `auto` means bf16 on a GPU that supports it and fp32 on the CPU; checkpoints are not
    saved mid-run (the output folder is written once, atomically).
    """
    import torch

    cuda = torch.cuda.is_available()
    bf16 = _resolve_precision(t.bf16, cuda and torch.cuda.is_bf16_supported())
    return dict(
        output_dir=output_dir,
        max_steps=t.max_steps,
        num_train_epochs=t.num_epochs,
        per_device_train_batch_size=t.micro_batch_size,
        per_device_eval_batch_size=t.micro_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        lr_scheduler_type=t.lr_scheduler,
        warmup_steps=t.warmup_ratio if t.warmup_ratio > 0 else t.warmup_steps,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        optim=t.optimizer,
        adam_beta1=t.adam_beta1,
        adam_beta2=t.adam_beta2,
        adam_epsilon=t.adam_epsilon,
        train_sampling_strategy="group_by_length" if t.group_by_length else "random",  # transformers 5: a sampler choice
        torch_compile=t.torch_compile,
        logging_steps=t.logging_steps,
        eval_strategy="steps" if (t.eval_steps and has_eval) else "no",
        eval_steps=t.eval_steps,
        save_strategy="no",
        report_to="none",
        seed=t.seed,
        data_seed=t.seed,
        bf16=bf16,
        fp16=_resolve_precision(t.fp16, cuda) and not bf16,
        activation_checkpointing=t.gradient_checkpointing,
        disable_tqdm=True,
        use_cpu=not cuda,
        dataloader_num_workers=0,
    )


def last_logged(history: list[dict], key: str = "loss") -> float:
    """The most recent value of `key` in a Trainer's log history (NaN if it was never logged)."""
    values = [row[key] for row in history if key in row]
    return float(values[-1]) if values else float("nan")


def prepare_tokenizer(recipe: SftRecipe) -> tuple[Any, str, list[str]]:
    """The tokenizer with the recipe's chat template and special tokens installed."""
    tokenizer = load_tokenizer(recipe.tokenizer or check_model_source(recipe.base_model, recipe.allow_pickle), recipe.trust_remote_code)
    added: list[str] = []
    for role, token in recipe.special_tokens.items():
        if getattr(tokenizer, f"{role}_token", None) != token:
            if token not in tokenizer.get_vocab():
                added.append(token)
            tokenizer.add_special_tokens({f"{role}_token": token})
    new_tokens = [token for token in recipe.tokens if token not in tokenizer.get_vocab()]
    if new_tokens:  # Axolotl's `tokens`: whole tokens of their own, with new embedding rows
        tokenizer.add_tokens(new_tokens)
        added += new_tokens
    missing_eot = [token for token in recipe.eot_tokens if token not in tokenizer.get_vocab()]
    if missing_eot:  # Axolotl's eot_tokens: each must be one token, to be learned and to stop generation
        tokenizer.add_special_tokens({"additional_special_tokens": missing_eot}, replace_extra_special_tokens=False)
        added += missing_eot
    template, template_tokens = prepare_chat_template(tokenizer, recipe.chat_template, recipe.chat_template_jinja)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, template, added + template_tokens


def end_token_ids(tokenizer: Any, recipe: SftRecipe, template: str) -> set[int]:
    """Ids that end a turn: EOS, the template's end-of-turn token and the recipe's `eot_tokens`."""
    return set(stop_token_ids(tokenizer, template)) | {tokenizer.convert_tokens_to_ids(t) for t in recipe.eot_tokens}


def load_model_for(recipe: SftRecipe, tokenizer: Any, template: str) -> Any:
    """The base, quantized as asked, with room for added tokens and the template's stop tokens."""
    model = load_base(recipe)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=32 if recipe.resize_token_embeddings_to_32x else None)
    model.generation_config.eos_token_id = sorted(end_token_ids(tokenizer, recipe, template))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    if recipe.unfrozen_parameters is not None:
        freeze_all_but(model, recipe.unfrozen_parameters)
    return model


def freeze_all_but(model: Any, patterns: list[str]) -> int:
    """Train only the parameters whose names match one of `patterns` (`re.match`, as Axolotl's
    `unfrozen_parameters`), and of a parameter matched only by entries with a row range
    (`...weight$[:256]`), only those rows: the other rows' gradients are zeroed, as Axolotl does.
    Returns how many parameters stay trainable."""
    import re

    from llmcourse.recipes.sft import split_row_range

    entries = [split_row_range(pattern) for pattern in patterns]
    trainable = 0
    for name, parameter in model.named_parameters():
        ranges = [rows for regex, rows in entries if re.match(regex, name)]
        parameter.requires_grad_(bool(ranges))
        if not ranges:
            continue
        if any(rows is None for rows in ranges):  # the whole parameter
            trainable += parameter.numel()
            continue
        kept = _rows_in(ranges, parameter.shape[0], name)
        trainable += int(kept.sum()) * (parameter.numel() // parameter.shape[0])
        parameter.register_hook(lambda grad, keep=kept: grad * keep.view(-1, *([1] * (grad.dim() - 1))).to(grad.device, grad.dtype))
    if not trainable:
        raise UserError(f"unfrozen_parameters: no parameter matches {patterns}",
                        hint=f"names look like {next(iter(dict(model.named_parameters())))}; patterns match from the start")
    total = sum(parameter.numel() for parameter in model.parameters())
    err.print(f"training {trainable:,} of {total:,} parameters (unfrozen_parameters)")
    return trainable


def _rows_in(ranges: list[tuple[int, int | None]], size: int, name: str) -> Any:
    """A boolean mask over a parameter's `size` rows: those in any of `ranges`."""
    import torch

    keep = torch.zeros(size, dtype=torch.bool)
    for start, end in ranges:
        end = size if end is None else end
        if end > size or start >= end:  # `[600:]` of 512 rows is empty, as Axolotl refuses it
            raise UserError(f"unfrozen_parameters: rows [{start}:{end}] of {name}, which has {size}",
                            hint=f"ranges index the first dimension: at most [0:{size}]")
        keep[start:end] = True
    return keep


def latest_checkpoint(folder: Path) -> str | None:
    """The newest `checkpoint-N` under the partial output's checkpoints folder."""
    checkpoints = sorted((folder / "checkpoints").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[-1]))
    return str(checkpoints[-1]) if checkpoints else None


def check_output_or_checkpoint(output: Path, overwrite: bool, resume: bool) -> None:
    """A fresh run needs a free output; `--resume` needs a checkpoint in the partial one."""
    if not resume:
        check_output_free(output, overwrite)
    elif not latest_checkpoint(partial_path(output)):
        raise UserError(f"--resume: no checkpoint in {partial_path(output) / 'checkpoints'}",
                        hint="checkpoints are written every train.save_steps; start without --resume")


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


def push_output(folder: Path, recipe: Any) -> str:
    """Upload the finished output folder (weights, card, run record) to `recipe.hub_model_id`."""
    from llmcourse.core.hub import push_folder

    url = push_folder(folder, recipe.hub_model_id, bool(recipe.hub_private_repo), f"llmcourse {folder.name}")
    err.print(f"pushed {folder} → {url}")
    return url
