"""The demo's accuracy columns through `llmcourse eval`: the lab's exact-match tasks (100 held-out
questions per skill) run by lm-eval on each chat model, HF folder or GGUF file alike. Each run's
results.json and report.md stay beside the model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmcourse.lab import skills as lab_skills

HELDOUT = 100


def eval_exact_match(model: str, output: Path) -> dict[str, float]:
    """Held-out exact match per skill and its mean, from `llmcourse eval --tasks lab_<skill>,...`."""
    from llmcourse.evaluate.run import run
    from llmcourse.recipes.eval import EvalRecipe

    recipe = EvalRecipe(models=[model], suite="custom", tasks=[f"lab_{name}" for name in lab_skills.SKILLS], limit=HELDOUT,
                        output_dir=str(output), apply_chat_template=True)
    scores = run(recipe, overwrite=True, quiet=True)["models"][0]["scores"]
    metrics = {f"exact_match/{name}": round(scores[f"lab_{name}"], 4) for name in lab_skills.SKILLS}
    metrics["exact_match/mean"] = round(sum(metrics.values()) / len(lab_skills.SKILLS), 4)
    return metrics


def chat_model_scores(path: Path) -> dict[str, Any]:
    """A chat model's demo metrics: exact match through lm-eval, perplexity on held-out plain text."""
    from llmcourse.lab.scoring import heldout_perplexity
    from llmcourse.core.modelio import load_causal_lm
    from llmcourse.core.libraries import quiet_libraries

    quiet_libraries()
    metrics: dict[str, Any] = eval_exact_match(str(path), path / "eval-lab")
    model, tokenizer = load_causal_lm(str(path))
    metrics["parameters"] = sum(p.numel() for p in model.parameters())
    metrics["heldout_perplexity"] = round(heldout_perplexity(model, tokenizer), 3)
    return metrics
