"""The demo's merging stage: the SFT and DPO models merged by mergekit (slerp), and the family tree
of that final model drawn from the cards."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import yaml

from llmcourse.core.console import err


def slerp_config(a: str, b: str, t: float = 0.5, layers: int = 4) -> dict[str, Any]:
    """A mergekit slerp config of two models of the same shape."""
    return {"merge_method": "slerp", "base_model": a, "dtype": "float32", "parameters": {"t": t},
            "slices": [{"sources": [{"model": a, "layer_range": [0, layers]}, {"model": b, "layer_range": [0, layers]}]}]}


def layer_count(model: str) -> int:
    """The number of decoder layers of the model in folder `model` (its config.json)."""
    import json

    return json.loads((Path(model) / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"]


def merged(method: str, config: dict[str, Any], force: bool, moe: bool = False) -> Path:
    """The merge of `config` (mergekit YAML, or mergekit-moe YAML) into a lab cache folder named by its content."""
    from llmcourse.lab.cache import building, cache_folder
    from llmcourse.merge.merge import MergeSettings, run

    text = yaml.safe_dump(config, sort_keys=False)
    path = cache_folder(f"merge-{method}", text)
    with building(path):
        if (path / "report.json").exists() and not force:
            err.print(f"reusing the {method} merge in {path}")
            return path
        with tempfile.TemporaryDirectory() as tmp:
            config_file = Path(tmp) / f"{method}.yaml"
            config_file.write_text(text, encoding="utf-8")
            run(config_file, path, overwrite=True, moe=moe, settings=MergeSettings(random_seed=0))
    return path


def final_merge(sft: Any, dpo: Any, force: bool) -> Any:
    """The demo's final model: a slerp of the SFT and DPO models (t = 0.5), scored on every skill."""
    from llmcourse.core.measure import weights_mb
    from llmcourse.demo.stage import StageResult, lab_score

    path = merged("slerp", slerp_config(sft.path, dpo.path, layers=layer_count(sft.path)), force)
    measured = lab_score(path, "chat", force)
    return StageResult("merge: slerp(SFT, DPO)", str(path), {**measured, "size_mb": round(weights_mb(path), 2)})


def family_tree(model: str) -> dict[str, Any]:
    """`llmcourse tree` of the final model into the lab cache; its summary (`png`: the picture, or
    None without matplotlib)."""
    from llmcourse.merge.tree import run

    return run(model, Path(model).with_name(Path(model).name + "-tree"), overwrite=True, max_depth=20)
