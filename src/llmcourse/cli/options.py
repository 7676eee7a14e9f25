"""Typer option and argument types shared by the commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

Recipe = Annotated[str, typer.Argument(help="Recipe YAML file (or a shipped name such as lab/pretrain).", show_default=False)]
Overrides = Annotated[Optional[list[str]], typer.Argument(help="Dotted overrides, e.g. train.learning_rate=1e-4.", show_default=False)]
OutputDir = Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Where to write the output (overrides output_dir).")]
Overwrite = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output folder.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Print the resolved, validated recipe and exit.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show full tracebacks.")]
Json = Annotated[bool, typer.Option("--json", help="Print a machine-readable summary on stdout.")]
Resume = Annotated[bool, typer.Option("--resume", help="Continue from the newest checkpoint of an interrupted run.")]
AllowPickle = Annotated[bool, typer.Option("--allow-pickle", help="Allow loading pickle (.bin) weights; they can run code.")]
