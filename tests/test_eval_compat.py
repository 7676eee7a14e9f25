"""What llmcourse relies on in lm-eval (`llmcourse.evaluate.compat`): fails when a release changes it."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="pip install 'llmcourse[eval]'")


def test_task_index_names_each_tasks_yaml(tmp_path: Path) -> None:
    from lm_eval.tasks import TaskManager

    from llmcourse.evaluate.compat import task_yaml_paths
    from llmcourse.evaluate.lab_tasks import write_lab_tasks

    folder = write_lab_tasks(tmp_path / "tasks", count=5)
    paths = task_yaml_paths(TaskManager(include_path=str(folder), include_defaults=False))
    assert {"lab_parity", "lab_sign"} <= set(paths)
    assert paths["lab_parity"] is not None and paths["lab_parity"].resolve().parent == folder.resolve()
    assert paths["lab_parity"].suffix == ".yaml" and "lab_parity" in paths["lab_parity"].read_text(encoding="utf-8")
