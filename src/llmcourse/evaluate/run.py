"""`llmcourse eval`: every model on the same lm-eval tasks, then one report that compares them.

Everything that can be wrong is found before a weight is loaded: models (paths, back-ends, missing
engines), task names (against lm-eval's index plus the lab and user task folders), the tasks' data
(each task is loaded once, so a hub dataset that cannot be reached offline stops the run with its
name), the output folder and the gist token.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.core.console import err, progress_bars_collapsed_in_logs
from llmcourse.core.errors import UserError
from llmcourse.evaluate.backends import EvalModel, resolve
from llmcourse.evaluate.suites import Suite, TaskSpec, custom_suite, get_suite
from llmcourse.evaluate.taskindex import task_manager as build_task_manager


@dataclass
class Plan:
    """What a run will do, checked."""

    models: list[EvalModel]
    suite: Suite
    tasks: list[TaskSpec]
    task_manager: Any
    output: Path
    perplexity_task: str | None = None


def _labels_unique(models: list[EvalModel]) -> None:
    seen: dict[str, int] = {}
    for model in models:
        count = seen.get(model.label, 0)
        seen[model.label] = count + 1
        if count:
            model.label = f"{model.label}-{count + 1}"


def _check_data(task_manager: Any, names: list[str]) -> None:
    """Load each task (and so its dataset) once; a task whose data cannot be reached is named."""
    for name in names:
        try:
            task_manager.load([name])
        except Exception as exc:  # noqa: BLE001 - datasets raises many kinds; each becomes one line
            offline = os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1"
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UserError(f"task '{name}': its data cannot be loaded ({first[:200]})",
                            hint="the hub is switched off here (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE): download the dataset "
                            "where it can be reached, or use --suite lab" if offline else "check the network and the dataset name") from exc


def preflight(recipe: Any, overwrite: bool = False) -> Plan:
    """Resolve models, tasks and data; nothing heavier than a dataset file is read."""
    from llmcourse.evaluate.lab_tasks import lab_tasks_folder, perplexity_source, perplexity_task
    from llmcourse.core.outputs import check_output_free

    models = [resolve(spec) for spec in recipe.models]
    _labels_unique(models)
    suite = custom_suite(recipe.tasks, recipe.num_fewshot) if recipe.suite == "custom" else get_suite(recipe.suite)
    specs = list(suite.tasks) + ([TaskSpec(t, recipe.num_fewshot) for t in recipe.tasks if t not in {s.name for s in suite.tasks}]
                                 if recipe.suite != "custom" else [])
    if recipe.num_fewshot is not None:
        specs = [TaskSpec(s.name, recipe.num_fewshot) for s in specs]
    include = [str(Path(p).expanduser()) for p in recipe.include_path]
    for folder in include:
        if not Path(folder).is_dir():
            raise UserError(f"--include-path: not a folder: {folder}")
    if suite.local or any(s.name.startswith("lab_") for s in specs):
        include.insert(0, str(lab_tasks_folder()))
    ppl_name = None
    if recipe.perplexity:
        from llmcourse.core.cache import llmcourse_home

        ppl_name, documents = perplexity_source(recipe.perplexity)
        include.append(str(perplexity_task(ppl_name, documents, llmcourse_home() / "eval" / ppl_name)))
    names = [s.name for s in specs] + ([ppl_name] if ppl_name else [])
    task_manager = build_task_manager(include, names)
    _check_data(task_manager, names)
    output = Path(recipe.output_dir or f"evals/{suite.name}-{'+'.join(m.label for m in models)[:80]}")
    check_output_free(output, overwrite)
    if recipe.gist and not os.environ.get("GITHUB_TOKEN"):
        raise UserError("--gist needs a GitHub token in GITHUB_TOKEN", hint="create one with the `gist` scope")
    return Plan(models, suite, specs, task_manager, output, ppl_name)


def _wants_chat_template(model: EvalModel, lm: Any) -> bool:
    if model.backend == "gguf":
        return bool(lm.chat_template(True))
    from transformers import AutoTokenizer

    source = model.model_args.get("tokenizer") or model.model_args["pretrained"]
    return bool(getattr(AutoTokenizer.from_pretrained(source), "chat_template", None))


def _build(model: EvalModel, batch_size: Any, device: str) -> Any:
    from lm_eval.api.registry import get_model

    from llmcourse.evaluate.backends import BACKENDS

    built, args = BACKENDS[model.backend].build(model, batch_size, device)
    if isinstance(built, str):
        return get_model(built).create_from_arg_obj(args, {"batch_size": batch_size, "device": device})
    return built


MERGED_KEYS = ("results", "group_subtasks", "configs", "versions", "n-shot", "higher_is_better", "n-samples")


def evaluate_model(model: EvalModel, plan: Plan, recipe: Any, device: str) -> tuple[dict[str, Any], float]:
    """Run lm-eval on one model: one `simple_evaluate` per few-shot count; lm-eval's results merged."""
    import lm_eval

    started = time.perf_counter()
    lm = _build(model, recipe.batch_size, device)
    chat = recipe.apply_chat_template if recipe.apply_chat_template is not None else _wants_chat_template(model, lm)
    by_shots: dict[int | None, list[str]] = {}
    for spec in plan.tasks:
        by_shots.setdefault(spec.num_fewshot, []).append(spec.name)
    if plan.perplexity_task:
        by_shots.setdefault(0, []).append(plan.perplexity_task)
    merged: dict[str, Any] = {}
    for shots, names in by_shots.items():
        with progress_bars_collapsed_in_logs():
            result = lm_eval.simple_evaluate(model=lm, tasks=names, num_fewshot=shots, limit=recipe.limit, batch_size=recipe.batch_size,
                                             task_manager=plan.task_manager, apply_chat_template=chat, log_samples=recipe.log_samples,
                                             bootstrap_iters=recipe.bootstrap_iters, device=device)
        for key, value in result.items():
            if key in MERGED_KEYS or key == "samples":
                merged.setdefault(key, {}).update(value)
            else:
                merged.setdefault(key, value)
    merged.setdefault("config", {})["llmcourse"] = {"model": model.spec, "backend": model.backend, "model_args": model.model_args,
                                                    "apply_chat_template": chat}
    return merged, time.perf_counter() - started


