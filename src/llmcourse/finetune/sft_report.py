"""The end of an SFT run: measure, save (adapter, merged model), card, run record and report."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.outputs import write_json, write_model_card, write_run_record
from llmcourse.recipes.loader import dump_recipe
from llmcourse.recipes.sft import SftRecipe
from llmcourse.finetune.common import last_logged


def finish(recipe: SftRecipe, trainer: Any, result: Any, tokenizer: Any, folder: Path, encoded: Any,
           eval_rows: list, lab_skills: list[str], template: str, started: float, is_main: bool) -> dict[str, Any]:
    """Evaluate, save and document a finished run; every process calls it, only the main one writes."""
    from llmcourse.finetune.common import peak_memory_mb

    state = trainer.state
    runtime = result.metrics.get("train_runtime") or (time.perf_counter() - started)
    tokens = int(state.num_input_tokens_seen or 0)
    trained_tokens = sum(sum(row["assistant_masks"]) for row in encoded.rows)
    summary: dict[str, Any] = {
        "adapter": recipe.adapter,
        "examples": len(encoded.rows) - len(eval_rows),
        "truncated_examples": encoded.truncated,
        "steps": state.global_step,
        "tokens_seen": tokens,
        "tokens_per_second": round(tokens / max(runtime, 1e-9), 1),
        "loss_tokens_in_data": trained_tokens,
        "train_loss": round(float(result.training_loss), 4),
        "last_logged_loss": round(last_logged(state.log_history), 4),
    }
    if eval_rows:
        summary["eval_loss"] = round(float(trainer.evaluate()["eval_loss"]), 4)
    model = trainer.model
    if lab_skills:
        summary.update(lab_scores(model, tokenizer, lab_skills, recipe.eval_lab_count))
    summary["peak_memory_mb"] = peak_memory_mb()
    trainer.save_model(str(folder))
    if not is_main:
        return summary
    (folder / "training_args.bin").unlink(missing_ok=True)  # a pickle; the recipe is in llmcourse.yaml
    tokenizer.save_pretrained(folder)
    if recipe.adapter != "none":
        model.generation_config.save_pretrained(folder)
    shutil.rmtree(folder / "checkpoints", ignore_errors=True)
    if recipe.merge_adapter:
        merge_into(folder, recipe)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    write_run_record(folder, "sft", recipe.model_dump(mode="json"), summary)
    write_json(folder / "report.json", summary)
    _card(folder, recipe, summary, template)
    return summary


def lab_scores(model: Any, tokenizer: Any, skills: list[str], count: int) -> dict[str, float]:
    """Held-out exact match (ChatML prompts) of `model` on the lab skills, per skill and mean."""
    from llmcourse.lab import scoring

    if count <= 0:
        return {}
    was_training = model.training
    model.eval()
    result = scoring.exact_match(model, tokenizer, skills, count=count, prompt_format="chat")
    model.train(was_training)
    scores = {f"exact_match/{k}": round(v, 4) for k, v in result.per_skill.items()}
    scores["exact_match/mean"] = round(result.mean, 4)
    return scores


def merge_into(folder: Path, recipe: SftRecipe, command: str = "sft") -> None:
    """Write the merged full model into `merged/` next to the adapter."""
    from llmcourse.core.modelio import merge_adapter

    merged, tokenizer, base = merge_adapter(folder, recipe.base_model, recipe.allow_pickle, recipe.trust_remote_code)
    target = folder / "merged"
    merged.save_pretrained(target, safe_serialization=True)
    tokenizer.save_pretrained(target)
    write_model_card(
        target, title=f"{folder.name.removesuffix('.partial')} (merged)",
        description=f"The LoRA adapter of `{folder.name.removesuffix('.partial')}` merged into `{base}`.",
        recipe_yaml=dump_recipe(recipe), command=command, base_model=base, tags=[command, "merged-adapter"],
        license=recipe.license, datasets=hub_datasets(recipe),
    )
    err.print(f"merged model written to {target.name}/")


def hub_datasets(recipe: SftRecipe) -> list[str] | None:
    """The recipe's datasets that are hub ids (for the card's `datasets:`)."""
    from llmcourse.core.modelio import looks_like_local_path

    names = [s.path for s in recipe.datasets if not s.path.startswith("lab://") and not looks_like_local_path(s.path)]
    return names or None


def _card(folder: Path, recipe: SftRecipe, summary: dict[str, Any], template: str) -> None:
    kind = {"none": "full fine-tune", "lora": "LoRA adapter", "qlora": "QLoRA adapter"}[recipe.adapter]
    results = {k: v for k, v in summary.items() if k.startswith(("exact_match", "eval_loss", "train_loss", "steps", "tokens_per"))}
    write_model_card(
        folder,
        title=folder.name.removesuffix(".partial"),
        description=(
            f"A {kind} of `{recipe.base_model}` trained with `llmcourse sft` (TRL SFTTrainer) on "
            f"{', '.join(s.path for s in recipe.datasets)} with the `{template}` chat template"
            f"{', loss on assistant turns only' if not recipe.train_on_inputs else ''}."
        ),
        recipe_yaml=dump_recipe(recipe), command="sft", base_model=recipe.base_model,
        tags=["sft", "trl"] + (["peft", "lora"] if recipe.adapter != "none" else []),
        license=recipe.license, datasets=hub_datasets(recipe),
        library_name="peft" if recipe.adapter != "none" else "transformers", results=results,
    )
