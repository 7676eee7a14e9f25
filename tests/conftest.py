"""Shared fixtures: offline environment, the real CLI in a subprocess, and one lab base per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 900) -> subprocess.CompletedProcess:
    """Run `python -m llmcourse ARGS` in a subprocess, as a user would, and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llmcourse", *args],
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def lab_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private $LLMCOURSE_HOME for this test session."""
    return tmp_path_factory.mktemp("llmcourse-home")


@pytest.fixture(scope="session")
def lab_base(lab_home: Path) -> dict:
    """The lab base built once with the shipped recipe, through `llmcourse lab build --json`."""
    result = run_cli("lab", "build", "--json", env={"LLMCOURSE_HOME": str(lab_home)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
