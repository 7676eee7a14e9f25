"""SFT throughput: `llmcourse sft` (packed, padding-free) vs plain TRL SFTTrainer with its defaults.

Same lab base, same examples (one epoch), same learning rate and schedule, both with loss on the
answers only. Measured in one run on this machine:
- tokens/s = non-padding tokens seen / train runtime;
- final loss = mean answer-token loss of each trained model on the same held-out examples.

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


def run_trl_defaults(base: str, train_rows: list[dict], lr: float, out: Path) -> tuple[float, object, object]:
    """Plain TRL: SFTConfig defaults (batch 8, no packing, padding) with prompt/completion chats."""
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
                       use_cpu=not torch.cuda.is_available(), include_num_input_tokens_seen="non_padding", disable_tqdm=True)
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    result = trainer.train()
    return trainer.state.num_input_tokens_seen / result.metrics["train_runtime"], trainer.model, tokenizer


def run_llmcourse(base: str, count: int, lr: float, out: Path, micro_batch: int) -> tuple[float, object, object]:
    """`llmcourse sft` with the lab recipe: packed, padding-free batches."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.finetune.sft import run
    from llmcourse.recipes.registry import load_command_recipe

    recipe = load_command_recipe("sft", "lab/sft", [
        f"base_model={base}", f"datasets.0.num_samples={count}", "max_steps=-1", "num_epochs=1",
        f"learning_rate={lr}", f"micro_batch_size={micro_batch}", "eval_lab_count=0", "logging_steps=50",
    ], out)
    summary = run(recipe, overwrite=True)
    return summary["tokens_per_second"], AutoModelForCausalLM.from_pretrained(out), AutoTokenizer.from_pretrained(out)


def main() -> int:
    """Run both trainers and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=3000)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--micro-batch", type=int, default=4, help="packed rows of 256 tokens per step for llmcourse")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from llmcourse.finetune.sources import lab_rows
    from llmcourse.finetune.pretrain import build_lab as build
    from llmcourse.recipes.common import DatasetSource

    base = build([])["path"]
    train_rows = lab_rows(DatasetSource(path="lab://all", num_samples=args.examples), "messages", args.examples)
    heldout = lab_rows(DatasetSource(path="lab://all", split="heldout", num_samples=300), "messages", 300)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        trl_tps, trl_model, trl_tok = run_trl_defaults(base, train_rows, args.learning_rate, Path(tmp) / "trl")
        trl_loss = heldout_loss(trl_model, trl_tok, heldout)
        ours_tps, our_model, our_tok = run_llmcourse(base, args.examples, args.learning_rate, Path(tmp) / "ours", args.micro_batch)
        our_loss = heldout_loss(our_model, our_tok, heldout)
        elapsed = time.perf_counter() - started
    result = {
        "examples": args.examples,
        "trl_tokens_per_s": round(trl_tps, 1),
        "llmcourse_tokens_per_s": round(ours_tps, 1),
        "throughput_ratio": round(ours_tps / trl_tps, 3),
        "trl_heldout_loss": round(trl_loss, 4),
        "llmcourse_heldout_loss": round(our_loss, 4),
        "loss_relative_difference": round(abs(our_loss - trl_loss) / trl_loss, 4),
        "elapsed_s": round(elapsed, 1),
    }
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
