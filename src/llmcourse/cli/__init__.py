"""The `llmcourse` command line (Typer). Heavy libraries are imported inside the commands only."""

from __future__ import annotations

import typer

from llmcourse.cli import eval as eval_commands
from llmcourse.cli import generate, lab, merge, quantize, recipes, serve, train

app = typer.Typer(
    name="llmcourse",
    help="Recipe-driven command line for the whole life of an open LLM: pretrain, fine-tune, merge, "
    "quantize, evaluate and serve. Runs offline on the embedded lab model, or on hub models.",
    rich_markup_mode="rich",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

for group in (train, recipes, lab, merge, quantize, generate, serve, eval_commands):
    group.register(app)


def main() -> None:
    """Console-script entry point (library output on stdout is sent to stderr; see core/console.py).

    Into a log file rather than a terminal, the libraries' tqdm bars (lm-eval prints one per task)
    are switched off; our own progress is rich's, which a log gets as plain lines.
    """
    import os
    import sys

    from llmcourse.core.console import results_only_on_stdout

    if not sys.stderr.isatty():
        os.environ.setdefault("TQDM_DISABLE", "1")  # read by tqdm when it is imported, so before any library

    with results_only_on_stdout():
        app()


if __name__ == "__main__":
    main()
