"""`llmcourse tree MODEL`: the model's family, walked from cards, and drawn as PNG, Mermaid and JSON.

Parents come from the card's `base_model`, else from tags that name models (`base_model:...`),
else from a `mergekit_config.yml` / `merge.yml` / `mergekit_moe_config.yml`. Local folders are read
directly; hub ids through `huggingface_hub` (its cache makes a second walk free). A model that
cannot be read is kept as a leaf marked unreachable, so an offline walk still draws what it knows.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmcourse.core.modelio import looks_like_local_path
from llmcourse.core.outputs import read_card_metadata

MERGE_FILES = ("mergekit_config.yml", "merge.yml", "mergekit_moe_config.yml")
PERMISSIVE = {"apache-2.0", "mit", "bsd", "bsd-2-clause", "bsd-3-clause", "cc-by-4.0", "cc-by-sa-4.0", "cc0-1.0", "unlicense",
              "openrail", "openrail++", "bigscience-openrail-m", "creativeml-openrail-m", "artistic-2.0", "llama2", "llama3",
              "llama3.1", "llama3.2", "llama3.3", "gemma", "afl-3.0", "ecl-2.0", "isc", "mpl-2.0", "zlib"}
COLOURS = {"permissive": "#6fbf73", "non-commercial": "#e57373", "unknown": "#b0bec5"}


@dataclass
class Node:
    """One model of the family."""

    id: str
    license: str | None = None
    category: str = "unknown"
    depth: int = 0
    reachable: bool = True
    parents: list[str] = field(default_factory=list)


def license_category(license: str | None) -> str:
    """permissive / non-commercial / unknown, for colouring."""
    if not license or license in ("other", "unknown"):
        return "unknown"
    name = license.lower()
    if "nc" in name.split("-") or "non-commercial" in name or "noncommercial" in name or "research" in name:
        return "non-commercial"
    return "permissive" if name in PERMISSIVE else "unknown"


def models_in_merge_config(text: str) -> list[str]:
    """Every model a mergekit / mergekit-moe YAML refers to."""
    data = yaml.safe_load(text) or {}
    found: list[str] = []

    def add(value: Any) -> None:
        name = value.get("model") if isinstance(value, dict) else value
        if isinstance(name, str) and name not in found:
            found.append(name.split("+")[0])

    add(data.get("base_model"))
    for entry in data.get("models") or []:
        add(entry.get("model"))
    for output_slice in data.get("slices") or []:
        for source in output_slice.get("sources") or []:
            add(source.get("model"))
    for expert in data.get("experts") or []:
        add(expert.get("source_model"))
    return [name for name in found if name]


def _as_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, list) else []


def _parents_from(meta: dict[str, Any], merge_text: str | None) -> list[str]:
    parents = _as_list(meta.get("base_model"))
    if not parents:
        parents = [tag.split(":")[-1] for tag in _as_list(meta.get("tags")) if tag.startswith("base_model:")]
    if not parents and merge_text:
        parents = models_in_merge_config(merge_text)
    return list(dict.fromkeys(parents))


def read_local(name: str) -> tuple[dict[str, Any], str | None]:
    """(card metadata, merge config text) of a local folder."""
    folder = Path(name).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(name)
    merge = next((folder / f for f in MERGE_FILES if (folder / f).is_file()), None)
    return read_card_metadata(folder), merge.read_text(encoding="utf-8") if merge else None


def read_hub(name: str) -> tuple[dict[str, Any], str | None]:
    """(card metadata plus tags, merge config text) of a hub model."""
    from huggingface_hub import HfApi, hf_hub_download

    info = HfApi().model_info(name)
    meta = dict(info.card_data.to_dict()) if info.card_data else {}
    meta.setdefault("tags", list(info.tags or []))
    files = {s.rfilename for s in info.siblings or []}
    merge_file = next((f for f in MERGE_FILES if f in files), None)
    text = Path(hf_hub_download(name, merge_file)).read_text(encoding="utf-8") if merge_file else None
    return meta, text


def walk(root: str, max_depth: int = 20) -> dict[str, Node]:
    """Breadth-first walk up the family from `root`; each model visited once (cycle-safe)."""
    nodes: dict[str, Node] = {}
    queue = deque([(root, 0)])
    while queue:
        name, depth = queue.popleft()
        if name in nodes:
            continue
        node = Node(id=name, depth=depth)
        nodes[name] = node
        try:
            meta, merge_text = read_local(name) if looks_like_local_path(name) else read_hub(name)
        except Exception:  # missing, offline or gated: drawn as an unreachable leaf
            node.reachable = False
            continue
        node.license = meta.get("license") if isinstance(meta.get("license"), str) else None
        node.category = license_category(node.license)
        node.parents = [p for p in _parents_from(meta, merge_text) if p != name]
        if depth < max_depth:
            queue.extend((parent, depth + 1) for parent in node.parents)
    return nodes


def short_name(name: str) -> str:
    """A readable label: the last two parts of a hub id, the folder name of a path."""
    return Path(name).name if looks_like_local_path(name) else name


def mermaid(nodes: dict[str, Node]) -> str:
    """A Mermaid flowchart (parents above children), one class per license category."""
    ids = {name: f"m{index}" for index, name in enumerate(nodes)}
    lines = ["graph TD"]
    for name, node in nodes.items():
        label = short_name(name).replace('"', "'") + ("" if node.reachable else " (unreachable)")
        lines.append(f'    {ids[name]}["{label}"]:::{node.category.replace("-", "_")}')
    for name, node in nodes.items():
        for parent in node.parents:
            if parent in ids:
                lines.append(f"    {ids[parent]} --> {ids[name]}")
    for category, colour in COLOURS.items():
        lines.append(f"    classDef {category.replace('-', '_')} fill:{colour},stroke:#333")
    return "\n".join(lines) + "\n"


def drawing_levels(nodes: dict[str, Node]) -> dict[str, int]:
    """Each model's row: one above its highest child (longest path to the root), bounded against cycles."""
    level = {name: 0 for name in nodes}
    for _ in range(len(nodes)):
        changed = False
        for name, node in nodes.items():
            for parent in node.parents:
                if parent in level and level[parent] < level[name] + 1 <= len(nodes):
                    level[parent] = level[name] + 1
                    changed = True
        if not changed:
            break
    return level


