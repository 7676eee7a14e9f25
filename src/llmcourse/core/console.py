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

# Tables printed to a pipe or a log file keep a readable width instead of rich's 80-column default;
# 100 columns, so that what fits a log also fits a 100-column terminal.
LOG_WIDTH = 100
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=LOG_WIDTH)
out = Console() if sys.stdout.isatty() else Console(width=LOG_WIDTH)
_results: TextIO | None = None


def stdout() -> TextIO:
    """Where our results go: the real stdout, even while library output is sent to stderr."""
    return _results or sys.stdout


class FinalProgressLines:
    """A text stream for a log file: of each line rewritten in place with carriage returns (a
    progress bar), only its final state is passed on."""

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self.pending = ""

    def write(self, text: str) -> int:
        """Keep the text after the last carriage return of each line; pass on finished lines."""
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            self.target.write(line.rsplit("\r", 1)[-1] + "\n")
        return len(text)

    def flush(self) -> None:
        """Flush the target (an unfinished line stays pending)."""
        self.target.flush()

    def isatty(self) -> bool:
        """Never a terminal: libraries that ask draw no live display."""
        return False

    def close_line(self) -> None:
        """Pass on what is pending as a finished line."""
        if self.pending.strip("\r"):
            self.target.write(self.pending.rsplit("\r", 1)[-1] + "\n")
        self.pending = ""


@contextlib.contextmanager
def progress_bars_collapsed_in_logs() -> Iterator[None]:
    """While stderr is a log file or a pipe, not a terminal, libraries' progress bars (tqdm redraws
    each bar with carriage returns) leave one line each, their final state, instead of a flood."""
    if sys.stderr.isatty():
        yield
        return
    stream = FinalProgressLines(sys.stderr)
    try:
        with contextlib.redirect_stderr(stream):  # type: ignore[type-var]
            yield
    finally:
        stream.close_line()


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
