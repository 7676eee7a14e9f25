"""`llmcourse quantize` beyond GGUF and int8: bitsandbytes NF4 and LLM.int8 folders that reload
quantized, generate and get the same quality report; EXL2 stops on a CPU machine before anything
loads, and converts on a GPU machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_cli
from llmcourse.cli import app


@pytest.mark.slow
def test_bnb_nf4_and_int8_reload_quantized_generate_and_report(lab_sft: str, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = lab_sft
    result = run_cli("quantize", sft, "--format", "bnb", "--method", "nf4,int8", "-o", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    folder = Path(summary["folders"]["bnb"])
    assert folder.name == f"{Path(sft).name}-bnb-nf4-int8"
    rows = {row["method"]: row for row in summary["report"]}
    assert rows["nf4"]["ppl_ratio"] < 1.15 and rows["int8"]["ppl_ratio"] < 1.02, rows
    assert rows["nf4"]["top1_agreement"] > 0.85 and rows["nf4"]["size_mb"] < rows["-"]["size_mb"] / 2
    for method, layer in (("nf4", "Linear4bit"), ("int8", "Linear8bitLt")):
        config = json.loads((folder / method / "config.json").read_text())["quantization_config"]
        assert config["quant_method"] == "bitsandbytes"
        model = AutoModelForCausalLM.from_pretrained(folder / method, device_map="cpu")
        assert any(type(m).__name__ == layer for m in model.modules()), method
        tokenizer = AutoTokenizer.from_pretrained(folder / method)
        prompt = tokenizer.apply_chat_template([{"role": "user", "content": "Is 14 even or odd?"}], tokenize=False, add_generation_prompt=True)
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=4, do_sample=False)
        assert tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip(), method
    card = (folder / "README.md").read_text()
    assert f"base_model: {sft}" in card and "bitsandbytes" in card
    scored = CliRunner().invoke(app, ["eval", str(folder / "nf4"), "--tasks", "lab_sentiment_mc", "--limit", "10", "-o", str(tmp_path / "eval")])
    assert scored.exit_code == 0, scored.output
    board = json.loads((tmp_path / "eval" / "report.json").read_text())["models"][0]
    assert board["scores"]["lab_sentiment_mc"] >= 0.8, "a quantized folder is evaluated as it loads"


def test_exl2_on_a_cpu_machine_stops_before_loading(lab_sft: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "exl2", "--method", "4.0", "--no-report",
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "needs a CUDA GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "bnb", "--method", "nf5", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "did you mean 'nf4'" in bad.output


@pytest.mark.gpu
def test_exl2_converts_the_lab_model_at_4_bpw_and_generates(lab_sft: str, tmp_path: Path) -> None:
    sft = lab_sft
    result = run_cli("quantize", sft, "--format", "exl2", "--method", "4.0", "--no-report", "-o", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    folder = Path(json.loads(result.stdout)["folders"]["exl2"])
    assert folder.name.endswith("-4.0bpw-exl2") and list(folder.glob("*.safetensors"))
    assert not list(folder.glob("*.parquet")) and not (folder / "job_new.json").exists(), "only the compiled model is kept"
    from exllamav2 import ExLlamaV2, ExLlamaV2Cache, ExLlamaV2Config, ExLlamaV2Tokenizer
    from exllamav2.generator import ExLlamaV2DynamicGenerator

    config = ExLlamaV2Config(str(folder))
    model = ExLlamaV2(config)
    cache = ExLlamaV2Cache(model, lazy=True)
    model.load_autosplit(cache)
    generator = ExLlamaV2DynamicGenerator(model=model, cache=cache, tokenizer=ExLlamaV2Tokenizer(config))
    assert generator.generate(prompt="Q: Is 14 even or odd?\nA:", max_new_tokens=4).strip()
