"""Finding lm-eval tasks quickly. lm-eval indexes all of its ~15,000 task YAMLs every time a
TaskManager starts (10–20 s); we index once per lm-eval version, keep each task's family folder in
$LLMCOURSE_HOME, and later start TaskManagers over just the folders a run needs."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.errors import UserError, did_you_mean
from llmcourse.core.outputs import replace_text
from llmcourse.evaluate.compat import task_yaml_paths


def _tasks_root() -> Path:
    import lm_eval.tasks

    return Path(lm_eval.tasks.__file__).parent


def suite_families() -> dict[str, str]:
    """The lm_eval/tasks folder of every task the shipped suites name (lm-eval 0.4's layout), so that a
    suite run opens those folders without indexing all of lm-eval first; verified at use."""
    from llmcourse.evaluate.suites import AGIEVAL, BIGBENCH

    families = {name: "agieval" for name in AGIEVAL} | {name: "bigbench" for name in BIGBENCH}
    return families | {"hellaswag": "hellaswag", "openbookqa": "openbookqa", "winogrande": "winogrande", "arc_easy": "arc",
                       "arc_challenge": "arc", "boolq": "super_glue", "piqa": "piqa", "truthfulqa_mc2": "truthfulqa",
                       "mmlu": "mmlu", "gsm8k": "gsm8k"}


def default_task_families() -> dict[str, str | None]:
    """lm-eval's task, group and tag names mapped to their family folder under lm_eval/tasks (None: no YAML)."""
    from importlib.metadata import version

    from llmcourse.core.cache import llmcourse_home

    cache = llmcourse_home() / "eval" / f"lm-eval-{version('lm-eval')}-tasks.json"
    if cache.is_file():
        return json.loads(cache.read_text(encoding="utf-8"))
    from lm_eval.tasks import TaskManager

    err.print("[dim]indexing lm-eval's tasks (once per lm-eval version)…[/]")
    root = _tasks_root()
    families: dict[str, str | None] = {}
    for name, path in task_yaml_paths(TaskManager()).items():
        try:
            families[name] = path.resolve().relative_to(root).parts[0] if path else None
        except ValueError:
            families[name] = None
    replace_text(cache, json.dumps(families, sort_keys=True) + "\n")
    return families


def task_manager(include: list[str], names: list[str]) -> Any:
    """A TaskManager that knows every task in `names`: the local folders, plus only the lm-eval
    families those names need; an unknown name is a UserError with the nearest known names."""
    from lm_eval.tasks import TaskManager

    logging.getLogger("lm_eval").setLevel(logging.ERROR)
    local = TaskManager(include_path=include, include_defaults=False) if include else None
    missing = [n for n in names if local is None or n not in local.all_tasks]
    if not missing:
        return local
    known = suite_families()
    if all(n in known for n in missing):
        roots = sorted({str(_tasks_root() / known[n]) for n in missing if (_tasks_root() / known[n]).is_dir()})
        quick = TaskManager(include_path=include + roots, include_defaults=False)
        if all(n in quick.all_tasks for n in names):
            return quick
    families = default_task_families()
    for name in missing:
        if name not in families:
            known = list(families) + (local.all_tasks if local else [])
            raise UserError(f"unknown task '{name}'{did_you_mean(name, known)}",
                            hint="`lm-eval ls tasks` lists lm-eval's tasks; --include-path DIR adds your own YAMLs")
    if any(families[n] is None for n in missing):
        return TaskManager(include_path=include or None)
    roots = sorted({str(_tasks_root() / str(families[n])) for n in missing})
    return TaskManager(include_path=include + roots, include_defaults=False)
