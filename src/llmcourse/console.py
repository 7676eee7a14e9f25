"""The rich consoles: human output goes to stderr so that `--json` keeps stdout machine-readable."""

from __future__ import annotations

import sys

from rich.console import Console

# Tables printed to a pipe or a log file keep a readable width instead of rich's 80-column default.
err = Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=140)
out = Console() if sys.stdout.isatty() else Console(width=140)
