"""What every command shares: error handling, recipe loading with overrides, summaries."""

from __future__ import annotations

import json
import os
import traceback
from typing import Any, Callable, NoReturn

import typer

from llmcourse.core.errors import EXIT_USER_ERROR, Interrupted, UserError


def fail(error: UserError, debug: bool) -> NoReturn:
    """Print a user error as one line (+ hint) on stderr and exit 2."""
    from rich.markup import escape

    from llmcourse.core.console import err

    if debug:
        err.print(traceback.format_exc(), markup=False, highlight=False)
    # Messages quote user input and pip extras (`llmcourse[hqq]`): printed as written, never as markup.
    err.print(f"[bold red]error:[/] {escape(error.message)}", markup=True, highlight=False, soft_wrap=True)
    if error.hint:
        err.print(f"  [dim]hint:[/] {escape(error.hint)}", highlight=False, soft_wrap=True)
    raise typer.Exit(EXIT_USER_ERROR)


def guarded(debug: bool, action: Callable[[], Any]) -> Any:
    """Run `action`, mapping UserError to exit 2 (a traceback only with --debug)."""
    debug = debug or os.environ.get("LLMCOURSE_DEBUG") == "1"
    try:
        return action()
    except UserError as error:
        fail(error, debug)
    except Interrupted as stop:
        from llmcourse.core.console import err

        err.print(f"[yellow]{stop.message}[/]", highlight=False, soft_wrap=True)
        raise typer.Exit(130)
    except KeyboardInterrupt:
        from llmcourse.core.console import err

        err.print("[yellow]interrupted[/]")
        raise typer.Exit(130)


def print_recipe(recipe: Any) -> None:
    """The resolved recipe as YAML on stdout (for --dry-run)."""
    from llmcourse.core.console import stdout
    from llmcourse.recipes.loader import dump_recipe

    stdout().write(dump_recipe(recipe))


def emit_summary(title: str, summary: dict[str, Any], as_json: bool) -> None:
    """A run summary: JSON on stdout with --json, else a rich table."""
    from llmcourse.core.console import stdout

    if as_json:
        stdout().write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    from rich.table import Table

    from llmcourse.core.console import out

    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in summary.items():
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    out.print(table)


def lab_base_path() -> str:
    """The lab base folder (`lab://base`), built on first use."""
    from llmcourse.finetune.pretrain import build_lab

    return build_lab([])["path"]


def resolve_lab_base(recipe: Any, field: str = "base_model") -> Any:
    """Replace `lab://base` in `recipe.<field>` (a name, or a list of names) by the lab base folder."""
    from llmcourse.core.modelio import LAB_BASE

    value = getattr(recipe, field, None)
    if value == LAB_BASE:
        return recipe.model_copy(update={field: lab_base_path()})
    if isinstance(value, list) and LAB_BASE in value:
        base = lab_base_path()
        return recipe.model_copy(update={field: [base if name == LAB_BASE else name for name in value]})
    return recipe
