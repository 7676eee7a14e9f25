"""`llmcourse demo` reuses the lab base and reports what it measured."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def test_demo_reports_the_base_stage(lab_base: dict, lab_home: Path) -> None:
    result = run_cli("demo", "--json", env={"LLMCOURSE_HOME": str(lab_home)})
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    base = report["stages"][0]
    assert base["path"] == lab_base["path"]
    metrics = base["metrics"]
    assert metrics["params"] == lab_base["parameters"]
    assert 0 < metrics["exact_match/mean"] < 1
    assert metrics["heldout_perplexity"] < lab_base["heldout_perplexity_init"] / 5
    assert metrics["size_mb"] > 5


def test_demo_prints_a_table(lab_base: dict, lab_home: Path) -> None:
    result = run_cli("demo", env={"LLMCOURSE_HOME": str(lab_home)})
    assert result.returncode == 0, result.stderr
    assert "llmcourse demo" in result.stdout and "base (pretrained)" in result.stdout
    assert "sentiment" in result.stdout
