"""The lab skills as lm-eval task YAMLs with local data files, so that lm-eval itself (or anyone with
the folder and `--include_path`) scores the lab models.

Per skill two tasks: `lab_<skill>` (greedy generation until the end of the line or turn, exact
match after stripping whitespace) and `lab_<skill>_mc` (log-likelihood of the right answer against
a plausible wrong one, in a fixed per-question order). The questions are the skill's held-out split.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml

from llmcourse.core.outputs import replace_text

TASK_VERSION = 3.0
HELDOUT_PER_SKILL = 100


def _generation_task(skill: str, data: Path) -> dict:
    return {
        "task": f"lab_{skill}",
        "tag": ["lab", "lab_exact_match"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "generate_until",
        "doc_to_text": "{{question}}",
        "doc_to_target": "{{answer}}",
        "generation_kwargs": {"until": ["\n", "<|im_end|>", "<|eot_id|>"], "do_sample": False, "max_gen_toks": 8},
        "metric_list": [{"metric": "exact_match", "aggregation": "mean", "higher_is_better": True,
                         "regexes_to_ignore": [r"^\s+", r"\s+$"]}],
        "metadata": {"version": TASK_VERSION, "skill": skill},
    }


def _choice_task(skill: str, data: Path) -> dict:
    return {
        "task": f"lab_{skill}_mc",
        "tag": ["lab", "lab_choice"],
        "dataset_path": "json",
        "dataset_kwargs": {"data_files": {"test": str(data)}},
        "test_split": "test",
        "output_type": "multiple_choice",
        "doc_to_text": "{{question}}",
        "doc_to_choice": "{{choices}}",
        "doc_to_target": "{{gold}}",
        "target_delimiter": "",  # a chat model's answer starts the assistant turn, with no leading space
        "metric_list": [{"metric": "acc", "aggregation": "mean", "higher_is_better": True}],  # two short answers: no length norm
        "metadata": {"version": TASK_VERSION, "skill": skill},
    }


def _rows(skill: str, count: int) -> list[dict]:
    from llmcourse.lab import skills

    rows = []
    for example in skills.examples(skill, "heldout", count):
        flip = int(hashlib.sha256(example.question.encode()).hexdigest(), 16) % 2
        choices = [example.rejected, example.answer] if flip else [example.answer, example.rejected]
        rows.append({"question": example.question, "answer": example.answer, "choices": choices, "gold": flip})
    return rows


def write_lab_tasks(folder: Path, count: int = HELDOUT_PER_SKILL) -> Path:
    """Write the data files and task YAMLs into `folder` (once: reused when already complete)."""
    return _write(folder, _all_rows(count))


def lab_tasks_folder() -> Path:
    """Where the lab task YAMLs live: under $LLMCOURSE_HOME, in a folder named by the task
    definitions' version and a digest of the questions, so that a changed lab (a new data version,
    a skill's new answers) gets its own folder instead of being scored against the old questions."""
    from llmcourse.core.cache import llmcourse_home

    rows = _all_rows(HELDOUT_PER_SKILL)
    digest = hashlib.sha256(json.dumps(rows, sort_keys=True).encode()).hexdigest()[:10]
    return _write(llmcourse_home() / "eval" / f"lab-tasks-v{TASK_VERSION:g}-{digest}", rows)


def _all_rows(count: int) -> dict[str, list[dict]]:
    from llmcourse.lab import skills

    return {skill: _rows(skill, count) for skill in skills.SKILLS}


def _write(folder: Path, rows: dict[str, list[dict]]) -> Path:
    count = len(next(iter(rows.values())))
    marker = folder / "complete.json"
    if marker.is_file() and json.loads(marker.read_text(encoding="utf-8")).get("count") == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    for skill, skill_rows in rows.items():
        data = folder / f"{skill}.jsonl"
        replace_text(data, "".join(json.dumps(row) + "\n" for row in skill_rows))
        for task in (_generation_task(skill, data.resolve()), _choice_task(skill, data.resolve())):
            replace_text(folder / f"{task['task']}.yaml", yaml.safe_dump(task, sort_keys=False))
    replace_text(marker, json.dumps({"count": count, "version": TASK_VERSION}) + "\n")
    return folder


def perplexity_task(name: str, documents: list[str], folder: Path) -> Path:
    """A rolling log-likelihood task over `documents` (lm-eval's word and byte perplexity, bits per byte)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    replace_text(data, "".join(json.dumps({"text": doc}) + "\n" for doc in documents))
    task = {
        "task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(data.resolve())}},
        "test_split": "test", "output_type": "loglikelihood_rolling", "doc_to_text": "", "doc_to_target": "{{text}}",
        "metric_list": [{"metric": m} for m in ("word_perplexity", "byte_perplexity", "bits_per_byte")],
        "metadata": {"version": TASK_VERSION},
    }
    replace_text(folder / f"{name}.yaml", yaml.safe_dump(task, sort_keys=False))
    return folder


def perplexity_source(source: str) -> tuple[str, list[str]]:
    """(task name, documents) for `--perplexity lab|FILE` (.txt: blank-line separated; .jsonl: `text`)."""
    from llmcourse.core.errors import UserError

    if source == "lab":
        from llmcourse.lab import corpus

        return "perplexity_lab", corpus.documents("heldout", 64)
    path = Path(source).expanduser()
    if not path.is_file():
        raise UserError(f"--perplexity: file not found: {source}", hint="pass `lab` or a .txt/.jsonl file")
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        documents = []
        for number, line in enumerate(raw.splitlines(), 1):
            try:
                row = json.loads(line) if line.strip() else None
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not JSON: {exc.msg}") from exc
            if row is not None and not (isinstance(row, dict) and isinstance(row.get("text"), str)):
                raise UserError(f"{path}:{number}: expected an object with a `text` string")
            if row is not None:
                documents.append(row["text"])
    else:
        documents = [doc.strip() for doc in raw.split("\n\n") if doc.strip()]
    if not documents:
        raise UserError(f"--perplexity: {source} holds no text")
    digest = hashlib.sha256("\n\n".join(documents).encode()).hexdigest()[:8]
    return f"perplexity_{re.sub(r'[^A-Za-z0-9_]', '_', path.stem)}_{digest}", documents
