"""`llmcourse quantize` on the command line: a model plus flags, or a recipe plus overrides."""

from __future__ import annotations

from typing import Annotated, Any, Optional

import typer

from llmcourse.cli.options import Debug, DryRun, Json, OutputDir, Overrides, Overwrite
from llmcourse.cli.support import emit_summary, guarded, print_recipe, resolve_lab_base


def is_recipe(argument: str) -> bool:
    """A `.yaml` file, or a shipped recipe name under `quantize/`."""
    from llmcourse.recipes.registry import shipped_recipes

    return argument.endswith((".yaml", ".yml")) or argument.removesuffix(".yaml") in shipped_recipes() and argument.startswith("quantize/")


def assign_methods(formats: list[str], methods: list[str]) -> dict[str, list[str]]:
    """Give each `--method` to the format that offers it (all to the one format when there is one)."""
    from llmcourse.core.errors import UserError
    from llmcourse.quantize.registry import get_format

    if len(formats) == 1:
        return {formats[0]: methods}
    assigned: dict[str, list[str]] = {}
    for method in methods:
        owners = [name for name in formats if get_format(name).offers(method)]
        if not owners:
            offered = "; ".join(f"{name}: {', '.join(get_format(name).methods())}" for name in formats)
            raise UserError(f"--method: no chosen format offers '{method}'", hint=offered)
        assigned.setdefault(owners[0], []).append(method)
    return assigned


def quantize(
    target: Annotated[str, typer.Argument(help="Model folder or hub id (or a quantize recipe YAML).", show_default=False)],
    overrides: Overrides = None,
    format: Annotated[Optional[str], typer.Option("--format", "-f", help="Formats, comma-separated: gguf, int8, bnb, hqq, gptq, awq, exl2.")] = None,
    method: Annotated[Optional[str], typer.Option("--method", "-m", help="Methods, comma-separated: Q4_K_M,Q8_0 (gguf), absmax,zeropoint (int8), nf4,fp4,int8 (bnb), 4bit,2bit (hqq, gptq; awq: 4bit), 4.0 (exl2 bits per weight).")] = None,
    imatrix: Annotated[Optional[str], typer.Option("--imatrix", help="GGUF importance matrix: auto (from the calibration text) or a file.")] = None,
    calibration: Annotated[Optional[str], typer.Option("--calibration", help="Calibration text: lab://corpus, lab://chat, a .txt/.jsonl file or a hub dataset id (calibration_split=, calibration_field= to pick its text).")] = None,
    calibration_samples: Annotated[Optional[int], typer.Option("--calibration-samples", help="Calibration blocks.")] = None,
    eval_text: Annotated[Optional[str], typer.Option("--eval-text", help="Held-out text for the report: lab or a .txt/.jsonl file.")] = None,
    granularity: Annotated[Optional[str], typer.Option("--granularity", help="int8 scales per tensor or per channel.")] = None,
    group_size: Annotated[Optional[int], typer.Option("--group-size", help="hqq, gptq, awq: weights per scale/zero group (divides the hidden size).")] = None,
    pre_tokenizer: Annotated[Optional[str], typer.Option("--pre-tokenizer", help="llama.cpp pre-tokenizer name for an unrecognized BPE tokenizer.")] = None,
    no_report: Annotated[bool, typer.Option("--no-report", help="Skip the quality report.")] = False,
    push_to_hub: Annotated[Optional[str], typer.Option("--push-to-hub", help="Upload the output folder to this hub repo.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the hub repo private.")] = False,
    output_dir: OutputDir = None,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Quantize a model (GGUF via llama.cpp, naive int8, bitsandbytes, HQQ, GPTQ, AWQ, EXL2) and measure every output against the source."""

    def action() -> None:
        from llmcourse.recipes.loader import validate
        from llmcourse.recipes.registry import load_command_recipe, recipe_model

        if is_recipe(target):
            recipe = load_command_recipe("quantize", target, overrides or [], output_dir)
            data: dict[str, Any] = recipe.model_dump()
        else:
            from llmcourse.recipes.loader import apply_overrides

            data = apply_overrides({"model": target}, overrides or [])
            if output_dir is not None:
                data["output_dir"] = str(output_dir)
        _apply_flags(data)
        recipe = validate(recipe_model("quantize"), data, source=target if is_recipe(target) else "command line")
        if dry_run:
            from llmcourse.core.modelio import LAB_BASE
            from llmcourse.quantize.run import formats_of, preflight

            if recipe.model == LAB_BASE:  # not built for a dry run: the checks that need no source model
                formats_of(recipe)
            else:
                preflight(recipe, overwrite)
            print_recipe(recipe)
            return
        recipe = resolve_lab_base(recipe, "model")
        from llmcourse.quantize.run import run

        summary = run(recipe, overwrite=overwrite)
        if json_out:
            emit_summary("quantize", summary, True)
        else:
            from llmcourse.core.console import err

            for folder in summary["folders"].values():
                err.print(f"wrote {folder}")

    def _apply_flags(data: dict[str, Any]) -> None:
        if format:
            data["formats"] = [f.strip() for f in format.split(",") if f.strip()]
        formats = [f.lower() for f in data.get("formats") or ["gguf"]]
        if method:
            for name, methods in assign_methods(formats, [m.strip() for m in method.split(",") if m.strip()]).items():
                data.setdefault(name, {})["methods"] = methods
        sections = {"gguf": {"imatrix": imatrix, "pre_tokenizer": pre_tokenizer}, "int8": {"granularity": granularity},
                    **{name: {"group_size": group_size} for name in ("hqq", "gptq", "awq")}}
        for name, values in sections.items():
            for key, value in values.items():
                if value is not None:
                    data.setdefault(name, {})[key] = value
        flat = {"calibration": calibration, "calibration_samples": calibration_samples, "eval_text": eval_text,
                "push_to_hub": push_to_hub}
        data.update({k: v for k, v in flat.items() if v is not None})
        if no_report:
            data["report"] = False
        if private:
            data["private"] = True

    guarded(debug, action)


def register(app: typer.Typer) -> None:
    """Add the quantize command to the main app."""
    app.command(rich_help_panel="Quantize")(quantize)
