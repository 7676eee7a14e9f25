"""What we rely on in lm-eval beyond `simple_evaluate` and the `TemplateLM` subclass contract.

Checked against lm-eval 0.4.13 (`pyproject.toml` allows `>=0.4.13,<0.5`); `tests/test_eval_compat.py`
fails when a release changes any of it.

- `TaskManager.task_index` (a public property) maps every task, group and tag name to an entry whose
  `yaml_path` is the YAML it came from (None for Python-only tasks). We read it once per lm-eval
  version to find the family folder of each task, so that later runs index only those folders.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHECKED = "0.4.13"


def task_yaml_paths(manager: Any) -> dict[str, Path | None]:
    """Every name the TaskManager knows, mapped to the YAML file that defines it (None: no YAML)."""
    paths: dict[str, Path | None] = {}
    for name, entry in manager.task_index.items():
        path = getattr(entry, "yaml_path", None)
        paths[name] = Path(path) if path else None
    return paths