def draw_png(nodes: dict[str, Node], target: Path, title: str) -> None:
    """The family as a layered picture: oldest ancestors on top, arrows to children, legend by license."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    generation = drawing_levels(nodes)
    depth = max(generation.values())
    levels: dict[int, list[str]] = {}
    for name in nodes:
        levels.setdefault(generation[name], []).append(name)
    width = max(len(names) for names in levels.values())
    position = {name: ((i + 1) / (len(names) + 1) * width, level)
                for level, names in levels.items() for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(max(6.0, 3.2 * width), max(3.0, 1.6 * (depth + 1))))
    for name, node in nodes.items():
        for parent in (p for p in node.parents if p in position):
            (x0, y0), (x1, y1) = position[parent], position[name]
            bend = 0.35 if y0 - y1 > 1 else 0.0  # an edge that skips a generation curves around it
            ax.annotate("", xy=(x1, y1 + 0.18), xytext=(x0, y0 - 0.18),
                        arrowprops={"arrowstyle": "->", "color": "#555", "connectionstyle": f"arc3,rad={bend}"})
    for name, node in nodes.items():
        x, y = position[name]
        ax.text(x, y, short_name(name), ha="center", va="center", fontsize=9,
                bbox={"boxstyle": "round,pad=0.4", "facecolor": COLOURS[node.category],
                      "edgecolor": "#333" if node.reachable else "#999", "linestyle": "-" if node.reachable else "--"})
    ax.set_xlim(0, width + 0.5)
    ax.set_ylim(-0.7, depth + 0.7)
    ax.axis("off")
    ax.set_title(title)
    ax.legend(handles=[Patch(facecolor=c, edgecolor="#333", label=k) for k, c in COLOURS.items()], loc="lower right",
              fontsize=8, title="license")
    fig.tight_layout()
    fig.savefig(target, dpi=120)
    plt.close(fig)


def run(model: str, output: Path | None, overwrite: bool, max_depth: int) -> dict[str, Any]:
    """Walk the family of `model` and write tree.png (with the [plot] extra), tree.md (Mermaid) and
    tree.json; the summary's `png` is the picture's path, or None without matplotlib."""
    from llmcourse.core.console import err
    from llmcourse.core.libraries import installed, pip_line
    from llmcourse.core.errors import UserError
    from llmcourse.core.outputs import atomic_output, check_output_free

    if looks_like_local_path(model) and not Path(model).expanduser().is_dir():
        raise UserError(f"model not found: {model}", hint="pass a model folder or a hub id")
    output = output or Path("outputs") / f"tree-{short_name(model).replace('/', '--')}"
    check_output_free(output, overwrite)
    nodes = walk(model, max_depth)
    if not nodes[model].reachable:
        from llmcourse.core.modelio import hub_failure_hint

        raise UserError(f"cannot read the card of '{model}' from the hub", hint=hub_failure_hint(model))
    drawn = installed("matplotlib")
    if not drawn:
        err.print(f"[yellow]no tree.png: matplotlib is not installed[/] ({pip_line('plot', markup=True)}); tree.md has the family as a Mermaid diagram")
    with atomic_output(output, overwrite) as folder:
        if drawn:
            draw_png(nodes, folder / "tree.png", f"family of {short_name(model)} ({len(nodes)} models)")
        (folder / "tree.md").write_text(f"# Family of {model}\n\n```mermaid\n{mermaid(nodes)}```\n", encoding="utf-8")
        (folder / "tree.json").write_text(json.dumps({"root": model, "nodes": [asdict(n) for n in nodes.values()]}, indent=2),
                                          encoding="utf-8")
    return {"root": model, "models": len(nodes), "generations": 1 + max(drawing_levels(nodes).values()),
            "unreachable": sum(not n.reachable for n in nodes.values()), "output_dir": str(output),
            "png": str(output / "tree.png") if drawn else None}
