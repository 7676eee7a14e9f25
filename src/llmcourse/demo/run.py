"""`llmcourse demo`: every stage on the embedded lab model, one table of what each measured."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llmcourse.core.console import err, out, stdout
from llmcourse.core.measure import weights_mb
from llmcourse.demo.stage import StageResult, lab_score
from llmcourse.lab import skills as lab_skills


def base_stages(force: bool, seed: int = 0) -> list[StageResult]:
    """Build or reuse the lab base (pretrained with `seed`) and measure it with plain Q/A prompts and
    with ChatML prompts."""
    from llmcourse.finetune.pretrain import build_lab as build

    built = build([f"train.seed={seed}"], force)
    path = Path(built["path"])
    common = {"size_mb": round(weights_mb(path), 2)}
    plain = lab_score(path, "plain", force)
    chat = lab_score(path, "chat", force)
    return [
        StageResult("base (Q/A prompt)", str(path), {**common, **plain, "loss": built["last_logged_loss"]}),
        StageResult("base (ChatML)", str(path), {**common, **chat}),
    ]


def sft_recipe(base: str, seed: int = 0) -> Any:
    """The shipped lab SFT recipe started from `base`: the demo's SFT stage (its cache folder is
    `llmcourse.lab.cache.cache_path("sft", sft_recipe(base))`)."""
    from llmcourse.recipes.registry import load_command_recipe

    return load_command_recipe("sft", "lab/sft", [f"base_model={base}", f"seed={seed}"], None)


def sft_stage(base: str, force: bool, seed: int = 0) -> StageResult:
    """Fine-tune the base with the shipped lab SFT recipe (ChatML) and measure it."""
    from llmcourse.lab.cache import run_cached
    from llmcourse.finetune.sft import run as run_sft

    recipe = sft_recipe(base, seed)
    path, built = run_cached("sft", recipe, run_sft, force)
    if not built:
        err.print(f"reusing the SFT model in {path}")
    report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    measured = lab_score(path, "chat", force)
    metrics = {**measured, "size_mb": round(weights_mb(path), 2), "loss": report["last_logged_loss"],
               "tokens_per_second": report["tokens_per_second"], "sft_skills": taught_skills(recipe)}
    return StageResult("SFT (full)", str(path), metrics)


def taught_skills(recipe: Any) -> list[str]:
    """The lab skills a recipe's datasets teach (`lab://parity+count` → parity, count)."""
    names: list[str] = []
    for source in recipe.datasets:
        if source.path.startswith("lab://"):
            names += lab_skills.iter_skill_names(source.path.removeprefix("lab://"))
    return names


def sft_lift(base: dict[str, Any], sft: dict[str, Any]) -> float:
    """How much SFT raised mean held-out exact match on the skills it taught, over the base asked in
    the same chat template."""
    taught = sft["sft_skills"]
    return sum(sft[f"exact_match/{name}"] - base[f"exact_match/{name}"] for name in taught) / len(taught)


def dpo_recipe(sft: str, seed: int = 0) -> Any:
    """The shipped lab DPO recipe started from the SFT model: the demo's DPO stage."""
    from llmcourse.recipes.registry import load_command_recipe

    return load_command_recipe("dpo", "lab/dpo", [f"base_model={sft}", f"seed={seed}"], None)


def dpo_stage(sft: StageResult, force: bool, seed: int = 0) -> StageResult:
    """DPO of the SFT model with the shipped lab recipe; held-out pair and reward accuracy, exact match."""
    from llmcourse.lab.cache import run_cached
    from llmcourse.finetune.dpo import run as run_dpo

    recipe = dpo_recipe(sft.path, seed)
    path, built = run_cached("dpo", recipe, run_dpo, force)
    if not built:
        err.print(f"reusing the DPO model in {path}")
    report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    sft.metrics["pair_accuracy"] = report["before/pair_accuracy"]
    measured = lab_score(path, "chat", force)
    metrics = {**measured, "size_mb": round(weights_mb(path), 2), "loss": report["last_logged_loss"],
               "pair_accuracy": report["pair_accuracy"], "reward_accuracy": report["reward_accuracy"],
               "reward_margin": report["reward_margin"], "dpo_skills": [s.path for s in recipe.datasets]}
    return StageResult("DPO (full, RPO)", str(path), metrics)


SHORT_NAMES = {"sentiment": "sentim.", "first_letter": "1st let.", "last_letter": "last let."}


