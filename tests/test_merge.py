"""`llmcourse merge` on lab models: mergekit configs unchanged, the same tensors as `mergekit-yaml`,
frankenmerges and MoEs that load and generate, and config mismatches caught before any weight loads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run_cli

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(lab_base: dict, lab_sft: str, lab_dpo: str) -> dict[str, str]:
    """Three lab models of one family: the base, its SFT and the SFT's DPO."""
    return {"base": lab_base["path"], "sft": lab_sft, "dpo": lab_dpo}


def configs(m: dict[str, str]) -> dict[str, dict]:
    return {
        "slerp": {"slices": [{"sources": [{"model": m["sft"], "layer_range": [0, 4]}, {"model": m["dpo"], "layer_range": [0, 4]}]}],
                  "merge_method": "slerp", "base_model": m["sft"], "dtype": "float32",
                  "parameters": {"t": [{"filter": "self_attn", "value": [0, 0.5, 0.3, 0.7, 1]},
                                       {"filter": "mlp", "value": [1, 0.5, 0.7, 0.3, 0]}, {"value": 0.5}]}},
        "ties": {"models": [{"model": m["base"]}, {"model": m["sft"], "parameters": {"density": 0.5, "weight": 0.5}},
                            {"model": m["dpo"], "parameters": {"density": 0.5, "weight": 0.5}}],
                 "merge_method": "ties", "base_model": m["base"], "parameters": {"normalize": True}, "dtype": "float32"},
        "dare_ties": {"models": [{"model": m["base"]}, {"model": m["sft"], "parameters": {"density": 0.53, "weight": 0.4}},
                                 {"model": m["dpo"], "parameters": {"density": 0.53, "weight": 0.4}}],
                      "merge_method": "dare_ties", "base_model": m["base"], "parameters": {"int8_mask": True}, "dtype": "float32"},
    }


