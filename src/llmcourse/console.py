"""The rich consoles: human output goes to stderr so that `--json` keeps stdout machine-readable.

While a command runs from the console script, whatever the libraries print on stdout (GPTQModel's
banner when peft or transformers import it, progress lines) is sent to stderr too, and only our own
results reach the real stdout, through `stdout()` and `out`.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator, TextIO

from rich.console import Console

# Tables printed to a pipe or a log file keep a readable width instead of rich's 80-column default.
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=140)
out = Console() if sys.stdout.isatty() else Console(width=140)
_results: TextIO | None = None


def stdout() -> TextIO:
    """Where our results go: the real stdout, even while library output is sent to stderr."""
    return _results or sys.stdout


@contextlib.contextmanager
def results_only_on_stdout() -> Iterator[None]:
    """Send everything printed on stdout to stderr, except what goes through `stdout()` and `out`."""
    global _results
    _results = sys.stdout
    out.file = _results
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        _results = None
        out.file = None  # back to following sys.stdout
