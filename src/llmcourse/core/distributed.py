"""Which process this is in a multi-process (accelerate / torchrun) run, without importing torch."""

from __future__ import annotations

import os


def is_main_process() -> bool:
    """True in single-process runs and on rank 0 of a multi-process one."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0
