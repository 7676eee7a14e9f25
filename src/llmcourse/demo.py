"""`llmcourse demo`: every stage on the embedded lab model, one table of what each measured."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcourse.console import err, out
from llmcourse.lab import skills as lab_skills


@dataclass
class StageResult:
    """What one stage of the demo measured."""

    stage: str
    path: str
    metrics: dict[str, Any] = field(default_factory=dict)


def folder_size_mb(path: Path) -> float:
    """Size of the weight files in a model folder (or of one file), in MB."""
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) / 1e6


def base_stage(force: bool) -> StageResult:
    """Build or reuse the lab base and measure it: exact match, perplexity, size."""
    from llmcourse.labcmd import build, score

    built = build([], force)
    path = Path(built["path"])
    measured = score(str(path), "all", 100, "plain", allow_pickle=False)
    metrics = {
        "params": built["parameters"],
        "pretrain_loss": built["last_logged_loss"],
        "pretrain_s": built["elapsed_s"] if built["built"] else None,
        **measured,
        "size_mb": round(folder_size_mb(path), 2),
    }
    return StageResult("base (pretrained)", str(path), metrics)


def print_table(results: list[StageResult]) -> None:
    """One rich table: a row per stage, exact match per skill, perplexity and size."""
    from rich.table import Table

    table = Table(
        title="llmcourse demo — the lab model at each stage",
        caption="held-out exact match per skill, held-out perplexity, weight size, last training loss",
        header_style="bold",
    )
    table.add_column("stage")
    table.add_column("params", justify="right")
    for name in lab_skills.SKILLS:
        table.add_column(name.replace("_", " "), justify="right")
    for column in ("EM mean", "ppl", "size MB", "loss"):
        table.add_column(column, justify="right")
    for result in results:
        m = result.metrics
        params = m.get("params")
        table.add_row(
            result.stage,
            f"{params / 1e6:.2f} M" if params else "",
            *[_pct(m.get(f"exact_match/{name}")) for name in lab_skills.SKILLS],
            _pct(m.get("exact_match/mean")),
            f"{m['heldout_perplexity']:.2f}" if "heldout_perplexity" in m else "",
            f"{m['size_mb']:.1f}" if "size_mb" in m else "",
            f"{m['pretrain_loss']:.3f}" if m.get("pretrain_loss") is not None else "",
        )
    out.print(table)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.0f}%"


def run(force: bool = False, as_json: bool = False) -> list[StageResult]:
    """Run the demo stages in order and print the table (or JSON)."""
    started = time.perf_counter()
    err.print("[bold]llmcourse demo[/]: the lab model, offline, end to end")
    results = [base_stage(force)]
    elapsed = time.perf_counter() - started
    if as_json:
        payload = {"stages": [r.__dict__ for r in results], "elapsed_s": round(elapsed, 1)}
        sys.stdout.write(json.dumps(payload, indent=2, default=str) + "\n")
    else:
        print_table(results)
        err.print(f"done in {elapsed:.0f} s; the base model is in {results[0].path}")
    return results
