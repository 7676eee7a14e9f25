"""Measuring and finishing a preference run: held-out pair accuracy before/after, TRL's reward
metrics on held-out pairs, lab exact-match, then the saved model, card and report."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.outputs import write_json, write_model_card, write_run_record
from llmcourse.recipes.dpo import DpoRecipe
from llmcourse.recipes.loader import dump_recipe
from llmcourse.finetune.common import last_logged

REWARD_KEYS = ("rewards/chosen", "rewards/rejected", "rewards/accuracies", "rewards/margins")


def answer_logprob(model: Any, tokenizer: Any, prompt: list[dict], answer: list[dict]) -> float:
    """Sum of the log-probabilities of the answer's tokens after the templated prompt."""
    import torch

    context = tokenizer.apply_chat_template(prompt, tokenize=True, add_generation_prompt=True, return_dict=False)
    full = tokenizer.apply_chat_template(prompt + answer, tokenize=True, return_dict=False)
    start = next((i for i, (a, b) in enumerate(zip(context, full)) if a != b), min(len(context), len(full)))
    ids = torch.tensor([full], device=model.device)
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1].float()
    logprobs = torch.log_softmax(logits, dim=-1).gather(1, ids[0, 1:, None])[:, 0]
    return float(logprobs[max(start, 1) - 1 :].sum())


def pair_logprobs(model: Any, tokenizer: Any, pairs: list[dict]) -> list[tuple[float, float]]:
    """(log p(chosen), log p(rejected)) of every pair under `model`."""
    import torch

    was_training = model.training
    model.eval()
    # A 4-bit base computes in bf16 while the layers trained beside it (new token rows) stay fp32:
    # the trainer runs them under autocast, and so must this pass.
    dtypes = {p.dtype for p in model.parameters() if p.is_floating_point()}
    mixed = torch.bfloat16 in dtypes and torch.float32 in dtypes
    with torch.autocast(device_type=model.device.type, dtype=torch.bfloat16, enabled=mixed):
        scores = [(answer_logprob(model, tokenizer, p["prompt"], p["chosen"]),
                   answer_logprob(model, tokenizer, p["prompt"], p["rejected"])) for p in pairs]
    model.train(was_training)
    return scores


def measure(recipe: DpoRecipe, model: Any, tokenizer: Any, eval_pairs: list[dict],
            start: list[tuple[float, float]] | None = None) -> tuple[dict[str, float], list[tuple[float, float]]]:
    """Held-out pair metrics and lab exact-match of `model` as it is now, plus the per-pair log-probs.

    `pair_accuracy`: chosen more likely than rejected. With the starting model's log-probs (`start`),
    also `reward_accuracy` and `reward_margin` exactly as DPO defines them (beta times the change of
    log p(chosen) minus that of log p(rejected)) over every held-out pair, against the starting model.
    """
    from llmcourse.finetune.common import lab_skills_of
    from llmcourse.finetune.sft_report import lab_scores

    result: dict[str, float] = {}
    scores = pair_logprobs(model, tokenizer, eval_pairs) if eval_pairs else []
    if scores:
        result["pair_accuracy"] = round(sum(c > r for c, r in scores) / len(scores), 4)
    if scores and start and recipe.rl in ("dpo", "ipo"):
        margins = [recipe.beta * ((c - c0) - (r - r0)) for (c, r), (c0, r0) in zip(scores, start)]
        result["reward_accuracy"] = round(sum(m > 0 for m in margins) / len(margins), 4)
        result["reward_margin"] = round(sum(margins) / len(margins), 4)
    skills = lab_skills_of(recipe)
    if skills:
        result.update(lab_scores(model, tokenizer, skills, recipe.eval_lab_count))
    return result, scores


