"""`llmcourse quantize` beyond GGUF and int8: bitsandbytes NF4 and LLM.int8 folders, HQQ folders and
GPTQ / AWQ folders that reload quantized, generate and get the same quality report (one table for
every format of a run); EXL2 stops on a CPU machine before anything loads, and converts on a GPU
machine."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from conftest import needs_extra, run_cli
from llmcourse.cli import app

# Reloads GPTQ/AWQ folders in a separate process (GPTQModel, once imported, patches transformers):
# through transformers and through GPTQModel, with the quantized layer classes and greedy answers.
RELOAD_SCRIPT = """
import json, sys, torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from gptqmodel import GPTQModel
source_dir, question, folders = sys.argv[1], sys.argv[2], sys.argv[3:]
tokenizer = AutoTokenizer.from_pretrained(source_dir)
prompt = tokenizer.apply_chat_template([{"role": "user", "content": question}], tokenize=False, add_generation_prompt=True)
ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
def answer(model):
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=4, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip()
found = {"source": answer(AutoModelForCausalLM.from_pretrained(source_dir))}
for folder in folders:
    model = AutoModelForCausalLM.from_pretrained(folder, device_map="cpu")
    found[folder] = {"transformers": answer(model), "layer": type(model.model.layers[0].mlp.down_proj).__name__,
                     "gptqmodel": answer(GPTQModel.load(folder, device="cpu").model)}
print("RESULT " + json.dumps(found))
"""


def greedy_answer(model: Any, tokenizer: Any, question: str) -> str:
    """A few greedy tokens for one chat question, up to the end of the assistant's turn (what follows
    it is not the answer, and a quantized model may continue it differently): the lab scorer's."""
    from llmcourse.lab.scoring import greedy_answers

    return greedy_answers(model, tokenizer, [question], prompt_format="chat", max_new_tokens=4)[0]


