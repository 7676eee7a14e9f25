"""The demo's merging experiment: two specialists fine-tuned from the lab base on different skills,
merged four ways by mergekit (linear, slerp, ties, dare_ties), each scored on both skills."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from llmcourse.console import err

SPECIALIST_SKILLS = ("sentiment", "larger")
SPECIALIST_STEPS = 150


def _linear(base: str, a: str, b: str) -> dict[str, Any]:
    return {"merge_method": "linear", "dtype": "float32",
            "models": [{"model": a, "parameters": {"weight": 0.5}}, {"model": b, "parameters": {"weight": 0.5}}]}


def _slerp(base: str, a: str, b: str) -> dict[str, Any]:
    return {"merge_method": "slerp", "base_model": a, "dtype": "float32", "parameters": {"t": 0.5},
            "slices": [{"sources": [{"model": a, "layer_range": [0, 4]}, {"model": b, "layer_range": [0, 4]}]}]}


def _ties(base: str, a: str, b: str, method: str = "ties") -> dict[str, Any]:
    return {"merge_method": method, "base_model": base, "dtype": "float32", "parameters": {"normalize": False},
            "models": [{"model": base}] + [{"model": m, "parameters": {"density": 0.7, "weight": 1.0}} for m in (a, b)]}


MERGE_CONFIGS: dict[str, Callable[[str, str, str], dict[str, Any]]] = {
    "linear": _linear,
    "slerp": _slerp,
    "ties": _ties,
    "dare_ties": lambda base, a, b: _ties(base, a, b, "dare_ties"),
}


def specialist(base: str, skill: str, force: bool) -> Path:
    """A full SFT of the base on one skill (ChatML), cached like every demo stage."""
    from llmcourse.cache import run_cached
    from llmcourse.finetune.sft import run as run_sft
    from llmcourse.recipes.registry import load_command_recipe

    overrides = [f"base_model={base}", f"datasets.0.path=lab://{skill}", "datasets.0.num_samples=3000",
                 f"max_steps={SPECIALIST_STEPS}", "eval_lab_count=0"]
    path, built = run_cached("sft", load_command_recipe("sft", "lab/sft", overrides, None), run_sft, force)
    if not built:
        err.print(f"reusing the {skill} specialist in {path}")
    return path


def merged(method: str, config: dict[str, Any], force: bool) -> Path:
    """The merge of `config` (mergekit YAML) into a cache folder named by its content."""
    from llmcourse.cache import llmcourse_home
    from llmcourse.merging.merge import MergeSettings, run

    text = yaml.safe_dump(config, sort_keys=False)
    path = llmcourse_home() / "lab" / f"merge-{method}-{hashlib.sha256(text.encode()).hexdigest()[:10]}"
    if (path / "report.json").exists() and not force:
        err.print(f"reusing the {method} merge in {path}")
        return path
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / f"{method}.yaml"
        config_file.write_text(text, encoding="utf-8")
        run(config_file, path, overwrite=True, moe=False, settings=MergeSettings(random_seed=0, license="apache-2.0"))
    return path


def merge_stages(base: str, force: bool) -> list[Any]:
    """Specialists and their merges, each with held-out exact match on both specialist skills."""
    from llmcourse.demo import StageResult, folder_size_mb
    from llmcourse.labcmd import score

    skills = "+".join(SPECIALIST_SKILLS)
    experts = [specialist(base, skill, force) for skill in SPECIALIST_SKILLS]
    rows: list[tuple[str, Path]] = [(f"{skill} specialist", path) for skill, path in zip(SPECIALIST_SKILLS, experts)]
    for method, build in MERGE_CONFIGS.items():
        rows.append((f"merge: {method}", merged(method, build(base, str(experts[0]), str(experts[1])), force)))
    results = []
    for name, path in rows:
        measured = score(str(path), skills, 100, "chat", allow_pickle=False)
        measured.pop("heldout_perplexity", None)
        results.append(StageResult(name, str(path), {**measured, "size_mb": round(folder_size_mb(path), 2)}))
    return results


def kept_share(results: list[Any]) -> dict[str, dict[str, float]]:
    """For each merge, the share of each specialist's exact match on its own skill that it keeps."""
    own = {skill: results[i].metrics[f"exact_match/{skill}"] for i, skill in enumerate(SPECIALIST_SKILLS)}
    return {r.stage: {skill: round(r.metrics[f"exact_match/{skill}"] / max(own[skill], 1e-9), 3) for skill in own}
            for r in results[len(SPECIALIST_SKILLS):]}
