"""Shared by the training commands: Trainer arguments from a recipe, a rich progress bar, `metrics.jsonl`."""

from __future__ import annotations

import time
from typing import Any

from llmcourse.console import err
from llmcourse.outputs import MetricsLog
from llmcourse.recipes.common import TrainSection


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


def quiet_libraries(with_datasets: bool = True) -> None:
    """Silence the libraries' own progress bars and advisory warnings (ours replace them).

    `with_datasets=False` leaves `datasets` unimported, for commands that never read a dataset.
    """
    import logging as std_logging
    import warnings

    # bitsandbytes warns on CPU that it cannot download an optional kernel from the hub.
    std_logging.getLogger("bitsandbytes").setLevel(std_logging.ERROR)
    # torchao (which transformers imports when GPTQModel brought it) warns about its CUDA-only
    # libraries on CPU, and torch about torchao's pytree registrations.
    for name in ("torchao", "torch.utils._pytree"):
        std_logging.getLogger(name).setLevel(std_logging.ERROR)
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    if not with_datasets:
        return
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


def last_logged(history: list[dict], key: str = "loss") -> float:
    """The most recent value of `key` in a Trainer's log history (NaN if it was never logged)."""
    values = [row[key] for row in history if key in row]
    return float(values[-1]) if values else float("nan")
