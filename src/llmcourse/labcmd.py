"""`llmcourse lab build | export | score`: the embedded default, made and measured locally."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from llmcourse.console import err
from llmcourse.errors import UserError
from llmcourse.lab import corpus as lab_corpus
from llmcourse.lab import skills as lab_skills
from llmcourse.outputs import atomic_output

LAB_RECIPE = "lab/pretrain"
PERPLEXITY_DOCUMENTS = 1000
PERPLEXITY_BLOCK = 128


def lab_recipe(overrides: list[str] | None = None) -> Any:
    """The shipped lab pretraining recipe, validated, with optional overrides."""
    from llmcourse.recipes.registry import load_command_recipe

    return load_command_recipe("pretrain", LAB_RECIPE, overrides or [], None)


def build(overrides: list[str], force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the lab base; returns its path and pretraining report."""
    from llmcourse.pretrain import build_lab_base

    path, built = build_lab_base(lab_recipe(overrides), force)
    report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    if not built:
        err.print(f"reusing the lab base in {path}")
    return {"path": str(path), "built": built, **report}


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


def heldout_perplexity(model: Any, tokenizer: Any) -> float:
    """Perplexity on the lab's held-out corpus."""
    from llmcourse.lab import scoring

    docs = lab_corpus.documents("heldout", PERPLEXITY_DOCUMENTS)
    return scoring.perplexity(model, scoring.token_blocks(tokenizer, docs, PERPLEXITY_BLOCK))


def score(model_name: str, skills: str, count: int, prompt_format: str, allow_pickle: bool) -> dict[str, Any]:
    """Exact match per held-out skill and held-out perplexity of one model."""
    from llmcourse.errors import choose

    choose("prompt format", prompt_format, ("auto", "chat", "plain"))
    if count <= 0:
        raise UserError(f"--count must be > 0, got {count}")
    names = list(lab_skills.iter_skill_names(skills))
    from llmcourse.lab import scoring
    from llmcourse.modelio import load_causal_lm
    from llmcourse.training import quiet_libraries

    quiet_libraries()
    started = time.perf_counter()
    model, tokenizer = load_causal_lm(model_name, allow_pickle=allow_pickle)
    if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        from llmcourse.finetune.templates import prepare_chat_template

        prepare_chat_template(tokenizer, "chatml")  # a base model asked in ChatML, as its SFT will be
    result = scoring.exact_match(model, tokenizer, names, count=count, prompt_format=prompt_format)  # type: ignore[arg-type]
    summary: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    summary.update({f"exact_match/{k}": round(v, 4) for k, v in result.per_skill.items()})
    summary["exact_match/mean"] = round(result.mean, 4)
    summary["heldout_perplexity"] = round(heldout_perplexity(model, tokenizer), 3)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    return summary