def write_yaml(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.mark.parametrize("method", ["slerp", "ties", "dare_ties"])
def test_tensors_identical_to_mergekit_yaml(method: str, models: dict[str, str], tmp_path: Path) -> None:
    from llmcourse.merge.merge import MergeSettings, run

    config = write_yaml(tmp_path / f"{method}.yaml", configs(models)[method])
    summary = run(config, tmp_path / "ours", overwrite=False, moe=False, settings=MergeSettings(random_seed=7))  # imports paid once
    mergekit_yaml = Path(sys.executable).with_name("mergekit-yaml")
    theirs = subprocess.run([str(mergekit_yaml), str(config), "theirs", "--random-seed", "7"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert theirs.returncode == 0, theirs.stderr
    a, b = load_file(tmp_path / "ours" / "model.safetensors"), load_file(tmp_path / "theirs" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "every tensor equals mergekit-yaml's"
    sft = load_file(Path(models["sft"]) / "model.safetensors")
    assert any(not torch.equal(a[k], sft[k]) for k in a), "the merge is not a copy of one input"
    card = (tmp_path / "ours" / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert set(front["base_model"]) == {p for p in models.values() if p in card}
    assert {"merge", "mergekit", "llmcourse"} <= set(front["tags"]) and front["license"] == "apache-2.0"
    assert (tmp_path / "ours" / "mergekit_config.yml").read_text() == config.read_text()
    assert summary["method"] == method


def generate(folder: Path) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Is 12 even or odd?"}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    output = model.generate(**ids, max_new_tokens=4, do_sample=False)
    return tokenizer.decode(output[0, ids["input_ids"].shape[1]:])


def test_passthrough_frankenmerge_has_more_layers_and_generates(models: dict[str, str], tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "franken.yaml", {
        "slices": [{"sources": [{"model": models["sft"], "layer_range": [0, 3]}]},
                   {"sources": [{"model": models["dpo"], "layer_range": [1, 4]}]}],
        "merge_method": "passthrough", "dtype": "float32"})
    result = run_cli("merge", str(config), "-o", "franken", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "franken" / "config.json").read_text())["num_hidden_layers"] == 6
    assert generate(tmp_path / "franken").strip()


def test_two_expert_moe_with_hidden_gates_loads_and_generates(models: dict[str, str], tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "moe.yaml", {
        "base_model": models["sft"], "gate_mode": "hidden", "dtype": "float32", "experts_per_token": 2,
        "experts": [{"source_model": models["sft"], "positive_prompts": ["Is 12 even or odd?", "Which is larger, 3 or 9?"]},
                    {"source_model": models["dpo"], "positive_prompts": ["What is the first letter of vudumi?"]}]})
    result = run_cli("merge", "--moe", str(config), "-o", "moe", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    out = json.loads((tmp_path / "moe" / "config.json").read_text())
    assert out["architectures"] == ["MixtralForCausalLM"] and out["num_local_experts"] == 2
    assert generate(tmp_path / "moe").strip()
    front = yaml.safe_load((tmp_path / "moe" / "README.md").read_text().split("---")[1])
    assert {"moe", "frankenmoe"} <= set(front["tags"])


def fake_model(folder: Path, source: str, **changes: int) -> str:
    """A model folder whose config differs from `source`; its weights file is never read."""
    folder.mkdir()
    config = json.loads((Path(source) / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **changes}))
    (folder / "model.safetensors").write_bytes(b"never loaded")
    return str(folder)


@pytest.mark.parametrize("case", ["layer-range-past-depth", "vocab-sizes-differ", "unknown-method", "missing-model"])
def test_mismatches_are_one_line_errors_before_loading(case: str, models: dict[str, str], tmp_path: Path) -> None:
    config = configs(models)["ties"]
    expected = {
        "layer-range-past-depth": "slices.0.sources.1.layer_range: [0, 8] goes past",
        "vocab-sizes-differ": "vocab sizes differ",
        "unknown-method": "unknown method 'tie' (did you mean 'ties'?)",
        "missing-model": "model not found",
    }[case]
    if case == "layer-range-past-depth":
        config = configs(models)["slerp"]
        config["slices"][0]["sources"][1]["layer_range"] = [0, 8]
    elif case == "vocab-sizes-differ":
        config["models"][2]["model"] = fake_model(tmp_path / "big-vocab", models["dpo"], vocab_size=1024)
    elif case == "unknown-method":
        config["merge_method"] = "tie"
    else:
        config["models"][2]["model"] = str(tmp_path / "nowhere")
    result = run_cli("merge", str(write_yaml(tmp_path / "bad.yaml", config)), "-o", "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 3
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def method_config(method: str, m: dict[str, str]) -> dict:
    """A small config for each remaining mergekit method, in mergekit's documented shape."""
    tuned = [m["sft"], m["dpo"]]
    if method == "linear":
        return {"merge_method": "linear", "models": [{"model": x, "parameters": {"weight": 0.5}} for x in tuned]}
    if method == "nearswap":
        return {"merge_method": "nearswap", "base_model": m["sft"], "parameters": {"t": 0.001},
                "models": [{"model": x} for x in tuned]}
    per_model = {"task_arithmetic": {"weight": 0.5}, "dare_linear": {"weight": 0.5, "density": 0.5},
                 "breadcrumbs": {"weight": 0.5, "density": 0.9, "gamma": 0.01},
                 "della": {"weight": 0.5, "density": 0.5, "epsilon": 0.1}, "model_stock": None}[method]
    models = [{"model": m["base"]}] + [{"model": x, **({"parameters": per_model} if per_model else {})} for x in tuned]
    return {"merge_method": method, "base_model": m["base"], "models": models}


def test_every_other_mergekit_method_runs_in_process(models: dict[str, str], tmp_path: Path) -> None:
    """The remaining documented methods, in one process (imports paid once): each output has the
    inputs' tensors, differs from the base, and carries its card."""
    from llmcourse.merge.merge import KNOWN_METHODS, MergeSettings, method_names, run

    assert sorted(KNOWN_METHODS) == method_names(), "the instant method check knows exactly mergekit's methods"
    base = load_file(Path(models["base"]) / "model.safetensors")
    for method in ("linear", "nearswap", "task_arithmetic", "dare_linear", "breadcrumbs", "della", "model_stock"):
        config = {**method_config(method, models), "dtype": "float32"}
        summary = run(write_yaml(tmp_path / f"{method}.yaml", config), tmp_path / method, overwrite=False, moe=False,
                      settings=MergeSettings(random_seed=0))
        merged = load_file(tmp_path / method / "model.safetensors")
        assert merged.keys() == base.keys(), method
        assert any(not torch.equal(merged[k], base[k]) for k in merged), method
        assert summary["method"] == method and (tmp_path / method / "README.md").exists()


def test_dry_run_checks_everything_but_merges_nothing(models: dict[str, str], tmp_path: Path) -> None:
    config = write_yaml(tmp_path / "slerp.yaml", configs(models)["slerp"])
    result = run_cli("merge", str(config), "-o", str(tmp_path / "out"), "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["dry_run"] and summary["method"] == "slerp" and not (tmp_path / "out").exists()
    bad = write_yaml(tmp_path / "bad.yaml", {**configs(models)["slerp"], "merge_method": "slurp"})
    refused = run_cli("merge", str(bad), "-o", str(tmp_path / "out"), "--dry-run")
    assert refused.returncode == 2 and "did you mean 'slerp'" in refused.stderr and not (tmp_path / "out").exists()
