"""The `llmcourse` command line (Typer). Heavy libraries are imported inside the commands only."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcourse.cli_options import AllowPickle, Debug, DryRun, Json, OutputDir, Overrides, Overwrite, Recipe, Resume
from llmcourse.cli_support import emit_summary, guarded, print_recipe, resolve_lab_base

app = typer.Typer(
    name="llmcourse",
    help="Recipe-driven command line for the whole life of an open LLM: pretrain, fine-tune, merge, "
    "quantize, evaluate and serve. Runs offline on the embedded lab model, or on hub models.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
recipes_app = typer.Typer(help="List and copy the shipped recipes.", no_args_is_help=True)
lab_app = typer.Typer(help="The embedded lab: tiny model, tokenizer and synthetic skills, made locally.", no_args_is_help=True)
app.add_typer(recipes_app, name="recipes", rich_help_panel="Recipes")
app.add_typer(lab_app, name="lab", rich_help_panel="Lab")


@app.command(rich_help_panel="Train")
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
        if dry_run:
            print_recipe(resolved)
            return
        from llmcourse.pretrain import run

        emit_summary("pretrain", run(resolved, overwrite=overwrite), json_out)

    guarded(debug, action)


@app.command(rich_help_panel="Train")
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
        if dry_run:
            print_recipe(resolved)
            return
        if num_processes > 1:
            from llmcourse.finetune.launch import relaunch

            raise typer.Exit(relaunch(num_processes))
        from llmcourse.finetune.sft import preflight

        preflight(resolved)
        resolved = resolve_lab_base(resolved)
        if preview:
            from llmcourse.finetune.preview import preview as show

            show(resolved)
            return
        from llmcourse.finetune.sft import run

        summary = run(resolved, overwrite=overwrite, resume=resume)
        from llmcourse.distributed import is_main_process

        if is_main_process():
            emit_summary("sft", summary, json_out)

    guarded(debug, action)


def _preference(command: str, recipe: str, overrides: list[str], output_dir: Optional[Path], overwrite: bool, resume: bool,
                preview: bool, dry_run: bool, debug: bool, json_out: bool) -> None:
    def action() -> None:
        from llmcourse.recipes.registry import load_command_recipe

        extra = ["rl=orpo"] if command == "orpo" else []
        resolved = load_command_recipe(command, recipe, overrides + extra, output_dir)
        if dry_run:
            print_recipe(resolved)
            return
        from llmcourse.finetune.dpo import preflight

        preflight(resolved)
        resolved = resolve_lab_base(resolved)
        if preview:
            from llmcourse.finetune.preview import preview_pairs

            preview_pairs(resolved)
            return
        from llmcourse.finetune.dpo import run

        emit_summary(resolved.rl, run(resolved, overwrite=overwrite, resume=resume), json_out)

    guarded(debug, action)


PreviewPairs = Annotated[bool, typer.Option("--preview", help="Show one formatted pair with token counts and exit.")]


def _preference_command(command: str, summary: str) -> None:
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


_preference_command("dpo", "Preference tuning: DPO, IPO, ORPO or SimPO (`rl:`), full or LoRA (TRL, Axolotl-style recipes).")
_preference_command("orpo", "ORPO: SFT and preference alignment in one reference-free run (`llmcourse dpo` with rl: orpo).")


@app.command("merge-adapter", rich_help_panel="Train")
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


@app.command(rich_help_panel="Recipes")
def validate(
    recipes: Annotated[list[str], typer.Argument(help="Recipe files or shipped names.", show_default=False)],
    command: Annotated[Optional[str], typer.Option("--command", "-c", help="Validate as this command's recipe.")] = None,
    debug: Debug = False,
) -> None:
    """Validate recipes without loading any weights."""
    from llmcourse.console import err

    failures = 0
    for name in recipes:
        def action(name: str = name) -> None:
            from llmcourse.recipes.loader import read_yaml, validate as check
            from llmcourse.recipes.registry import detect_command, recipe_model, resolve_recipe_path, validator_for

            path = resolve_recipe_path(name)
            data = read_yaml(path)
            kind = command or detect_command(path)
            resolved = check(recipe_model(kind), data, source=str(path))
            preflight = validator_for(kind)
            if preflight is not None:
                preflight(resolved)
            err.print(f"[green]ok[/] {path} ({kind})")

        try:
            guarded(debug, action)
        except typer.Exit as exit_:
            if exit_.exit_code != 0:
                failures += 1
    if failures:
        err.print(f"[red]{failures} of {len(recipes)} recipe(s) invalid[/]")
        raise typer.Exit(2)


@recipes_app.command("ls")
def recipes_ls() -> None:
    """List the shipped recipes."""
    from rich.table import Table

    from llmcourse.console import out
    from llmcourse.recipes.registry import describe, detect_command, shipped_recipes

    table = Table(show_header=True, header_style="bold")
    for column in ("name", "command", "description"):
        table.add_column(column)
    for name, path in shipped_recipes().items():
        table.add_row(name, detect_command(path), describe(path))
    out.print(table)


@recipes_app.command("cp")
def recipes_cp(
    name: Annotated[str, typer.Argument(help="Shipped recipe name (see `recipes ls`).", show_default=False)],
    dest: Annotated[Path, typer.Argument(help="Destination file or folder.", show_default=False)],
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Copy a shipped recipe to DEST so you can edit it."""

    def action() -> None:
        import shutil

        from llmcourse.console import err
        from llmcourse.errors import UserError, choose
        from llmcourse.recipes.registry import shipped_recipes

        shipped = shipped_recipes()
        key = name.removesuffix(".yaml")
        choose("recipe", key, shipped)
        target = dest / shipped[key].name if dest.is_dir() else dest
        if target.exists() and not overwrite:
            raise UserError(f"{target} already exists", hint="pass --overwrite to replace it")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shipped[key], target)
        err.print(f"copied {key} → {target}")

    guarded(debug, action)


