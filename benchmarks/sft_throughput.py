"""SFT throughput and time-to-quality: `llmcourse sft` (packed, padding-free) vs plain TRL SFTTrainer,
with its defaults and with its own packing switched on (`packing=True`).

Same lab base, same examples (one epoch), same learning rate and schedule, all with loss on the
answers only. Measured in one run on this machine:
- tokens/s = non-padding tokens seen / train runtime;
- held-out loss = mean answer-token loss on the same held-out examples, measured every
  `--watch-every` optimizer steps during training (that time is not counted) and at the end;
- time-to-quality = training seconds until the held-out loss first reaches the final held-out loss
  of TRL with its defaults (the reference), or "not reached".

    python benchmarks/sft_throughput.py [--examples 3000] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def heldout_loss(model, tokenizer, rows: list[dict]) -> float:
    """Mean loss over the answer tokens of held-out chats (the same function for both models)."""
    import torch

    from llmcourse.finetune.data import encode

    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for row in rows:
            ids, mask = encode(tokenizer, row, train_on_inputs=False)
            input_ids = torch.tensor([ids], device=model.device)
            labels = torch.tensor([[i if m else -100 for i, m in zip(ids, mask)]], device=model.device)
            learned = sum(mask[1:])
            total += model(input_ids=input_ids, labels=labels).loss.item() * learned
            count += learned
    return total / count


class HeldoutWatch:
    """A TrainerCallback that measures held-out loss every `every` steps, off the training clock."""

    def __new__(cls, rows: list[dict], every: int):
        from transformers import TrainerCallback

        class Watch(TrainerCallback):
            def __init__(self) -> None:
                self.points: list[tuple[float, int, float]] = []  # (training seconds, step, held-out loss)
                self.paused = 0.0
                self.started = 0.0

            def on_train_begin(self, args, state, control, **kwargs):
                self.started = time.perf_counter()

            def on_step_end(self, args, state, control, model=None, processing_class=None, **kwargs):
                if state.global_step % every == 0:
                    self.measure(state, model, processing_class)

            def on_train_end(self, args, state, control, model=None, processing_class=None, **kwargs):
                # A run of fewer steps than `every` gets its point too; the runtime is already taken, so
                # this measurement's time is not added to the pause subtracted from it.
                if not self.points or self.points[-1][1] != state.global_step:
                    self.measure(state, model, processing_class, pause=False)

            def measure(self, state, model, processing_class, pause: bool = True) -> None:
                now = time.perf_counter()
                trained = now - self.started - self.paused
                loss = heldout_loss(model, processing_class, rows)
                model.train()
                if pause:
                    self.paused += time.perf_counter() - now
                self.points.append((trained, state.global_step, loss))

        return Watch()


def time_to(points: list[tuple[float, int, float]], target: float) -> float | None:
    """Training seconds at the first watched point whose held-out loss is at or below `target`."""
    return next((seconds for seconds, _, loss in points if loss <= target), None)


def run_trl(base: str, train_rows: list[dict], lr: float, out: Path, watch: object, packing: bool = False) -> tuple[float, object, object]:
    """Plain TRL: SFTConfig defaults (batch 8, no packing, padding) with prompt/completion chats;
    with `packing`, TRL's own packing (BFD, padding-free) switched on, nothing else changed."""
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from llmcourse.core.chat_templates import prepare_chat_template

    tokenizer = AutoTokenizer.from_pretrained(base)
    prepare_chat_template(tokenizer, "chatml")
    model = AutoModelForCausalLM.from_pretrained(base)
    data = Dataset.from_list([{"prompt": r["messages"][:-1], "completion": r["messages"][-1:]} for r in train_rows])
    config = SFTConfig(output_dir=str(out), num_train_epochs=1, learning_rate=lr, lr_scheduler_type="cosine",
                       warmup_steps=20, report_to="none", save_strategy="no", logging_steps=50, seed=0,
                       use_cpu=not torch.cuda.is_available(), include_num_input_tokens_seen="non_padding", disable_tqdm=True,
                       packing=packing)
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer, callbacks=[watch])
    result = trainer.train()
    return trainer.state.num_input_tokens_seen / (result.metrics["train_runtime"] - watch.paused), trainer.model, tokenizer


def run_llmcourse(base: str, count: int, lr: float, out: Path, micro_batch: int, watch: object) -> tuple[float, object, object]:
    """`llmcourse sft` with the lab recipe: packed, padding-free batches."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.finetune.sft import run
    from llmcourse.recipes.registry import load_command_recipe

    recipe = load_command_recipe("sft", "lab/sft", [
        f"base_model={base}", "datasets.0.path=lab://all", f"datasets.0.num_samples={count}", "max_steps=-1", "num_epochs=1",
        f"learning_rate={lr}", f"micro_batch_size={micro_batch}", "eval_lab_count=0", "logging_steps=50",
    ], out)
    summary = run(recipe, overwrite=True, callbacks=[watch])
    runtime = summary["tokens_seen"] / summary["tokens_per_second"]
    tokens_per_s = summary["tokens_seen"] / (runtime - watch.paused)  # the watch's time left out
    return tokens_per_s, AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)


def main() -> int:
    """Run both trainers and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--micro-batch", type=int, default=4, help="packed rows of 256 tokens per step for llmcourse")
    parser.add_argument("--watch-every", type=int, default=25, help="optimizer steps between held-out loss measurements")
    parser.add_argument("--watch-rows", type=int, default=100, help="held-out examples measured while training")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from llmcourse.finetune.sources import lab_rows
    from llmcourse.finetune.pretrain import build_lab as build
    from llmcourse.recipes.common import DatasetSource

    base = build([])["path"]
    train_rows = lab_rows(DatasetSource(path="lab://all", num_samples=args.examples), "messages", args.examples)
    heldout = lab_rows(DatasetSource(path="lab://all", split="heldout", num_samples=300), "messages", 300)
    watch_rows = heldout[: args.watch_rows]
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        for name in ("trl_defaults", "trl_packing", "llmcourse"):
            watch = HeldoutWatch(watch_rows, args.watch_every)
            if name == "llmcourse":
                tps, model, tokenizer = run_llmcourse(base, args.examples, args.learning_rate, Path(tmp) / name, args.micro_batch, watch)
            else:
                tps, model, tokenizer = run_trl(base, train_rows, args.learning_rate, Path(tmp) / name, watch, packing=name == "trl_packing")
            runs[name] = {"tokens_per_s": round(tps, 1), "heldout_loss": round(heldout_loss(model, tokenizer, heldout), 4),
                          "watched": [(round(s, 1), step, round(loss, 4)) for s, step, loss in watch.points]}
        elapsed = time.perf_counter() - started
    target = runs["trl_defaults"]["heldout_loss"]
    watched_target = runs["trl_defaults"]["watched"][-1][2] if runs["trl_defaults"]["watched"] else target
    for values in runs.values():
        values["seconds_to_reference_loss"] = time_to(values["watched"], watched_target)
    ours = runs["llmcourse"]
    result = {
        "examples": args.examples,
        "reference_heldout_loss (TRL defaults, watched subset)": watched_target,
        **{f"{name}_{key}": value for name, values in runs.items() for key, value in values.items() if key != "watched"},
        "throughput_ratio_vs_defaults": round(ours["tokens_per_s"] / runs["trl_defaults"]["tokens_per_s"], 3),
        "throughput_ratio_vs_packing": round(ours["tokens_per_s"] / runs["trl_packing"]["tokens_per_s"], 3),
        "watched": {name: values["watched"] for name, values in runs.items()},
        "elapsed_s": round(elapsed, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