@pytest.mark.slow
@pytest.mark.hqq
@needs_extra("hqq", "hqq")
def test_bnb_and_hqq_folders_reload_quantized_generate_and_share_one_report(lab_sft: str, tmp_path: Path) -> None:
    from hqq.core.quantize import HQQLinear
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.quantize.formats.hqq import load_quantized

    sft = lab_sft
    result = run_cli("quantize", sft, "--format", "bnb,hqq", "--method", "nf4,int8,4bit,2bit", "-o", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    folder, hqq = Path(summary["folders"]["bnb"]), Path(summary["folders"]["hqq"])
    assert folder.name == f"{Path(sft).name}-bnb-nf4-int8" and hqq.name == f"{Path(sft).name}-4bit-2bit-HQQ"
    rows = {row["method"]: row for row in summary["report"]}
    assert [row["format"] for row in summary["report"]] == ["source", "bnb", "bnb", "hqq", "hqq"], "one table for both formats"
    assert rows["nf4"]["ppl_ratio"] < 1.15 and rows["int8"]["ppl_ratio"] < 1.02, rows
    assert rows["nf4"]["top1_agreement"] > 0.85 and rows["nf4"]["size_mb"] < rows["-"]["size_mb"] / 2
    assert rows["4bit"]["ppl_ratio"] < 1.15 and rows["4bit"]["top1_agreement"] > 0.85, rows
    assert rows["2bit"]["kl_divergence"] > rows["4bit"]["kl_divergence"] and rows["2bit"]["size_mb"] < rows["4bit"]["size_mb"], rows
    assert "hqq" in result.stderr and "bnb" in result.stderr
    source_answer = greedy_answer(AutoModelForCausalLM.from_pretrained(sft), AutoTokenizer.from_pretrained(sft), "Is 14 even or odd?")
    assert source_answer == "even"
    for method, layer in (("nf4", "Linear4bit"), ("int8", "Linear8bitLt")):
        config = json.loads((folder / method / "config.json").read_text())["quantization_config"]
        assert config["quant_method"] == "bitsandbytes"
        model = AutoModelForCausalLM.from_pretrained(folder / method, device_map="cpu")
        assert any(type(m).__name__ == layer for m in model.modules()), method
        answer = greedy_answer(model, AutoTokenizer.from_pretrained(folder / method), "Is 14 even or odd?")
        assert answer in ("even", "odd") if method == "nf4" else answer == source_answer, (method, answer, source_answer)
    card = (folder / "README.md").read_text()
    assert f"base_model: {sft}" in card and "bitsandbytes" in card
    source = AutoModelForCausalLM.from_pretrained(sft)
    linear = sum(1 for name, m in source.named_modules() if type(m).__name__ == "Linear" and not name.endswith("lm_head"))
    model = load_quantized(hqq / "4bit", device="cpu")
    assert sum(1 for m in model.modules() if isinstance(m, HQQLinear)) == linear, "every linear layer but the head is HQQ"
    tokenizer = AutoTokenizer.from_pretrained(hqq / "4bit")
    question = "Is 14 even or odd?"
    assert greedy_answer(model, tokenizer, question) == greedy_answer(source, tokenizer, question), "4-bit HQQ answers like its source"
    assert not list(hqq.rglob("*.pt")) and (hqq / "2bit" / "qmodel.safetensors").is_file(), "safetensors only"
    assert "library_name: hqq" in (hqq / "README.md").read_text()
    scored = CliRunner().invoke(app, ["eval", sft, str(folder / "nf4"), "--tasks", "lab_sentiment_mc,lab_parity_mc", "--limit", "20",
                                      "-o", str(tmp_path / "eval")])
    assert scored.exit_code == 0, scored.output
    source, quantized = json.loads((tmp_path / "eval" / "report.json").read_text())["models"]
    for task in ("lab_sentiment_mc", "lab_parity_mc"):  # evaluated as it loads: it chooses like its source (top-1 agreement > 85 %)
        assert abs(quantized["scores"][task] - source["scores"][task]) <= 0.15, (task, source["scores"], quantized["scores"])
    assert quantized["model"] == f"{folder.name}/nf4", "a sub-folder of an output is named with its parent"


@pytest.mark.slow
@pytest.mark.gptq
@needs_extra("gptqmodel", "gptq")
def test_gptq_and_awq_folders_reload_through_transformers_and_gptqmodel(lab_sft: str, tmp_path: Path) -> None:
    sft = lab_sft
    work = tmp_path / "work"
    work.mkdir()
    result = run_cli("quantize", sft, "--format", "gptq,awq", "--method", "4bit", "--group-size", "128", "--calibration", "lab://chat",
                     "-o", "out", "--json", cwd=work)
    assert result.returncode == 0, result.stderr
    assert [p.name for p in work.iterdir()] == ["out"], "nothing but the output is written where the command runs (GPTQModel's logs/)"
    summary = json.loads(result.stdout)  # GPTQModel's own output never reaches stdout
    gptq, awq = work / summary["folders"]["gptq"], work / summary["folders"]["awq"]
    assert gptq.name == f"{Path(sft).name}-GPTQ" and awq.name == f"{Path(sft).name}-AWQ"
    assert [row["format"] for row in summary["report"]] == ["source", "gptq", "awq"], "one table for both formats"
    rows = {row["format"]: row for row in summary["report"]}
    assert rows["gptq"]["ppl_ratio"] < 1.10 and rows["awq"]["ppl_ratio"] < 1.10, rows
    for name in ("gptq", "awq"):
        assert rows[name]["top1_agreement"] > 0.9 and rows[name]["size_mb"] < rows["source"]["size_mb"] / 3, rows
    config = json.loads((gptq / "4bit" / "quantize_config.json").read_text())
    assert (config["quant_method"], config["bits"], config["group_size"], config["desc_act"], config["sym"]) == ("gptq", 4, 128, False, True)
    assert config["meta"]["damp_percent"] == 0.05
    config = json.loads((awq / "4bit" / "quantize_config.json").read_text())
    assert (config["quant_method"], config["bits"], config["zero_point"]) == ("awq", 4, True)
    assert "base_model: " + sft in (gptq / "README.md").read_text() and "- awq" in (awq / "README.md").read_text()
    assert not list(tmp_path.rglob("*.bin")) and not list(tmp_path.rglob("*.pt")), "safetensors only"
    question = "Is 14 even or odd?"
    reload = subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, sft, question, str(gptq / "4bit"), str(awq / "4bit")],
                            capture_output=True, text=True, timeout=600)
    assert reload.returncode == 0, reload.stderr[-3000:]
    found = json.loads(reload.stdout.split("RESULT ", 1)[1])
    for folder in (gptq / "4bit", awq / "4bit"):
        loaded = found[str(folder)]
        assert loaded["layer"] != "Linear" and ("Awq" in loaded["layer"]) == (folder.parent == awq), loaded
        assert loaded["transformers"] == loaded["gptqmodel"] == found["source"], (folder, loaded, found["source"])


