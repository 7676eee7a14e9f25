"""`llmcourse pretrain | sft | dpo | orpo | merge-adapter`: the training commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcourse.cli.options import AllowPickle, Debug, DryRun, Json, OutputDir, Overrides, Overwrite, Recipe, Resume
from llmcourse.cli.support import emit_summary, guarded, print_recipe, resolve_lab_base


def pretrain(
    recipe: Recipe,
    overrides: Overrides = None,
    output_dir: OutputDir = None,
    overwrite: Overwrite = False,
    dry_run: DryRun = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Pretrain a causal LM from scratch (transformers Trainer)."""

    def action() -> None:
        from llmcourse.recipes.registry import load_command_recipe

        resolved = load_command_recipe("pretrain", recipe, overrides or [], output_dir)
        from llmcourse.finetune.pretrain import preflight, run

        preflight(resolved)
        if dry_run:
            print_recipe(resolved)
            return

        emit_summary("pretrain", run(resolved, overwrite=overwrite), json_out)

    guarded(debug, action)


def sft(
    recipe: Recipe,
    overrides: Overrides = None,
    output_dir: OutputDir = None,
    overwrite: Overwrite = False,
    resume: Resume = False,
    preview: Annotated[bool, typer.Option("--preview", help="Show 2 formatted samples (dim = no loss) and exit.")] = False,
    num_processes: Annotated[int, typer.Option("--num-processes", help="Data-parallel processes via accelerate launch.")] = 1,
    dry_run: DryRun = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Supervised fine-tuning: full, LoRA or QLoRA (TRL SFTTrainer, Axolotl-style recipes)."""

    def action() -> None:
        from llmcourse.recipes.registry import load_command_recipe

        resolved = load_command_recipe("sft", recipe, overrides or [], output_dir)
        from llmcourse.finetune.sft import preflight

        preflight(resolved)
        if dry_run:
            print_recipe(resolved)
            return
        if num_processes > 1:
            from llmcourse.finetune.launch import relaunch

            raise typer.Exit(relaunch(num_processes))
        resolved = resolve_lab_base(resolved)
        if preview:
            from llmcourse.finetune.preview import preview as show

            show(resolved)
            return
        from llmcourse.finetune.sft import run

        summary = run(resolved, overwrite=overwrite, resume=resume)
        from llmcourse.core.distributed import is_main_process

        if is_main_process():
            emit_summary("sft", summary, json_out)

    guarded(debug, action)


def _preference(command: str, recipe: str, overrides: list[str], output_dir: Optional[Path], overwrite: bool, resume: bool,
                preview: bool, dry_run: bool, debug: bool, json_out: bool) -> None:
    def action() -> None:
        from llmcourse.recipes.registry import load_command_recipe

        extra = ["rl=orpo"] if command == "orpo" else []
        resolved = load_command_recipe(command, recipe, overrides + extra, output_dir)
        from llmcourse.finetune.dpo import preflight

        preflight(resolved)
        if dry_run:
            print_recipe(resolved)
            return
        resolved = resolve_lab_base(resolved)
        if preview:
            from llmcourse.finetune.preview import preview_pairs

            preview_pairs(resolved)
            return
        from llmcourse.finetune.dpo import run

        emit_summary(resolved.rl, run(resolved, overwrite=overwrite, resume=resume), json_out)

    guarded(debug, action)


PreviewPairs = Annotated[bool, typer.Option("--preview", help="Show one formatted pair with token counts and exit.")]


def _preference_command(app: typer.Typer, command: str, summary: str) -> None:
    """Register `dpo` or `orpo`: the same options, `orpo` forcing rl: orpo."""

    def command_function(
        recipe: Recipe,
        overrides: Overrides = None,
        output_dir: OutputDir = None,
        overwrite: Overwrite = False,
        resume: Resume = False,
        preview: PreviewPairs = False,
        dry_run: DryRun = False,
        debug: Debug = False,
        json_out: Json = False,
    ) -> None:
        _preference(command, recipe, overrides or [], output_dir, overwrite, resume, preview, dry_run, debug, json_out)

    command_function.__doc__ = summary
    app.command(command, rich_help_panel="Train")(command_function)


def merge_adapter_command(
    adapter: Annotated[str, typer.Argument(help="LoRA adapter folder.", show_default=False)],
    output_dir: Annotated[Path, typer.Option("--output-dir", "-o", help="Where to write the merged model.")],
    base_model: Annotated[Optional[str], typer.Option(help="Base model (default: the one the adapter names).")] = None,
    overwrite: Overwrite = False,
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Merge a LoRA adapter into its base (PEFT merge_and_unload) and save a full model."""

    def action() -> None:
        from llmcourse.finetune.merge_adapter import run

        emit_summary("merge-adapter", run(adapter, output_dir, base_model, overwrite, allow_pickle), json_out)

    guarded(debug, action)



def register(app: typer.Typer) -> None:
    """Add the training commands to the main app."""
    app.command(rich_help_panel="Train")(pretrain)
    app.command(rich_help_panel="Train")(sft)
    _preference_command(app, "dpo", "Preference tuning: DPO, IPO, ORPO or SimPO (`rl:`), full or LoRA (TRL, Axolotl-style recipes).")
    _preference_command(app, "orpo", "ORPO: SFT and preference alignment in one reference-free run (`llmcourse dpo` with rl: orpo).")
    app.command("merge-adapter", rich_help_panel="Train")(merge_adapter_command)