def finish(recipe: DpoRecipe, trainer: Any, result: Any, tokenizer: Any, folder: Path, pairs: Any,
           before: tuple[dict[str, float], list], template: str, started: float, is_main: bool) -> dict[str, Any]:
    """Evaluate on held-out pairs, save, and document a finished run (only the main process writes)."""
    from llmcourse.finetune.common import peak_memory_mb

    state = trainer.state
    runtime = result.metrics.get("train_runtime") or (time.perf_counter() - started)
    summary: dict[str, Any] = {
        "rl": recipe.rl,
        "adapter": recipe.adapter,
        "reference": recipe.ref_model or ("none" if recipe.rl in ("orpo", "simpo") else
                                          "implicit (the starting LoRA adapter, frozen: the base itself)" if recipe.adapter != "none" else "frozen copy of the base"),
        "pairs": len(pairs.train),
        "heldout_pairs": len(pairs.eval),
        "dropped_identical": pairs.identical,
        "dropped_long_prompts": pairs.long_prompts,
        "steps": state.global_step,
        "train_runtime_s": round(float(runtime), 1),
        "train_loss": round(float(result.training_loss), 4),
        "first_logged_loss": round(next((row["loss"] for row in state.log_history if "loss" in row), float("nan")), 4),
        "last_logged_loss": round(last_logged(state.log_history), 4),
    }
    for key in REWARD_KEYS:
        summary[f"train_{key}"] = round(last_logged(state.log_history, key), 4)
    if pairs.eval:
        evaluated = trainer.evaluate()
        summary["eval_loss"] = round(float(evaluated["eval_loss"]), 4)
        for key in REWARD_KEYS:
            if f"eval_{key}" in evaluated:
                summary[f"eval_{key}"] = round(float(evaluated[f"eval_{key}"]), 4)
    after = measure(recipe, trainer.model, tokenizer, pairs.eval, start=before[1])[0] if is_main else {}
    summary.update({f"before/{k}": v for k, v in before[0].items()})
    summary.update(after)
    summary["peak_memory_mb"] = peak_memory_mb()
    trainer.save_model(str(folder))
    if not is_main:
        return summary
    # TRL keeps a frozen copy of the starting adapter as the reference: not part of the result.
    shutil.rmtree(folder / "ref", ignore_errors=True)
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; the recipe is in llmcourse.yaml
    tokenizer.save_pretrained(folder)
    if recipe.adapter != "none":
        trainer.model.generation_config.save_pretrained(folder)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    if recipe.merge_adapter:
        from llmcourse.finetune.sft_report import merge_into

        merge_into(folder, recipe, command=recipe.rl)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_run_record(folder, recipe.rl, recipe.model_dump(mode="json"), summary)
    write_json(folder / "report.json", summary)
    _card(folder, recipe, summary, template)
    print_table(summary)
    return summary


def print_table(summary: dict[str, Any]) -> None:
    """The end table: reward metrics on the last training logs and on held-out pairs, before/after scores."""
    from rich.table import Table

    table = Table(title=f"{summary['rl']}: preference metrics", header_style="bold")
    for column in ("metric", "train (last log)", "held-out"):
        table.add_column(column, justify="right" if column != "metric" else "left")
    table.add_row("loss", _fmt(summary.get("last_logged_loss")), _fmt(summary.get("eval_loss")))
    for key in REWARD_KEYS:
        table.add_row(key, _fmt(summary.get(f"train_{key}")), _fmt(summary.get(f"eval_{key}")))
    for key in ("reward_accuracy", "reward_margin"):
        table.add_row(f"{key} (every held-out pair)", "", _fmt(summary.get(key)))
    for key in sorted(k for k in summary if k.startswith("before/")):
        name = key.removeprefix("before/")
        table.add_row(f"{name} (before → after)", "", f"{_fmt(summary[key])} → {_fmt(summary.get(name))}")
    err.print(table)


def _fmt(value: Any) -> str:
    return "" if value is None or value != value else f"{value:.4g}"


def _card(folder: Path, recipe: DpoRecipe, summary: dict[str, Any], template: str) -> None:
    from llmcourse.finetune.sft_report import hub_datasets

    kind = {"none": "full", "lora": "LoRA adapter", "qlora": "QLoRA adapter"}[recipe.adapter]
    trainer = {"dpo": "DPOTrainer", "ipo": "DPOTrainer (IPO loss)", "orpo": "ORPOTrainer", "simpo": "CPOTrainer (SimPO loss)"}
    results = {k: v for k, v in summary.items() if k.startswith(("eval_", "pair_", "reward_", "exact_match", "train_loss", "steps"))}
    write_model_card(
        folder,
        title=folder.name.removesuffix(".partial"),
        description=(
            f"A {kind} {recipe.rl.upper()} tune of `{recipe.base_model}` with `llmcourse {recipe.rl}` (TRL "
            f"{trainer[recipe.rl]}, beta={recipe.beta}) on {', '.join(s.path for s in recipe.datasets)} with the "
            f"`{template}` chat template; reference: {summary['reference']}."
        ),
        recipe_yaml=dump_recipe(recipe), command=recipe.rl, base_model=recipe.base_model,
        tags=[recipe.rl, "trl", "preference-tuning"] + (["peft", "lora"] if recipe.adapter != "none" else []),
        license=recipe.license, datasets=hub_datasets(recipe),
        library_name="peft" if recipe.adapter != "none" else "transformers", results=results,
    )