def test_exl2_on_a_cpu_machine_and_bad_options_stop_before_loading(lab_sft: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    result = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "exl2", "--method", "4.0", "--no-report",
                                      "-o", str(tmp_path / "out")])
    assert result.exit_code == 2 and "needs a CUDA GPU" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "bnb", "--method", "nf5", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "did you mean 'nf4'" in bad.output
    real_find_spec = importlib.util.find_spec
    for name, module, extra in (("hqq", "hqq", "hqq"), ("gptq", "gptqmodel", "gptq"), ("awq", "gptqmodel", "gptq")):
        monkeypatch.setattr(importlib.util, "find_spec", lambda wanted, *args, module=module: None if wanted == module else real_find_spec(wanted, *args))
        missing = CliRunner().invoke(app, ["quantize", lab_sft, "--format", name, "-o", str(tmp_path / "out")])
        assert missing.exit_code == 2 and f"needs {module}" in missing.output and f"pip install 'llmcourse[{extra}]'" in missing.output, missing.output
        assert "Traceback" not in missing.output and len(missing.output.strip().splitlines()) <= 3, missing.output
    assert not (tmp_path / "out").exists()


@pytest.mark.hqq
@needs_extra("hqq", "hqq")
def test_bad_hqq_options_stop_before_loading(lab_sft: str, tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "hqq", "--method", "5bit", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "unknown method '5bit'" in bad.output and "4bit" in bad.output
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "hqq", "--group-size", "48", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "hqq.group_size: 48 does not divide the model's hidden_size" in bad.output, bad.output
    assert not (tmp_path / "out").exists()


@pytest.mark.gptq
@needs_extra("gptqmodel", "gptq")
def test_bad_gptq_and_awq_options_stop_before_loading(lab_sft: str, tmp_path: Path) -> None:
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "gptq", "--method", "5bit", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "gptq.methods: unknown method '5bit'" in bad.output and "8bit, 4bit, 3bit, 2bit" in bad.output, bad.output
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "gptq", "--group-size", "512", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "gptq.group_size: 512 does not divide the model's hidden_size (256)" in bad.output, bad.output
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "awq", "--group-size", "48", "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and "awq.group_size: 48 is not one GPTQModel's kernels take" in bad.output, bad.output
    empty = tmp_path / "calibration.txt"
    empty.write_text("\n\n")
    bad = CliRunner().invoke(app, ["quantize", lab_sft, "--format", "gptq", "--calibration", str(empty), "-o", str(tmp_path / "out")])
    assert bad.exit_code == 2 and f"calibration: {empty} is empty" in bad.output, bad.output
    assert not (tmp_path / "out").exists()


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
    assert generator.generate(prompt="Q: Is 14 even or odd?\nA:\n", max_new_tokens=4).strip()
