"""The eval report: per task (task, version, metric, value ± stderr), per suite (AutoEval's averages),
one leaderboard row per model, and a comparison of the models with the best value per column
highlighted and deltas against the first model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmcourse.core.console import err, out
from llmcourse.evaluate.suites import Suite, headline_metric

PPL_METRIC = "word_perplexity,none"


def task_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Every (task, metric) lm-eval reported, with its version, filter and stderr."""
    rows = []
    for task, metrics in sorted(results.get("results", {}).items()):
        for key, value in metrics.items():
            if "," not in key or "_stderr" in key or not isinstance(value, (int, float)):
                continue
            metric, _, filt = key.partition(",")
            stderr = metrics.get(f"{metric}_stderr,{filt}")
            rows.append({"task": task, "version": results.get("versions", {}).get(task), "filter": filt, "metric": metric,
                         "value": float(value), "stderr": float(stderr) if isinstance(stderr, (int, float)) else None})
    return rows


def suite_scores(suite: Suite, results: dict[str, Any], skip: set[str]) -> dict[str, float]:
    """Each of the suite's groups averaged over its tasks' headline metrics, and the mean of those."""
    per_task = {}
    for task, metrics in results.get("results", {}).items():
        key = headline_metric(task, metrics)
        if key and task not in skip:
            per_task[task] = float(metrics[key])
    groups = suite.groups or {task: (task,) for task in per_task}
    scores = {}
    for group, tasks in groups.items():
        values = [per_task[t] for t in tasks if t in per_task]
        if values:
            scores[group] = sum(values) / len(values)
    extra = [t for t in per_task if not any(t in tasks for tasks in groups.values())]
    scores.update({t: per_task[t] for t in extra})
    if scores:
        scores["average"] = sum(scores.values()) / len(scores)
    return scores


def leaderboard_row(label: str, suite: Suite, results: dict[str, Any], perplexity_task: str | None, seconds: float) -> dict[str, Any]:
    """One model's line: suite scores, perplexity and elapsed time."""
    row: dict[str, Any] = {"model": label, "scores": suite_scores(suite, results, {perplexity_task} if perplexity_task else set()),
                           "elapsed_s": round(seconds, 1), "tasks": task_rows(results)}
    if perplexity_task:
        metrics = results["results"].get(perplexity_task, {})
        row["word_perplexity"] = metrics.get(PPL_METRIC)
        row["byte_perplexity"] = metrics.get("byte_perplexity,none")
    return row


def _columns(boards: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for board in boards:
        names += [k for k in board["scores"] if k not in names and k != "average"]
    return names + ["average"]


def _cells(boards: list[dict[str, Any]], markup: str) -> list[list[str]]:
    """Formatted cells; the best value per column marked, deltas against the first model."""
    columns = _columns(boards)
    rows = [[b["model"]] for b in boards]
    for column in columns:
        values = [b["scores"].get(column) for b in boards]
        rows = _add_column(rows, values, higher_is_better=True, markup=markup, scale=100)
    if any(b.get("word_perplexity") is not None for b in boards):
        rows = _add_column(rows, [b.get("word_perplexity") for b in boards], higher_is_better=False, markup=markup, scale=1)
    for row, board in zip(rows, boards):
        row.append(f"{board['elapsed_s']:.0f} s")
    return rows


def _add_column(rows: list[list[str]], values: list[float | None], higher_is_better: bool, markup: str, scale: float) -> list[list[str]]:
    present = [v for v in values if v is not None]
    best = (max(present) if higher_is_better else min(present)) if present else None
    first = values[0]
    for index, (row, value) in enumerate(zip(rows, values)):
        if value is None:
            row.append("")
            continue
        text = f"{scale * value:.1f}" if scale == 100 else f"{value:.3g}"
        if index and first is not None:
            text += f" ({scale * (value - first):+.1f})" if scale == 100 else f" ({value - first:+.3g})"
        if len(present) > 1 and value == best:
            text = f"[bold green]{text}[/]" if markup == "rich" else f"**{text}**"
        row.append(text)
    return rows


def _headers(boards: list[dict[str, Any]]) -> list[str]:
    return ["model", *_columns(boards)] + (["word ppl"] if any(b.get("word_perplexity") is not None for b in boards) else []) + ["time"]


def print_tasks(label: str, results: dict[str, Any]) -> None:
    """One model's per-task table."""
    from rich.table import Table

    table = Table(title=f"{label}: per task", header_style="bold")
    for column in ("task", "version", "filter", "metric", "value", "± stderr"):
        table.add_column(column, justify="right" if column in ("value", "± stderr", "version") else "left")
    for row in task_rows(results):
        table.add_row(row["task"], str(row["version"] or ""), row["filter"], row["metric"], f"{row['value']:.4f}",
                      "" if row["stderr"] is None else f"{row['stderr']:.4f}")
    err.print(table)


def print_comparison(suite: Suite, boards: list[dict[str, Any]], console: Any = None) -> None:
    """The leaderboard: one row per model (percentages; deltas against the first model)."""
    from rich.table import Table

    table = Table(title=f"llmcourse eval — {suite.name}: {suite.description}", header_style="bold",
                  caption="scores in %, best per column in green, (±) against the first model")
    for header in _headers(boards):
        table.add_column(header, justify="left" if header == "model" else "right")
    for row in _cells(boards, "rich"):
        table.add_row(*row)
    (console or out).print(table)


def markdown(suite: Suite, boards: list[dict[str, Any]], folder: Path) -> str:
    """report.md: the leaderboard, then each model's per-task table."""
    headers = _headers(boards)
    lines = [f"# Evaluation: {suite.name}", "", suite.description, "",
             "| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in _cells(boards, "markdown")]
    lines += ["", "Scores in %, best per column in bold, (±) against the first model. Averages follow LLM AutoEval: "
              "acc_norm where a task has it (else acc), mc2 for TruthfulQA, strict exact match for GSM8K.", ""]
    for board in boards:
        lines += [f"## {board['model']}", "", "| task | version | filter | metric | value | ± stderr |", "|---|---|---|---|---|---|"]
        for row in board["tasks"]:
            stderr = "" if row["stderr"] is None else f"{row['stderr']:.4f}"
            lines.append(f"| {row['task']} | {row['version'] or ''} | {row['filter']} | {row['metric']} | {row['value']:.4f} | {stderr} |")
        lines.append("")
    return "\n".join(lines)


def post_json(url: str, payload: dict[str, Any], token: str) -> dict[str, Any]:
    """POST JSON to the GitHub API (the network boundary)."""
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(payload).encode(), method="POST", headers={
        "Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json", "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def publish_gist(text: str, private: bool, token: str) -> str:
    """report.md as a gist: secret when `private` (GitHub's `public: false`), public otherwise; returns its URL."""
    payload = {"description": "llmcourse eval report", "public": not private, "files": {"report.md": {"content": text}}}
    return str(post_json("https://api.github.com/gists", payload, token)["html_url"])
