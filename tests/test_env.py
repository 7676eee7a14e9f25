"""`llmcourse env` reports engines and hardware."""

from __future__ import annotations

import json
import os

from conftest import run_cli


def test_env_reports_versions_and_device() -> None:
    result = run_cli("env", "--json")
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    import torch

    assert info["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert info["device"] in ("cpu", "cuda")
    assert info["cpu_count"] == os.cpu_count()
    assert {"transformers", "trl", "peft", "accelerate"} <= set(info)
