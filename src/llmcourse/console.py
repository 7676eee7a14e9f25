"""The rich consoles: human output goes to stderr so that `--json` keeps stdout machine-readable."""

from __future__ import annotations

from rich.console import Console

err = Console(stderr=True)
out = Console()
