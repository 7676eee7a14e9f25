"""The course's pictures of decoding: the beam-search tree (nodes are tokens, coloured by their
probability; the chosen path in bold) and the top-k next-token probabilities at each greedy step."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BeamNode:
    """One expanded token in the beam tree."""

    token: str
    prob: float
    score: float  # cumulative log-probability of the sequence ending here
    depth: int
    parent: int | None
    ids: list[int] = field(default_factory=list)


def beam_tree(engine: Any, ids: list[int], beams: int, steps: int) -> tuple[list[BeamNode], list[int]]:
    """Expand `beams` children of each kept sequence for `steps` steps; (every node, the best path)."""
    nodes = [BeamNode("<prompt>", 1.0, 0.0, 0, None, list(ids))]
    frontier = [0]
    for depth in range(1, steps + 1):
        children = []
        for index in frontier:
            parent = nodes[index]
            if parent.parent is not None and parent.ids[-1] in engine.stop_ids:
                children.append(index)  # a finished hypothesis stays in the beam as it is
                continue
            for token, prob, token_id in _top(engine, parent.ids, beams):
                nodes.append(BeamNode(token, prob, parent.score + math.log(max(prob, 1e-12)), depth, index, parent.ids + [token_id]))
                children.append(len(nodes) - 1)
        frontier = sorted(children, key=lambda i: nodes[i].score, reverse=True)[:beams]
    path, cursor = [], frontier[0]
    while cursor is not None:
        path.append(cursor)
        cursor = nodes[cursor].parent
    return nodes, path[::-1]


def _top(engine: Any, ids: list[int], k: int) -> list[tuple[str, float, int]]:
    import torch

    with torch.no_grad():
        logits = engine.model(input_ids=torch.tensor([ids], device=engine.model.device)).logits[0, -1].float()
    values, indices = torch.softmax(logits, -1).topk(k)
    return [(engine.tokenizer.decode([int(i)]), float(v), int(i)) for v, i in zip(values, indices)]


def draw_beam_tree(nodes: list[BeamNode], path: list[int], target: Path, title: str) -> Path:
    """Nodes by depth (x) and score rank (y), coloured by token probability, best path bold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_depth: dict[int, list[int]] = {}
    for index, node in enumerate(nodes):
        by_depth.setdefault(node.depth, []).append(index)
    position = {}
    for depth, members in by_depth.items():
        members.sort(key=lambda i: (nodes[i].parent or 0, -nodes[i].prob))
        for rank, index in enumerate(members):
            position[index] = (depth, -(rank - (len(members) - 1) / 2))
    tallest = max(len(m) for m in by_depth.values())
    figure, axis = plt.subplots(figsize=(2.2 * len(by_depth) + 2, 0.55 * tallest + 2), dpi=110)
    colours = plt.get_cmap("viridis")
    on_path = set(path)
    for index, node in enumerate(nodes):
        if node.parent is not None:
            (x0, y0), (x1, y1) = position[node.parent], position[index]
            bold = index in on_path and node.parent in on_path
            axis.plot([x0, x1], [y0, y1], color="#d62728" if bold else "#bbbbbb", linewidth=2.5 if bold else 0.8, zorder=1)
    for index, node in enumerate(nodes):
        x, y = position[index]
        label = node.token.replace("\n", "\\n") if node.parent is not None else "prompt"
        axis.text(x, y, f"{label}\n{node.prob:.2f}", ha="center", va="center", fontsize=8, zorder=2,
                  bbox={"boxstyle": "round", "facecolor": colours(node.prob), "alpha": 0.85,
                        "edgecolor": "#d62728" if index in on_path else "white", "linewidth": 2 if index in on_path else 0.5})
    axis.set_xlim(-0.6, len(by_depth) - 0.4)
    axis.set_ylim(-(tallest + 1) / 2, (tallest + 1) / 2)
    axis.axis("off")
    axis.set_title(title)
    mappable = plt.cm.ScalarMappable(cmap=colours, norm=plt.Normalize(0, 1))
    figure.colorbar(mappable, ax=axis, fraction=0.03, label="token probability")
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
    return target


def draw_top_k(engine: Any, ids: list[int], steps: int, k: int, target: Path, title: str) -> Path:
    """Bar charts of the top-k next-token probabilities along the greedy path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    columns = min(steps, 4)
    rows = math.ceil(steps / columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.4 * columns, 2.6 * rows), dpi=110, squeeze=False)
    current = list(ids)
    for step in range(steps):
        top = _top(engine, current, k)
        axis = axes[step // columns][step % columns]
        labels = [t.replace("\n", "\\n") or "␣" for t, _, _ in top]
        axis.barh(range(len(top))[::-1], [p for _, p, _ in top], color=["#d62728"] + ["#1f77b4"] * (len(top) - 1))
        axis.set_yticks(range(len(top))[::-1], labels, fontsize=8)
        axis.set_xlim(0, 1)
        axis.set_title(f"step {step + 1}", fontsize=9)
        current.append(top[0][2])
    for extra in range(steps, rows * columns):
        axes[extra // columns][extra % columns].axis("off")
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(target)
    plt.close(figure)
    return target


def decoding_pictures(engine: Any, ids: list[int], beams: int, target: Path) -> dict[str, str]:
    """The course's two pictures for one prompt: the beam-search tree at `target` and the top-k bars
    along the greedy path beside it (NAME-topk.png)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    nodes, path = beam_tree(engine, ids, beams=min(beams, 4), steps=5)
    tree = draw_beam_tree(nodes, path, target, f"beam search ({min(beams, 4)} beams, 5 steps): {Path(engine.name).name}")
    bars = draw_top_k(engine, ids, steps=8, k=6, target=target.with_name(target.stem + "-topk.png"),
                      title="top-6 next-token probabilities along the greedy path")
    return {"beam_tree": str(tree), "top_k": str(bars)}
