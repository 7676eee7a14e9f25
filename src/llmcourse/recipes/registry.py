"""Which recipe model belongs to which command, and where the shipped recipes live."""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

from llmcourse.core.errors import UserError, choose
from llmcourse.recipes.loader import apply_overrides, read_yaml, validate

# command name -> "module:Class"; imported only when a recipe of that kind is validated.
RECIPE_MODELS: dict[str, str] = {}
HEADER = re.compile(r"^#\s*llmcourse\s+([a-z][\w-]*)")


def register_recipe(command: str, target: str) -> None:
    """Register the recipe model (as `module:Class`) used by `command`."""
    RECIPE_MODELS[command] = target


register_recipe("pretrain", "llmcourse.recipes.pretrain:PretrainRecipe")
register_recipe("sft", "llmcourse.recipes.sft:SftRecipe")
register_recipe("dpo", "llmcourse.recipes.dpo:DpoRecipe")
register_recipe("orpo", "llmcourse.recipes.dpo:DpoRecipe")
register_recipe("quantize", "llmcourse.recipes.quantize:QuantizeRecipe")
register_recipe("eval", "llmcourse.recipes.eval:EvalRecipe")


def recipe_model(command: str) -> Any:
    """The pydantic model class for `command`'s recipes."""
    choose("command", command, RECIPE_MODELS)
    module, _, name = RECIPE_MODELS[command].partition(":")
    return getattr(importlib.import_module(module), name)


def detect_command(path: Path) -> str:
    """The command a recipe is for, from its first line (`# llmcourse sft ...`) or its folder."""
    if path.exists() and path.is_file():
        with path.open(encoding="utf-8", errors="replace") as handle:
            for line in handle:
                if not line.strip():
                    continue
                match = HEADER.match(line.strip())
                if match and match.group(1) in RECIPE_MODELS:
                    return match.group(1)
                break
    for parent in path.parents:
        if parent.name in RECIPE_MODELS:
            return parent.name
    shaped = command_from_keys(read_yaml(path), path) if path.is_file() else None
    if shaped:
        return shaped
    raise UserError(
        f"{path}: cannot tell which command this recipe is for",
        hint="start it with a line such as `# llmcourse pretrain`, or pass --command (-c) sft | dpo | pretrain | quantize | eval",
    )


PREFERENCE_RL = ("dpo", "ipo", "orpo", "simpo")


def command_from_keys(data: Any, path: Path) -> str | None:
    """The command an unmarked file is for, from its keys as Axolotl, mergekit and lm-eval write them:
    `rl:` → dpo, `base_model` with `datasets` → sft, `models` with `suite`/`tasks` → eval, `model`
    with `formats` → quantize, `data` with `tokenizer`/`model` sections → pretrain; None when the
    shape says nothing."""
    if not isinstance(data, dict):
        return None
    if "task" in data and ("dataset_path" in data or "doc_to_text" in data):
        raise UserError(f"{path}: this is an lm-eval task file, not a recipe",
                        hint=f"pass its folder to llmcourse eval: --include-path {path.parent} (or include_path: in an eval recipe)")
    if "merge_method" in data or "slices" in data or ("experts" in data and "gate_mode" in data):
        raise UserError(f"{path}: this is a mergekit config, not a recipe", hint=f"run it with `llmcourse merge {path}`")
    rl = data.get("rl")
    if rl is not None:
        if str(rl).lower() in PREFERENCE_RL:
            return "dpo"
        raise UserError(f"{path}: rl: {rl} is not supported yet", hint=f"rl: one of {', '.join(PREFERENCE_RL)}")
    if "base_model" in data and "datasets" in data:
        return "sft"
    if "models" in data and ("suite" in data or "tasks" in data):
        return "eval"
    if "model" in data and "formats" in data:
        return "quantize"
    if isinstance(data.get("data"), dict) and ("tokenizer" in data or isinstance(data.get("model"), dict)):
        return "pretrain"
    return None


def shipped_dir() -> Path:
    """The shipped `configs/` folder (inside the installed package, or the source checkout)."""
    packaged = Path(__file__).resolve().parent.parent / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "configs"


def shipped_recipes() -> dict[str, Path]:
    """Shipped recipe names (`lab/pretrain`) mapped to their files."""
    root = shipped_dir()
    return {str(p.relative_to(root).with_suffix("")): p for p in sorted(root.rglob("*.yaml"))}


def resolve_recipe_path(name: str) -> Path:
    """A recipe argument as a file: an existing path, else a shipped recipe name."""
    path = Path(name)
    if path.exists():
        return path
    shipped = shipped_recipes()
    key = name.removesuffix(".yaml").removeprefix("configs/")
    if key in shipped:
        return shipped[key]
    return path


def describe(path: Path) -> str:
    """The recipe's second header line (its one-line description), if it has one."""
    lines = path.read_text(encoding="utf-8").splitlines()
    for line in lines[1:3]:
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""



def load_command_recipe(
    command: str,
    recipe: str | None,
    overrides: list[str],
    output_dir: Path | None,
) -> Any:
    """Read and validate `command`'s recipe with overrides; `--output-dir` wins over the file."""
    if recipe is not None and "=" in recipe and not Path(recipe).exists():
        raise UserError(f"expected a recipe file before the overrides, got '{recipe}'")
    path = resolve_recipe_path(recipe) if recipe is not None else None
    data = read_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    if output_dir is not None:
        data["output_dir"] = str(output_dir)
    return validate(recipe_model(command), data, source=str(path) if path else "recipe")