@app.command(rich_help_panel="Info")
def env(json_out: Json = False) -> None:
    """Versions of every engine, the torch device, CUDA and CPU threads."""
    from llmcourse.envinfo import collect

    emit_summary("environment", collect(), json_out)


@lab_app.command("build")
def lab_build(
    overrides: Overrides = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the cached base exists.")] = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Pretrain the lab base once into $LLMCOURSE_HOME and reuse it afterwards."""

    def action() -> None:
        from llmcourse.labcmd import build

        emit_summary("lab base", build(overrides or [], force), json_out)

    guarded(debug, action)


@lab_app.command("export")
def lab_export(
    dest: Annotated[Path, typer.Argument(help="Folder to write the skills and corpus into.", show_default=False)],
    count: Annotated[int, typer.Option(help="Training examples per skill.")] = 2000,
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Write the lab skills (chat, alpaca, preference, text; train and held-out) as jsonl."""

    def action() -> None:
        from llmcourse.labcmd import export

        export(dest, count, overwrite)

    guarded(debug, action)


@lab_app.command("score")
def lab_score(
    model: Annotated[str, typer.Argument(help="Model folder or hub id.", show_default=False)],
    skills: Annotated[str, typer.Option(help="Skills to score, `all` or e.g. parity+add.")] = "all",
    count: Annotated[int, typer.Option(help="Held-out questions per skill.")] = 100,
    prompt_format: Annotated[str, typer.Option(help="auto (chat template if any), chat or plain.")] = "auto",
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Held-out exact match per skill and perplexity on held-out lab text."""

    def action() -> None:
        from llmcourse.labcmd import score

        emit_summary(f"lab score: {model}", score(model, skills, count, prompt_format, allow_pickle), json_out)

    guarded(debug, action)


@app.command(rich_help_panel="Lab")
def demo(
    force: Annotated[bool, typer.Option("--force", help="Rebuild the lab base even if cached.")] = False,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Leave out a stage: gguf, gptq, specialists (the merging experiment), generate.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every training stage (pretraining, SFT, DPO, specialists).")] = 0,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Run every stage on the embedded lab model and print what each measured."""

    def action() -> None:
        from llmcourse.demo import run
        from llmcourse.errors import choose

        for stage in skip or []:
            choose("demo stage", stage, ("gguf", "gptq", "specialists", "generate"))
        run(force=force, as_json=json_out, skip=tuple(skip or ()), seed=seed)

    guarded(debug, action)


from llmcourse.cli_merge import register as register_merge  # noqa: E402
from llmcourse.cli_quantize import register as register_quantize  # noqa: E402
from llmcourse.cli_generate import register as register_generate  # noqa: E402
from llmcourse.cli_generate import register_serving  # noqa: E402
from llmcourse.cli_eval import register as register_eval  # noqa: E402

register_merge(app)
register_quantize(app)
register_generate(app)
register_serving(app)
register_eval(app)


def main() -> None:
    """Console-script entry point (library output on stdout is sent to stderr; see console.py)."""
    from llmcourse.console import results_only_on_stdout

    with results_only_on_stdout():
        app()


if __name__ == "__main__":
    main()
