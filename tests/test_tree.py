"""`llmcourse tree`: families walked from cards, tags and merge configs; cycles; hub at its boundary."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from conftest import run_cli
from llmcourse.merge import tree


def model_folder(root: Path, name: str, card: dict | None = None, merge_config: dict | None = None) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    if card is not None:
        (folder / "README.md").write_text(f"---\n{yaml.safe_dump(card)}---\n\n# {name}\n")
    if merge_config is not None:
        (folder / "mergekit_config.yml").write_text(yaml.safe_dump(merge_config))
    return folder


@pytest.fixture
def family(tmp_path: Path) -> Path:
    """grandparent (mit) → parent (cc-by-nc-4.0) → merged child (+ an unlicensed second parent), and a cycle."""
    gp = model_folder(tmp_path, "grandparent", {"license": "mit", "base_model": str(tmp_path / "child")})
    parent = model_folder(tmp_path, "parent", {"license": "cc-by-nc-4.0", "base_model": str(gp)})
    other = model_folder(tmp_path, "other", {"tags": ["base_model:finetune:" + str(gp)]})
    return model_folder(tmp_path, "child", {"license": "apache-2.0"},
                        {"merge_method": "slerp", "base_model": str(parent),
                         "slices": [{"sources": [{"model": str(parent), "layer_range": [0, 4]},
                                                 {"model": str(other), "layer_range": [0, 4]}]}]})


def test_walk_follows_cards_tags_and_merge_configs_and_survives_cycles(family: Path) -> None:
    nodes = tree.walk(str(family))
    names = {Path(n).name: node for n, node in nodes.items()}
    assert set(names) == {"child", "parent", "other", "grandparent"}
    assert {Path(p).name for p in names["child"].parents} == {"parent", "other"}
    assert [Path(p).name for p in names["other"].parents] == ["grandparent"]
    assert names["grandparent"].parents == [str(family)], "the cycle is recorded, not followed forever"
    assert (names["grandparent"].category, names["parent"].category, names["other"].category) == \
        ("permissive", "non-commercial", "unknown")


def test_cli_writes_png_mermaid_and_json(family: Path, tmp_path: Path) -> None:
    result = run_cli("tree", str(family), "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert "4 models" in result.stderr
    out = tmp_path / "out"
    assert (out / "tree.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and (out / "tree.png").stat().st_size > 5000
    mermaid = (out / "tree.md").read_text()
    assert "```mermaid" in mermaid and mermaid.count("-->") == 5 and "classDef non_commercial" in mermaid
    data = json.loads((out / "tree.json").read_text())
    assert data["root"] == str(family) and len(data["nodes"]) == 4


def test_hub_models_are_read_through_huggingface_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cards = {
        "org/merged": ({"license": "apache-2.0"}, ["merge"], "mergekit_config.yml"),
        "org/a": ({"license": "apache-2.0", "base_model": "org/base"}, [], None),
        "org/b": ({}, ["base_model:finetune:org/base"], None),
        "org/base": ({"license": "llama3"}, [], None),
    }
    config = tmp_path / "mergekit_config.yml"
    config.write_text(yaml.safe_dump({"merge_method": "ties", "base_model": "org/base",
                                      "models": [{"model": "org/a"}, {"model": "org/b"}]}))

    class FakeApi:
        def model_info(self, name: str) -> SimpleNamespace:
            if name not in cards:
                raise OSError("offline")
            data, tags, merge_file = cards[name]
            return SimpleNamespace(card_data=SimpleNamespace(to_dict=lambda: dict(data)), tags=tags,
                                   siblings=[SimpleNamespace(rfilename=merge_file)] if merge_file else [])

    import huggingface_hub

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", lambda repo, filename: str(config))
    nodes = tree.walk("org/merged")
    assert set(nodes) == {"org/merged", "org/a", "org/b", "org/base"}
    assert set(nodes["org/merged"].parents) == {"org/base", "org/a", "org/b"}
    assert nodes["org/b"].parents == ["org/base"] and nodes["org/base"].category == "permissive"


def test_missing_model_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("tree", str(tmp_path / "nope"), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "model not found" in result.stderr and "Traceback" not in result.stderr


def test_without_matplotlib_the_tree_is_written_without_its_picture(family: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A user who installed llmcourse without the [plot] extra: `llmcourse demo` used to stop here with a traceback.
    import importlib.util

    from typer.testing import CliRunner

    from llmcourse.cli import app

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name == "matplotlib" else real_find_spec(name, *args))
    result = CliRunner().invoke(app, ["tree", str(family), "-o", str(tmp_path / "out"), "--json"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    assert not (out / "tree.png").exists() and (out / "tree.md").is_file() and (out / "tree.json").is_file()
    assert "pip install 'llmcourse[plot]'" in result.output and "Traceback" not in result.output
    assert json.loads(result.stdout)["png"] is None
