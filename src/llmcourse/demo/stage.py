"""What every demo stage shares: its result row, weight sizes and cached lab scores. The demo's
stage modules import this, never `llmcourse.demo.run`, which imports them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class StageResult:
    """What one stage of the demo measured."""

    stage: str
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)



def lab_score(path: Path, prompt_format: str, force: bool = False) -> dict[str, Any]:
    """A lab model's held-out scores, kept beside it so that a rerun of the demo reuses them: chat
    models through `llmcourse eval` (lm-eval), the base (asked in plain Q/A, or in ChatML it was
    never given) through `llmcourse lab score`."""
    from llmcourse import __version__

    cached = path / f"lab-score-{prompt_format}.json"
    if cached.is_file() and not force:
        saved = json.loads(cached.read_text(encoding="utf-8"))
        if saved.get("llmcourse") == __version__:
            return saved["metrics"]
    if prompt_format == "chat" and _has_chat_template(path):
        from llmcourse.demo.eval import chat_model_scores

        metrics = chat_model_scores(path)
    else:
        from llmcourse.lab.scoring import score_model as score

        metrics = score(str(path), "all", 100, prompt_format, allow_pickle=False)
    cached.write_text(json.dumps({"llmcourse": __version__, "metrics": metrics}, indent=2) + "\n", encoding="utf-8")
    return metrics


def _has_chat_template(path: Path) -> bool:
    config = path / "tokenizer_config.json"
    return (path / "chat_template.jinja").is_file() or (config.is_file() and "chat_template" in json.loads(config.read_text(encoding="utf-8")))
