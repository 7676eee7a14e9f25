"""`llmcourse lab export`: every lab skill in every format and split, plus the corpus, as files."""

from __future__ import annotations

import json
from pathlib import Path

from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.core.outputs import atomic_output
from llmcourse.lab import corpus as lab_corpus
from llmcourse.lab import skills as lab_skills


def export(dest: Path, count: int, overwrite: bool) -> Path:
    """Write every skill in every format and split, plus the corpus, as files a user can read."""
    if count <= 0:
        raise UserError(f"--count must be > 0, got {count}")
    with atomic_output(dest, overwrite) as folder:
        for name in lab_skills.SKILLS:
            skill_dir = folder / name
            skill_dir.mkdir()
            for split in lab_skills.SPLITS:
                rows = lab_skills.examples(name, split, count if split == "train" else max(count // 4, 1))
                for fmt, convert in lab_skills.FORMATS.items():
                    with (skill_dir / f"{split}.{fmt}.jsonl").open("w", encoding="utf-8") as handle:
                        for ex in rows:
                            handle.write(json.dumps(convert(ex)) + "\n")
        for split in lab_skills.SPLITS:
            docs = lab_corpus.documents(split, 2000 if split == "train" else 500)
            (folder / f"corpus.{split}.txt").write_text("\n\n".join(docs) + "\n", encoding="utf-8")
        lines = [f"- `{s.name}`: {s.description}" for s in lab_skills.SKILLS.values()]
        (folder / "README.md").write_text(
            "# llmcourse lab data\n\nSkills (train and held-out keys are disjoint):\n\n" + "\n".join(lines) + "\n",
            encoding="utf-8",
        )
    err.print(f"wrote the lab data to {dest}")
    return dest
