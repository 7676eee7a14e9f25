"""`llmcourse validate | recipes ls | recipes cp`: recipes checked and copied without loading weights."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Callable, Optional

import typer

from llmcourse.cli.options import Debug, Overwrite
from llmcourse.cli.support import guarded


def validator_for(command: str) -> Callable[[Any], None] | None:
    """The command's own preflight (the checks its real run makes before loading any weight)."""
    if command == "pretrain":
        from llmcourse.finetune.pretrain import preflight

        return preflight
    if command == "sft":
        from llmcourse.finetune.sft import preflight as sft_preflight

        return sft_preflight
    if command in ("dpo", "orpo"):
        from llmcourse.finetune.dpo import preflight as dpo_preflight

        return dpo_preflight
    return None


def validate(
    recipes: Annotated[list[str], typer.Argument(help="Recipe files or shipped names.", show_default=False)],
    command: Annotated[Optional[str], typer.Option("--command", "-c", help="Validate as this command's recipe.")] = None,
    debug: Debug = False,
) -> None:
    """Validate recipes without loading any weights."""
    from llmcourse.core.console import err

    failures = 0
    for name in recipes:
        def action(name: str = name) -> None:
            from llmcourse.recipes.loader import read_yaml, validate as check
            from llmcourse.recipes.registry import detect_command, recipe_model, resolve_recipe_path

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


def recipes_ls() -> None:
    """List the shipped recipes."""
    from rich.table import Table

    from llmcourse.core.console import out
    from llmcourse.recipes.registry import describe, detect_command, shipped_recipes

    table = Table(show_header=True, header_style="bold")
    for column in ("name", "command", "description"):
        table.add_column(column)
    for name, path in shipped_recipes().items():
        table.add_row(name, detect_command(path), describe(path))
    out.print(table)


def recipes_cp(
    name: Annotated[str, typer.Argument(help="Shipped recipe name (see `recipes ls`).", show_default=False)],
    dest: Annotated[Path, typer.Argument(help="Destination file or folder.", show_default=False)],
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Copy a shipped recipe to DEST so you can edit it."""

    def action() -> None:
        import shutil

        from llmcourse.core.console import err
        from llmcourse.core.errors import UserError, choose
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



def register(app: typer.Typer) -> None:
    """Add `validate` and the `recipes` group to the main app."""
    recipes_app = typer.Typer(help="List and copy the shipped recipes.", no_args_is_help=True)
    recipes_app.command("ls")(recipes_ls)
    recipes_app.command("cp")(recipes_cp)
    app.command(rich_help_panel="Recipes")(validate)
    app.add_typer(recipes_app, name="recipes", rich_help_panel="Recipes")