def print_table(results: list[StageResult], console: Any = None) -> None:
    """Two rich tables that fit 100 columns: held-out exact match per skill for every stage, then
    the other measurements (preference accuracy, perplexity, size, speed, loss)."""
    from rich.table import Table

    params = next((r.metrics["parameters"] for r in results if r.metrics.get("parameters")), 0)
    accuracy = Table(
        title=f"llmcourse demo — the lab model ({params / 1e6:.2f} M parameters): held-out exact match",
        caption="100 held-out questions per skill; chat models through `llmcourse eval` (lm-eval on the lab tasks), "
        "the base through `llmcourse lab score`. The base saw every skill as plain Q/A text; SFT and DPO teach "
        "parity and sentiment in chat form, and each specialist one of topic and sign",
        header_style="bold",
    )
    accuracy.add_column("stage", no_wrap=True)
    for name in lab_skills.SKILLS:
        accuracy.add_column(SHORT_NAMES.get(name, name), justify="right", no_wrap=True)
    accuracy.add_column("mean", justify="right", no_wrap=True)
    for result in results:
        m = result.metrics
        accuracy.add_row(result.stage, *[_pct(m.get(f"exact_match/{name}")) for name in lab_skills.SKILLS], _pct(m.get("exact_match/mean")))
    others = Table(
        title="… and the other measurements",
        caption="pair acc: held-out preference pairs whose chosen answer is more likely; rwd acc: pairs whose DPO reward "
        "margin (vs the SFT model) is > 0; ppl: perplexity on held-out plain lab text (a chat fine-tune forgets plain "
        "text); ppl ×: a quantized model's perplexity on held-out answers ÷ the merge's; MB: weights; tok/s: greedy "
        "decode; loss: last training loss",
        header_style="bold",
    )
    others.add_column("stage", no_wrap=True)
    for column in ("pair acc", "rwd acc", "ppl", "ppl ×", "MB", "tok/s", "loss"):
        others.add_column(column, justify="right", no_wrap=True)
    for result in results:
        m = result.metrics
        cells = [_pct(m.get("pair_accuracy")), _pct(m.get("reward_accuracy")),
                 f"{m['heldout_perplexity']:.3g}" if "heldout_perplexity" in m else "",
                 f"{m['ppl_ratio']:.4f}" if "ppl_ratio" in m else "",
                 f"{m['size_mb']:.1f}" if "size_mb" in m else "",
                 f"{m['decode_tok_s']:.0f}" if m.get("decode_tok_s") else "",
                 f"{m['loss']:.3f}" if m.get("loss") is not None else ""]
        if any(cells):
            others.add_row(result.stage, *cells)
    (console or out).print(accuracy)
    (console or out).print(others)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def run(force: bool = False, as_json: bool = False, skip: tuple[str, ...] = (), seed: int = 0) -> list[StageResult]:
    """Run the demo stages in order and print the table (or JSON); `seed` is every training stage's seed."""
    started = time.perf_counter()
    err.print("[bold]llmcourse demo[/]: the lab model, offline, end to end")
    results = base_stages(force, seed)
    results.append(sft_stage(results[0].path, force, seed))
    results.append(dpo_stage(results[-1], force, seed))
    from llmcourse.demo.merge import family_tree, final_merge
    from llmcourse.demo.quant import gptq_stage, quant_stages

    results.append(final_merge(results[2], results[3], force))
    experiment: tuple[list[Any], dict[str, Any]] = ([], {})
    if "specialists" not in skip:
        from llmcourse.demo.specialists import specialists_stage

        experiment = specialists_stage(results[2], force, seed=seed)
    # After the training stages: on a machine's first `make demo`, llama.cpp compiles meanwhile.
    quants = [] if "gguf" in skip else quant_stages(results[4], force)
    results += quants
    tree = family_tree(str(Path(quants[0].path).parent) if quants else results[4].path)
    generation: dict[str, Any] = {}
    if "generate" not in skip:
        from llmcourse.demo.generate import generation_stage

        generation = generation_stage(results[4], quants)
    # Last: importing GPTQModel patches transformers' checkpoint loading (defuser) for the rest of the process.
    gptq = [] if "gptq" in skip else _optional_stage("GPTQ", lambda: gptq_stage(results[4], force))
    results += gptq + experiment[0]
    quants += gptq
    elapsed = time.perf_counter() - started
    print_table(results, err if as_json else out)  # with --json, stdout carries the JSON only
    if as_json:
        payload = {"stages": [r.__dict__ for r in results], "tree": tree, "generation": generation, "specialists": experiment[1],
                   "elapsed_s": round(elapsed, 1)}
        stdout().write(json.dumps(payload, indent=2, default=str) + "\n")
    base, sft, dpo = (results[i].metrics for i in (1, 2, 3))
    err.print(f"SFT lifted held-out exact match by {100 * sft_lift(base, sft):.0f} points over the base (same ChatML prompts) "
              f"on the skills it taught: {', '.join(sft['sft_skills'])}")
    err.print(f"DPO: held-out reward accuracy {100 * dpo['reward_accuracy']:.0f}%, pair accuracy "
              f"{100 * sft['pair_accuracy']:.0f}% → {100 * dpo['pair_accuracy']:.0f}%, exact match "
              f"{100 * sft['exact_match/mean']:.1f}% → {100 * dpo['exact_match/mean']:.1f}%")
    for quant in quants:
        err.print(f"{quant.stage}: exact match {100 * quant.metrics['exact_match/mean']:.1f}%, perplexity ratio "
                  f"{quant.metrics['ppl_ratio']:.4f}, {quant.metrics['size_mb']:.1f} MB, {quant.metrics['decode_tok_s']:.0f} tok/s")
    if experiment[1]:
        summary, own = experiment[1], {skill: experiment[1]["scores"][f"specialist {skill}"][skill] for skill in experiment[1]["skills"]}
        best = summary["scores"][summary["best"]]
        err.print(f"merging experiment: the best merge of the two specialists, {summary['best']}, keeps {100 * summary['best_kept']:.1f}% "
                  "of each one's own-skill score (" + ", ".join(f"{skill} {best[skill]:.2f} of {own[skill]:.2f}" for skill in own) + "); "
                  "task_arithmetic's weights, chosen on training questions: " + " / ".join(
                      f"{skill} {weight}" for skill, weight in zip(own, summary["task_weights"]["weights"])))
        moe = summary["scores"]["moe(specialists)"]
        err.print("the two specialists as a 2-expert MoE (hidden-state gates): " + ", ".join(f"{skill} {moe[skill]:.2f}" for skill in own))
    err.print(f"family tree of the final model: {tree['models']} models → {tree['png'] or Path(tree['output_dir']) / 'tree.md'}")
    if generation:
        from llmcourse.demo.generate import print_generation

        print_generation(generation)
    print_goals(goals(results, experiment[1]))
    err.print(f"done in {elapsed:.0f} s; models are in {Path(results[0].path).parent}")
    return results


