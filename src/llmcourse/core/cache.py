"""Where llmcourse keeps what it builds and downloads: `$LLMCOURSE_HOME`, default `~/.cache/llmcourse`."""

from __future__ import annotations

import os
from pathlib import Path


def llmcourse_home() -> Path:
    """The cache root, from `$LLMCOURSE_HOME` or `~/.cache/llmcourse`."""
    return Path(os.environ.get("LLMCOURSE_HOME", Path.home() / ".cache" / "llmcourse")).expanduser().resolve()