def _write_model_results(folder: Path, results: dict[str, Any]) -> None:
    samples = results.pop("samples", None)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps(results, indent=2, default=_jsonable) + "\n", encoding="utf-8")
    for task, rows in (samples or {}).items():
        with (folder / f"samples_{task}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def run(recipe: Any, overwrite: bool = False, table_to_stderr: bool = False, quiet: bool = False) -> dict[str, Any]:
    """Evaluate every model, write results and the report, print the tables; returns the summary."""
    from llmcourse.evaluate import report
    from llmcourse.core.modelio import pick_device
    from llmcourse.core.outputs import atomic_output, write_run_record

    plan = preflight(recipe, overwrite)
    device = recipe.device or pick_device()
    boards = []
    with atomic_output(plan.output, overwrite) as folder:
        for index, model in enumerate(plan.models, 1):
            err.print(f"[bold]eval[/] {index}/{len(plan.models)}: {model.spec} ({model.backend}, {device})")
            results, seconds = evaluate_model(model, plan, recipe, device)
            _write_model_results(folder / model.label, results)
            board = report.leaderboard_row(model.label, plan.suite, results, plan.perplexity_task, seconds)
            boards.append(board)
            if not quiet:
                report.print_tasks(model.label, results)
        markdown = report.markdown(plan.suite, boards, folder)
        (folder / "report.md").write_text(markdown, encoding="utf-8")
        summary = {"suite": plan.suite.name, "output_dir": str(plan.output), "models": boards}
        (folder / "report.json").write_text(json.dumps(summary, indent=2, default=_jsonable) + "\n", encoding="utf-8")
        write_run_record(folder, "eval", recipe.model_dump(), {"models": [b["model"] for b in boards]})
    if not quiet:
        report.print_comparison(plan.suite, boards, err if table_to_stderr else None)
    if recipe.gist:
        summary["gist"] = report.publish_gist(markdown, recipe.private, os.environ["GITHUB_TOKEN"])
        err.print(f"gist: {summary['gist']}")
    err.print(f"results in {plan.output}")
    return summary