def _optional_stage(name: str, stage: Any) -> list[StageResult]:
    """Run a stage that only adds rows (GPTQ, whose engine is a separate extra); if its engine fails,
    say so and go on, so that the table of everything measured before it is still printed."""
    try:
        return stage()
    except Exception as exc:  # noqa: BLE001 - any engine failure; the message is shown, --debug is not needed
        err.print(f"[yellow]the {name} stage failed, its row is left out:[/] {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return []


def goals(results: list[StageResult], experiment: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """The demo's claims, each as (goal, what was measured, met), for the stages that ran."""
    base, sft, dpo = (results[i].metrics for i in (1, 2, 3))
    taught = sft["sft_skills"]

    def mean(metrics: dict[str, Any]) -> float:
        return sum(metrics[f"exact_match/{name}"] for name in taught) / len(taught)

    lift = sft_lift(base, sft)
    found = [("SFT lifts exact match on its skills by ≥ 50 points", f"{100 * lift:+.0f} points", lift >= 0.5),
             ("DPO: held-out reward accuracy ≥ 90 %, exact match kept",
              f"{100 * dpo['reward_accuracy']:.0f} %, {100 * mean(sft):.1f} → {100 * mean(dpo):.1f} %",
              dpo["reward_accuracy"] >= 0.9 and mean(dpo) >= mean(sft) - 0.01)]
    merge = results[4].metrics["exact_match/mean"]
    for stage, points in (("GGUF Q8_0 (llama.cpp)", 1), ("GGUF Q4_K_M (llama.cpp)", 2)):
        row = next((r.metrics for r in results if r.stage == stage), None)
        if row:
            change = 100 * (row["exact_match/mean"] - merge)
            found.append((f"{stage.split(' (')[0]} within {points} point{'s' if points > 1 else ''} of the merge's exact match",
                          f"{change:+.1f} points", change >= -points))
    if experiment:
        found.append(("the best merge of the specialists keeps ≥ 80 % of each",
                      f"{experiment['best']}: {100 * experiment['best_kept']:.1f} %", experiment["best_kept"] >= 0.8))
    return found


def print_goals(rows: list[tuple[str, str, bool]]) -> None:
    """The goals as a small table on stderr."""
    from rich.table import Table

    table = Table(title="the demo's goals", header_style="bold")
    for column in ("goal", "measured", "met"):
        table.add_column(column)
    for goal, measured, met in rows:
        table.add_row(goal, measured, "[green]yes[/]" if met else "[red]no[/]")
    err.print(table)
