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


def test_a_changed_lab_is_scored_on_its_own_questions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The task folder follows the questions: after a skill's answers change (a new lab data version),
    lm-eval reads the new ones, not the folder written for the old lab."""
    import dataclasses
    import json

    from llmcourse.evaluate import lab_tasks
    from llmcourse.lab import skills

    monkeypatch.setenv("LLMCOURSE_HOME", str(tmp_path))
    before = lab_tasks.lab_tasks_folder()
    real_examples = skills.examples

    def renamed_answers(skill: str, split: str, count: int, **kwargs):  # type: ignore[no-untyped-def]
        rows = real_examples(skill, split, count, **kwargs)
        return [dataclasses.replace(row, answer="new " + row.answer) if skill == "sign" else row for row in rows]

    monkeypatch.setattr(skills, "examples", renamed_answers)
    after = lab_tasks.lab_tasks_folder()
    answers = [json.loads(line)["answer"] for line in (after / "sign.jsonl").read_text(encoding="utf-8").splitlines()]
    assert after != before and answers and all(answer.startswith("new ") for answer in answers)
    assert (before / "sign.jsonl").read_text(encoding="utf-8") != (after / "sign.jsonl").read_text(encoding="utf-8")
