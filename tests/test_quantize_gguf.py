"""`llmcourse quantize --format gguf` on the lab SFT model: llama.cpp's converter and quantizer, files
llama.cpp and transformers load, tokenization identical to transformers, and the quality report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import run_cli

pytestmark = [pytest.mark.gguf, pytest.mark.slow]
METHODS = ("F32", "F16", "Q8_0", "Q4_K_M", "IQ4_XS", "IQ2_XS")


@pytest.fixture(scope="module")
def sft_model(lab_sft: str) -> str:
    return lab_sft


@pytest.fixture(scope="module")
def gguf_run(sft_model: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("gguf")
    result = run_cli("quantize", sft_model, "--format", "gguf", "--method", ",".join(METHODS), "--imatrix", "auto", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    summary["folder"] = Path(summary["folders"]["gguf"])
    summary["files"] = {o["method"]: o["path"] for o in summary["outputs"]}
    return summary


def hf_logits(model_path: str, ids: list[int], f16_weights: bool = False) -> np.ndarray:
    """The HF model's logits; with `f16_weights`, after rounding every weight to float16."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    with torch.no_grad():
        if f16_weights:
            for parameter in model.parameters():
                parameter.copy_(parameter.half().float())
        return model(input_ids=torch.tensor([ids])).logits[0].numpy()


def heldout_ids(model_path: str, count: int = 12) -> list[int]:
    from transformers import AutoTokenizer

    from llmcourse.lab import skills

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    rows = skills.mixed(list(skills.SKILLS), "heldout", 2)[:count]
    text = "".join(tokenizer.apply_chat_template(skills.as_messages(r)["messages"], tokenize=False) for r in rows)
    return tokenizer(text, add_special_tokens=False)["input_ids"][:128]


def test_files_are_named_like_llama_cpp_and_the_folder_is_complete(gguf_run: dict, sft_model: str) -> None:
    folder = gguf_run["folder"]
    name = Path(sft_model).name
    assert sorted(p.name for p in folder.glob("*.gguf")) == sorted([f"{name}.{m}.gguf" for m in METHODS] + ["imatrix.gguf"])
    assert not folder.with_name(folder.name + ".partial").exists()
    assert {"README.md", "report.json", "report.md", "llmcourse.yaml"} <= {p.name for p in folder.iterdir()}
    from llmcourse.core.outputs import read_card_metadata

    card = read_card_metadata(folder)
    assert card["base_model"] == sft_model and {"quantized", "gguf", "llmcourse"} <= set(card["tags"])
    text = (folder / "README.md").read_text()
    assert "from llama_cpp import Llama" in text and "Original model card" in text and "| Q4_K_M |" in text


def llama_cpp_logits(path: str, ids: list[int]) -> np.ndarray:
    """Logits through llama.cpp, with a float32 KV cache (its default, float16, rounds K and V)."""
    from llama_cpp import Llama

    llm = Llama(model_path=path, n_ctx=256, n_batch=256, logits_all=True, verbose=False, type_k=0, type_v=0)
    llm.eval(ids)
    logits = np.array(llm.scores[: len(ids)])
    llm.close()
    return logits


def test_gguf_logits_match_transformers_through_llama_cpp(gguf_run: dict, sft_model: str) -> None:
    ids = heldout_ids(sft_model)
    reference = hf_logits(sft_model, ids)
    # F32 shows the conversion is exact (q/k permutation, norms, tied embeddings, vocabulary).
    assert np.abs(llama_cpp_logits(gguf_run["files"]["F32"], ids) - reference).max() < 1e-3
    # F16 is held to the precision F16 has, measured on this model: rounding the weights alone moves
    # the HF model's own logits (lab SFT model: 0.035 max, 0.0006 mean), and llama.cpp's F16 matmuls
    # round activations too (0.090 max, 0.0011 mean). A wrong conversion is off by the logits' scale (~2).
    f16_rounding = np.abs(hf_logits(sft_model, ids, f16_weights=True) - reference)
    f16 = np.abs(llama_cpp_logits(gguf_run["files"]["F16"], ids) - reference)
    assert f16.max() < 3 * f16_rounding.max() and f16.mean() < 3 * f16_rounding.mean(), (f16.max(), f16.mean(), f16_rounding.max())


# Held-out plain-text perplexity of a quantized file over its source's. Lab spread (the demo's merge,
# ten runs: five variants at two lab versions): Q8_0 0.995-1.004 (spread 0.009), Q4_K_M 0.975-1.147
# (spread 0.172) -- a chat model's perplexity on plain text is high (7-71) and moves with every
# weight. The bounds sit three spreads above the worst run; a broken quantization is off by far more
# (a model that lost its weights has a perplexity near the vocabulary size, 512).
Q8_0_PPL_RATIO = 1.03
Q4_K_M_PPL_RATIO = 1.66


