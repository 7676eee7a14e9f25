"""`llmcourse quantize`: the naive int8 lesson, the shared report and card, bad inputs, and the hub
upload up to the network boundary. (GGUF is in test_quantize_gguf.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from conftest import run_cli
from llmcourse.quantize.formats.int8 import absmax_quantize, zeropoint_quantize


def test_absmax_and_zeropoint_round_trip_within_half_a_step() -> None:
    generator = torch.Generator().manual_seed(0)
    weight = torch.randn(64, 256, generator=generator) * torch.logspace(-2, 0, 64).unsqueeze(1)
    for quantize in (absmax_quantize, zeropoint_quantize):
        for per_channel in (False, True):
            q, restored = quantize(weight, per_channel)
            assert q.dtype == torch.int8
            span = (weight.abs().amax(1, keepdim=True) * 2 if per_channel else weight.abs().max() * 2)
            assert ((weight - restored).abs() <= span / 254 * 0.5 + 1e-6).all()
        tensor_error = (weight - quantize(weight, False)[1]).abs().mean()
        channel_error = (weight - quantize(weight, True)[1]).abs().mean()
        assert channel_error < tensor_error / 3, "rows of different scale need their own scale"
    skewed = torch.rand(32, 128, generator=generator)  # all positive: absmax wastes half its codes
    assert (skewed - zeropoint_quantize(skewed, False)[1]).abs().mean() < (skewed - absmax_quantize(skewed, False)[1]).abs().mean() * 0.7


@pytest.mark.slow
def test_int8_writes_hf_folders_that_load_generate_and_report(lab_base: dict, tmp_path: Path) -> None:
    from matplotlib.image import imread
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.core.outputs import read_card_metadata

    result = run_cli("quantize", lab_base["path"], "--format", "int8", "--method", "absmax,zeropoint", "--granularity", "channel",
                     "-o", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    folder = Path(summary["folders"]["int8"])
    assert folder.name == f"{Path(lab_base['path']).name}-int8-channel"
    rows = {row["method"]: row for row in summary["report"]}
    for method in ("absmax", "zeropoint"):
        model = AutoModelForCausalLM.from_pretrained(folder / method)
        tokenizer = AutoTokenizer.from_pretrained(folder / method)
        out = model.generate(**tokenizer("Q: Is 14 even or odd?\nA:\n", return_tensors="pt"), max_new_tokens=3, do_sample=False)
        assert out.shape[1] > 0
        weight = model.model.layers[0].mlp.up_proj.weight
        levels = [torch.unique(row).numel() for row in weight[:8]]
        assert max(levels) <= 256, "each row holds at most 256 distinct values: it went through int8"
        picture = imread(folder / method / "weights.png")
        assert picture.shape[0] > 300 and picture.shape[1] > 600
        assert rows[method]["ppl_ratio"] < 1.02 and rows[method]["kl_divergence"] < 0.01, rows[method]
        assert 8 < rows[method]["bits_per_weight"] < 12
    card = read_card_metadata(folder)
    assert card["base_model"] == lab_base["path"] and {"quantized", "int8"} <= set(card["tags"])
    assert (folder / "report.md").read_text().count("| int8 |") == 2


@pytest.mark.parametrize("args, message", [
    (["--format", "guff"], "unknown format 'guff' (did you mean 'gguf'?)"),
    (["--format", "int8", "--method", "absmx"], "did you mean 'absmax'?"),
    (["--format", "int8", "--calibration", "EMPTY"], "is empty"),
    (["--format", "int8", "--eval-text", "missing.txt"], "eval_text: file not found"),
    (["--format", "int8", "--granularity", "row"], "int8.granularity"),
    (["--format", "int8", "--calibration", "someorg/calibration-text"], "calibration: cannot load hub dataset 'someorg/calibration-text'"),
])
def test_bad_inputs_are_one_line_errors(args: list[str], message: str, lab_base: dict, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n")
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else a for a in args]
    result = run_cli("quantize", lab_base["path"], *args, "-o", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


def test_calibration_text_from_a_hub_dataset_is_streamed_from_its_column(lab_base: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets
    from transformers import AutoTokenizer

    from llmcourse.core.errors import UserError
    from llmcourse.quantize.texts import HubText, check_text_source, token_blocks

    served: list[int] = []

    def hub(name: str, config: str | None, split: str, streaming: bool) -> object:  # the network boundary
        assert (name, config, split, streaming) == ("someorg/wiki", "raw", "validation", True)
        for number in range(10_000):
            served.append(number)
            yield {"id": number, "content": f"the cat number {number} sat on the mat"}

    monkeypatch.setattr(datasets, "load_dataset", hub)
    tokenizer = AutoTokenizer.from_pretrained(lab_base["path"])
    blocks = token_blocks(tokenizer, "someorg/wiki", "train", 32, 4 * 32, HubText(split="validation", field="content", config="raw"))
    assert blocks.ids.shape == (4, 32) and "someorg/wiki (validation, column content)" in blocks.description
    assert "the cat number 0 sat on the mat" in tokenizer.decode(blocks.ids[0])
    assert len(served) < 200, "streamed: only what the blocks need is read"
    with pytest.raises(UserError, match="calibration_field: hub dataset someorg/wiki has no column 'text'") as error:
        check_text_source("calibration", "someorg/wiki", HubText(split="validation", config="raw"))
    assert "content" in (error.value.hint or "")


def test_missing_model_and_existing_output(tmp_path: Path, lab_base: dict) -> None:
    missing = run_cli("quantize", str(tmp_path / "nope"), "--format", "int8")
    assert missing.returncode == 2 and "model not found" in missing.stderr
    taken = tmp_path / f"{Path(lab_base['path']).name}-int8-tensor"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    refused = run_cli("quantize", lab_base["path"], "--format", "int8", "-o", str(tmp_path))
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    assert (taken / "keep.txt").read_text() == "mine"


def test_push_to_hub_uploads_the_finished_folder(lab_base: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from llmcourse.quantize.run import run
    from llmcourse.recipes.quantize import QuantizeRecipe

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo, **kw: calls.append(("create", {"repo": repo, **kw})))

    def upload(self: object, **kw: object) -> None:
        folder = Path(str(kw["folder_path"]))
        assert (folder / "README.md").is_file() and (folder / "absmax" / "model.safetensors").is_file()
        calls.append(("upload", kw))

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload)
    recipe = QuantizeRecipe(model=lab_base["path"], formats=["int8"], int8={"histograms": False}, report=False,
                            output_dir=str(tmp_path), push_to_hub="someone/lab-int8", private=True)
    summary = run(recipe)
    assert summary["pushed"] == ["someone/lab-int8"]
    assert calls[0] == ("create", {"repo": "someone/lab-int8", "private": True, "exist_ok": True})
    assert calls[1][1]["repo_id"] == "someone/lab-int8" and Path(str(calls[1][1]["folder_path"])) == Path(summary["folders"]["int8"])
