"""Shared fixtures: offline environment, the real CLI in a subprocess, and one lab base per session."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Every test and every CLI call shares one private lab cache, never the user's ~/.cache/llmcourse.
# Set LLMCOURSE_TEST_HOME to reuse a lab cache between local runs.
os.environ["LLMCOURSE_HOME"] = os.environ.get("LLMCOURSE_TEST_HOME") or tempfile.mkdtemp(prefix="llmcourse-home-")

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run `python -m llmcourse ARGS` in a subprocess, as a user would, and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llmcourse", *args],
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture(scope="session")
def lab_home() -> Path:
    """The private $LLMCOURSE_HOME of this test session."""
    return Path(os.environ["LLMCOURSE_HOME"])


@pytest.fixture(scope="session")
def lab_base(lab_home: Path) -> dict:
    """The lab base built once with the shipped recipe, through `llmcourse lab build --json`."""
    result = run_cli("lab", "build", "--json", env={"LLMCOURSE_HOME": str(lab_home)})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


@pytest.fixture(scope="session")
def demo_report(lab_base: dict, lab_home: Path) -> dict:
    """`llmcourse demo --json` run once per session: its stages are the lab models other tests start from."""
    # While `make test` still builds the GGUF engine, the first pytest session runs the demo without it.
    skip = ["--skip", os.environ["LLMCOURSE_TEST_DEMO_SKIP"]] if os.environ.get("LLMCOURSE_TEST_DEMO_SKIP") else []
    result = run_cli("demo", "--json", *skip, env={"LLMCOURSE_HOME": str(lab_home)})
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout), "stderr": result.stderr}
