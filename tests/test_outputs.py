"""Output folders appear only when complete; cards carry Hugging Face metadata."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmcourse.core.errors import UserError
from llmcourse.core.outputs import atomic_output, read_card_metadata, write_model_card, write_run_record


def test_success_renames_partial_into_place(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with atomic_output(target) as folder:
        assert folder.name == "model.partial"
        (folder / "weights").write_text("w")
        assert not target.exists()
    assert (target / "weights").read_text() == "w"
    assert not (tmp_path / "model.partial").exists()


def test_crash_leaves_no_complete_looking_folder(tmp_path: Path) -> None:
    target = tmp_path / "model"
    with pytest.raises(RuntimeError):
        with atomic_output(target) as folder:
            (folder / "half").write_text("x")
            raise RuntimeError("killed mid-write")
    assert not target.exists()
    assert (tmp_path / "model.partial" / "half").exists(), "kept for inspection, under a name that says so"


def test_user_error_removes_the_partial_folder(tmp_path: Path) -> None:
    with pytest.raises(UserError):
        with atomic_output(tmp_path / "model"):
            raise UserError("bad data")
    assert list(tmp_path.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(UserError, match="already exists"):
        with atomic_output(target):
            pass
    assert (target / "old").exists()
    with atomic_output(target, overwrite=True) as folder:
        (folder / "new").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_model_card_front_matter_round_trips(tmp_path: Path) -> None:
    write_model_card(
        tmp_path, title="t", description="d", recipe_yaml="a: 1\n", command="sft",
        base_model="org/base", tags=["sft"], license="mit", datasets=["org/data"],
    )
    meta = read_card_metadata(tmp_path)
    assert meta["base_model"] == "org/base"
    assert meta["license"] == "mit"
    assert set(meta["tags"]) == {"sft", "llmcourse"}
    assert meta["library_name"] == "transformers"
    assert meta["pipeline_tag"] == "text-generation"
    assert meta["datasets"] == ["org/data"]
    text = (tmp_path / "README.md").read_text()
    assert "```yaml\na: 1\n```" in text and "from_pretrained" in text


def test_run_record_lists_versions(tmp_path: Path) -> None:
    import yaml

    record = yaml.safe_load(write_run_record(tmp_path, "pretrain", {"x": 1}, {"loss": 0.5}).read_text())
    assert record["command"] == "pretrain"
    assert record["recipe"] == {"x": 1}
    assert {"llmcourse", "torch", "transformers"} <= set(record["versions"])
