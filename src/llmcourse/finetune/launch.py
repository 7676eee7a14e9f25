"""`--num-processes N`: re-run the same command under `accelerate launch` (DDP; gloo on the CPU)."""

from __future__ import annotations

import subprocess
import sys

from llmcourse.core.console import err


def relaunch(num_processes: int) -> int:
    """Run this command line again in `num_processes` data-parallel processes; returns the exit code."""
    args = _without_num_processes(sys.argv[1:])
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--multi_gpu", "--num_processes", str(num_processes), "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no",
        "-m", "llmcourse", *args,
    ]
    err.print(f"launching {num_processes} processes with accelerate")
    return subprocess.call(command)


def _without_num_processes(args: list[str]) -> list[str]:
    kept: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
            continue
        if arg == "--num-processes":
            skip = True
            continue
        if arg.startswith("--num-processes="):
            continue
        kept.append(arg)
    return kept
