"""`llmcourse eval` on the command line: models plus flags, or an eval recipe plus overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llmcourse.cli.options import Debug, DryRun, Json, OutputDir, Overwrite
from llmcourse.cli.support import emit_summary, guarded, print_recipe, resolve_lab_base


def _is_recipe(argument: str) -> bool:
    from llmcourse.recipes.registry import shipped_recipes

    return argument.endswith((".yaml", ".yml")) or (argument.startswith("eval/") and argument in shipped_recipes())


def eval_command(
    targets: Annotated[list[str], typer.Argument(help="Models (HF folders, hub ids, adapters, .gguf files), or an eval recipe and key=value overrides.", show_default=False)],
    suite: Annotated[Optional[str], typer.Option("--suite", help="lab, nous, openllm or custom.")] = None,
    tasks: Annotated[Optional[str], typer.Option("--tasks", help="lm-eval task names, comma-separated.")] = None,
    include_path: Annotated[Optional[list[Path]], typer.Option("--include-path", help="A folder of your own lm-eval task YAMLs.")] = None,
    limit: Annotated[Optional[float], typer.Option("--limit", help="Examples per task (a fraction when < 1).")] = None,
    num_fewshot: Annotated[Optional[int], typer.Option("--num-fewshot", help="Override every task's few-shot count.")] = None,
    batch_size: Annotated[Optional[str], typer.Option("--batch-size", help="An integer or auto.")] = None,
    perplexity: Annotated[Optional[str], typer.Option("--perplexity", help="lab or a .txt/.jsonl file: word and byte perplexity.")] = None,
    chat_template: Annotated[Optional[bool], typer.Option("--chat-template/--no-chat-template", help="Default: when the model has one.")] = None,
    log_samples: Annotated[bool, typer.Option("--log-samples", help="Write every sample's prompt, answer and score (jsonl).")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="cpu, cuda, cuda:1, mps.")] = None,
    gist: Annotated[bool, typer.Option("--gist", help="Publish report.md as a GitHub gist (GITHUB_TOKEN).")] = False,
    public: Annotated[bool, typer.Option("--public", help="Make the gist public (it is secret by default).")] = False,
    output_dir: OutputDir = None,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Evaluate models with lm-eval (lab, nous, openllm or any tasks) and compare them in one report."""

    def action() -> None:
        from llmcourse.recipes.loader import validate
        from llmcourse.recipes.registry import load_command_recipe, recipe_model

        if _is_recipe(targets[0]):
            data: dict[str, Any] = load_command_recipe("eval", targets[0], targets[1:], output_dir).model_dump()
        else:
            data = {"models": targets}
            if output_dir is not None:
                data["output_dir"] = str(output_dir)
        flags = {"suite": suite, "limit": limit, "num_fewshot": num_fewshot, "batch_size": batch_size, "perplexity": perplexity,
                 "apply_chat_template": chat_template, "device": device}
        data.update({k: v for k, v in flags.items() if v is not None})
        if tasks:
            data["tasks"] = [t.strip() for t in tasks.split(",") if t.strip()]
            data.setdefault("suite", "custom")
        if include_path:
            data["include_path"] = [str(p) for p in include_path]
        data.update({k: True for k, v in (("log_samples", log_samples), ("gist", gist)) if v})
        if public:
            data["private"] = False
        recipe = validate(recipe_model("eval"), data, source=targets[0] if _is_recipe(targets[0]) else "command line")
        if dry_run:
            print_recipe(recipe)
            return
        recipe = resolve_lab_base(recipe, "models")
        from llmcourse.evaluate.run import run

        summary = run(recipe, overwrite=overwrite, table_to_stderr=json_out)
        if json_out:
            emit_summary("eval", summary, True)

    guarded(debug, action)


def register(app: typer.Typer) -> None:
    """Add the eval command to the main app."""
    app.command("eval", rich_help_panel="Evaluate")(eval_command)