def test_quality_report_meets_the_bar(gguf_run: dict) -> None:
    rows = {row["method"]: row for row in gguf_run["report"]}
    assert rows["-"]["format"] == "source" and rows["-"]["ppl_ratio"] == 1.0
    assert rows["Q8_0"]["ppl_ratio"] <= Q8_0_PPL_RATIO, rows["Q8_0"]
    assert rows["Q4_K_M"]["ppl_ratio"] <= Q4_K_M_PPL_RATIO, rows["Q4_K_M"]
    assert rows["F32"]["kl_divergence"] < 1e-4 and rows["F16"]["kl_divergence"] < rows["Q8_0"]["kl_divergence"] < rows["Q4_K_M"]["kl_divergence"]
    assert rows["F16"]["top1_agreement"] > 0.99 and rows["Q4_K_M"]["top1_agreement"] > 0.9
    assert rows["Q4_K_M"]["size_mb"] < rows["Q8_0"]["size_mb"] < rows["F16"]["size_mb"] < rows["-"]["size_mb"]
    assert 4 < rows["Q4_K_M"]["bits_per_weight"] < 6 and 8 < rows["Q8_0"]["bits_per_weight"] < 9
    assert rows["IQ4_XS"]["ppl_ratio"] < 1.1 and all(row["tokens_per_second"] > 0 for row in rows.values())
    assert rows["IQ2_XS"]["bits_per_weight"] < rows["IQ4_XS"]["bits_per_weight"] < rows["Q4_K_M"]["bits_per_weight"]
    imatrix = {o["method"]: o["imatrix"] for o in gguf_run["outputs"]}
    assert imatrix == {"F32": False, "F16": False, "Q8_0": True, "Q4_K_M": True, "IQ4_XS": True, "IQ2_XS": True}
    saved = json.loads((gguf_run["folder"] / "report.json").read_text())
    assert [r["method"] for r in saved["rows"]] == ["-", *METHODS]


