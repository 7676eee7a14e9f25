"""The package layout the README's architecture section describes, checked on the import graph.

Every `import llmcourse...` counts, including the ones inside functions (the lazy imports that keep
`--help` fast), since a cycle through a lazy import is still a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "llmcourse"

# What each package may import besides itself. The command packages stand on the core, the lab and
# the recipe schemas; generation is also the library that evaluate and serving build on.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "recipes": {"core"},
    "lab": {"core", "recipes"},
    "generation": {"core", "lab", "recipes"},
    "finetune": {"core", "lab", "recipes"},
    "merge": {"core", "lab", "recipes"},
    "quantize": {"core", "lab", "recipes"},
    "evaluate": {"core", "lab", "recipes", "generation"},
    "serving": {"core", "lab", "recipes", "generation"},
    "demo": {"core", "lab", "recipes", "generation", "finetune", "merge", "quantize", "evaluate", "serving"},
    "cli": {"core", "lab", "recipes", "generation", "finetune", "merge", "quantize", "evaluate", "serving", "demo"},
}
FLAT_MODULES = {"__init__", "__main__"}


def module_name(path: Path) -> str:
    """`llmcourse.quantize.formats.gguf` for src/llmcourse/quantize/formats/gguf.py."""
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Each llmcourse module and the llmcourse modules it imports anywhere in its body."""
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}

    def resolve(name: str) -> str | None:
        while name not in modules and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in modules else None

    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llmcourse":
                targets |= {resolve(f"{node.module}.{alias.name}") for alias in node.names}
            elif isinstance(node, ast.Import):
                targets |= {resolve(alias.name) for alias in node.names if alias.name.split(".")[0] == "llmcourse"}
        graph[name] = {target for target in targets if target and target != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    """The first-level package of a module (`llmcourse.quantize.run` → `quantize`)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_the_graph_sees_lazy_imports() -> None:
    graph = import_graph()
    # cli.lab imports the lab scoring only inside its command function
    assert "llmcourse.lab.scoring" in graph["llmcourse.cli.lab"]
    assert "llmcourse.quantize.base" in graph["llmcourse.quantize.formats.gguf"]


def test_no_import_cycles() -> None:
    assert cycles(import_graph()) == []


def test_a_cycle_would_be_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_packages_import_only_the_layers_below(package: str) -> None:
    crossings = sorted(
        f"{module} -> {target}"
        for module, targets in import_graph().items() if package_of(module) == package
        for target in targets
        if package_of(target) not in ALLOWED[package] | {package, ""}
    )
    assert crossings == []


def test_every_module_lives_in_a_package() -> None:
    flat = {path.stem for path in PACKAGE.glob("*.py")}
    packages = {path.name for path in PACKAGE.iterdir() if (path / "__init__.py").is_file()}
    assert flat <= FLAT_MODULES
    assert packages == set(ALLOWED)


def test_the_space_app_stops_where_llmcourse_does() -> None:
    # app.py runs in a Space without llmcourse installed (and loads its model on import), so it
    # carries its own copy of the list: read it from the source
    from llmcourse.core.chat_templates import END_OF_TURN_TOKENS

    tree = ast.parse((PACKAGE / "serving" / "space_app.py").read_text(encoding="utf-8"))
    copies = [ast.literal_eval(node.value) for node in tree.body
              if isinstance(node, ast.Assign) and any(getattr(target, "id", "") == "STOP_TOKENS" for target in node.targets)]
    assert copies == [END_OF_TURN_TOKENS]