def test_every_gguf_loads_in_llama_cpp_and_answers_like_transformers(gguf_run: dict, sft_model: str) -> None:
    from llama_cpp import Llama
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from llmcourse.lab import skills
    from llmcourse.lab.scoring import build_prompt

    tokenizer = AutoTokenizer.from_pretrained(sft_model)
    model = AutoModelForCausalLM.from_pretrained(sft_model, dtype=torch.float32)
    prompts = [build_prompt(tokenizer, row.question, "chat") for row in skills.mixed(["parity", "count", "sentiment"], "heldout", 4)]
    expected = []
    for prompt in prompts:
        enc = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        out = model.generate(**enc, max_new_tokens=6, do_sample=False, eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"))
        expected.append(tokenizer.decode(out[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    for method, path in gguf_run["files"].items():
        llm = Llama(model_path=path, n_ctx=256, verbose=False)
        answers = [llm(p, max_tokens=6, temperature=0.0, stop=["<|im_end|>"])["choices"][0]["text"].strip() for p in prompts]
        assert all(answers), (method, answers)
        if method in ("F32", "F16", "Q8_0"):
            assert sum(a == e for a, e in zip(answers, expected)) >= len(prompts) - 1, (method, answers, expected)


def test_transformers_loads_f16_and_q8_0_back(gguf_run: dict, sft_model: str) -> None:
    from transformers import AutoModelForCausalLM

    ids = heldout_ids(sft_model)
    reference = hf_logits(sft_model, ids)
    f16_rounding = np.abs(hf_logits(sft_model, ids, f16_weights=True) - reference).max()
    for method, tolerance in (("F32", 1e-5), ("F16", 2 * f16_rounding), ("Q8_0", None)):
        path = Path(gguf_run["files"][method])
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids])).logits[0].numpy()
        if tolerance:
            assert np.abs(logits - reference).max() < tolerance
        else:
            assert (logits.argmax(-1) == reference.argmax(-1)).mean() > 0.95


def test_llama_cpp_tokenizes_every_heldout_string_like_transformers(gguf_run: dict, sft_model: str) -> None:
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    from llmcourse.lab import skills

    tokenizer = AutoTokenizer.from_pretrained(sft_model)
    vocab = Llama(model_path=gguf_run["files"]["Q8_0"], vocab_only=True, verbose=False)
    strings = []
    for name in skills.SKILLS:
        for row in skills.examples(name, "heldout", 1000):
            strings += [row.question, row.answer, tokenizer.apply_chat_template(skills.as_messages(row)["messages"], tokenize=False)]
    mismatches = [s for s in strings if vocab.tokenize(s.encode(), add_bos=False, special=True) != tokenizer(s, add_special_tokens=False)["input_ids"]]
    assert len(strings) > 3000 and mismatches == []


def test_types_that_need_an_importance_matrix_get_one_without_asking() -> None:
    from llmcourse.quantize.formats.gguf import imatrix_plan

    assert imatrix_plan(["Q4_K_M", "Q8_0"], None) == "none"
    assert imatrix_plan(["Q4_K_M", "IQ2_XS"], None) == "needed"
    assert imatrix_plan(["Q4_K_M"], "auto") == "auto"
    assert imatrix_plan(["IQ1_S"], "my.imatrix.gguf") == "file"


def test_gguf_bad_inputs_fail_before_loading(sft_model: str, tmp_path: Path) -> None:
    unknown = run_cli("quantize", sft_model, "--method", "Q4_K_MM", "-o", str(tmp_path))
    assert unknown.returncode == 2 and "did you mean 'Q4_K_M'" in unknown.stderr and "Traceback" not in unknown.stderr
    missing = run_cli("quantize", sft_model, "--method", "IQ4_XS", "--imatrix", str(tmp_path / "nope.gguf"), "-o", str(tmp_path))
    assert missing.returncode == 2 and "gguf.imatrix: file not found" in missing.stderr
    assert not any(tmp_path.iterdir()), "nothing written"


def test_demo_adds_gguf_rows_and_the_tree_reaches_the_quants(demo_report: dict) -> None:
    stages = {stage["stage"]: stage for stage in demo_report["stages"]}
    merge = stages["merge: slerp(SFT, DPO)"]["metrics"]
    q8, q4 = stages["GGUF Q8_0 (llama.cpp)"]["metrics"], stages["GGUF Q4_K_M (llama.cpp)"]["metrics"]
    assert q8["exact_match/mean"] >= merge["exact_match/mean"] - 0.03, (merge, q8)
    assert q4["exact_match/mean"] >= merge["exact_match/mean"] - 0.08, (merge, q4)
    assert q8["ppl_ratio"] <= Q8_0_PPL_RATIO and q4["ppl_ratio"] <= Q4_K_M_PPL_RATIO, (q8, q4)
    assert q4["size_mb"] < q8["size_mb"] < merge["size_mb"] and q8["decode_tok_s"] > 0
    tree = demo_report["tree"]
    assert tree["models"] == 5 and tree["generations"] == 5 and tree["unreachable"] == 0
    printed = demo_report["stderr"]  # with --json the table goes to stderr
    assert "GGUF Q4_K_M (llama.cpp)" in printed and "GGUF Q8_0 (llama.cpp): exact match" in printed
    generation = demo_report["generation"]
    assert generation["gguf_greedy"].strip() and generation["gguf_decode_tok_s"] > 0 and generation["hf_decode_tok_s"] > 0
    assert "llama.cpp Q4_K_M" in printed and "Q4_K_M greedy" in printed


def test_the_report_states_tokenizer_parity(gguf_run: dict) -> None:
    assert {o["tokenizer_parity"] for o in gguf_run["outputs"]} == {1.0}


def test_a_wrong_pre_tokenizer_is_caught_by_the_parity_line(tmp_path: Path) -> None:
    from llmcourse.lab.families import build_family_model

    model = build_family_model("olmo2")  # GPT-2's byte-level BPE, with GPT-2's pre-tokenizer regex
    right = run_cli("quantize", str(model), "--format", "gguf", "--method", "F16", "--pre-tokenizer", "gpt-2", "--no-report",
                    "-o", str(tmp_path / "right"), "--json")
    assert right.returncode == 0, right.stderr
    assert json.loads(right.stdout)["outputs"][0]["tokenizer_parity"] == 1.0 and "tokenizer parity: " in right.stderr
    wrong = run_cli("quantize", str(model), "--format", "gguf", "--method", "F16", "--pre-tokenizer", "llama-bpe", "--no-report",
                    "-o", str(tmp_path / "wrong"), "--json")
    assert wrong.returncode == 0, wrong.stderr
    assert json.loads(wrong.stdout)["outputs"][0]["tokenizer_parity"] < 0.95
    assert "warning: tokenizer parity" in wrong.stderr and "--pre-tokenizer" in wrong.stderr
