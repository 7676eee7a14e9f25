"""Axolotl configs as users write them: each validates, and each trains 2 steps on a tiny model of its family.

The corpus (`tests/axolotl_corpus/`) is ours, written in Axolotl's key style for the families users
bring and every preference method we run. For a run, only the hub model and the hub dataset are
swapped for local ones (a tiny random model of the same architecture with the family's real
tokenizer, `llmcourse.lab.families`; a small file of the same layout), and the run is cut to 2
steps: nothing else in the file changes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from llmcourse.cli import app

CORPUS = Path(__file__).parent / "axolotl_corpus"
CONFIGS = sorted(CORPUS.glob("*.yaml"))

FAMILY_OF = {
    "meta-llama/Meta-Llama-3-8B-Instruct": "llama3", "meta-llama/Llama-3.2-1B": "llama3", "meta-llama/Llama-3.2-1B-Instruct": "llama3",
    "NousResearch/Meta-Llama-3.1-8B": "llama3", "NousResearch/Llama-2-7b-hf": "llama2",
    "mistralai/Mistral-7B-v0.1": "mistral", "mistralai/Mistral-7B-Instruct-v0.2": "mistral", "mistralai/Mistral-7B-Instruct-v0.3": "mistral",
    "mistralai/Mistral-Small-24B-Instruct-2501": "mistral",
    "mistralai/Mixtral-8x7B-v0.1": "mixtral", "mistralai/Mixtral-8x7B-Instruct-v0.1": "mixtral",
    "Qwen/Qwen2.5-0.5B-Instruct": "qwen2", "Qwen/Qwen2.5-0.5B": "qwen2", "Qwen/Qwen2.5-1.5B-Instruct": "qwen2", "Qwen/Qwen2-0.5B": "qwen2",
    "Qwen/Qwen3-0.6B": "qwen3", "Qwen/Qwen3-1.7B": "qwen3",
    "google/gemma-2-2b-it": "gemma2", "google/gemma-2-9b": "gemma2", "google/gemma-3-1b-it": "gemma3", "google/gemma-3-270m": "gemma3",
    "microsoft/Phi-3-mini-4k-instruct": "phi3", "microsoft/Phi-3-mini-128k-instruct": "phi3", "microsoft/Phi-3.5-mini-instruct": "phi3",
    "allenai/OLMo-2-0425-1B": "olmo2", "allenai/OLMo-2-1124-7B": "olmo2", "allenai/OLMo-2-1124-7B-SFT": "olmo2",
    "ibm-granite/granite-3.1-2b-instruct": "granite", "ibm-granite/granite-3.3-2b-base": "granite",
    "HuggingFaceTB/SmolLM2-135M": "smollm", "HuggingFaceTB/SmolLM2-360M-Instruct": "smollm", "HuggingFaceTB/SmolLM2-135M-Instruct": "smollm",
}


def _question(i: int) -> tuple[str, str, str]:
    a, b = i % 7 + 1, i % 5 + 2
    return f"What is {a} plus {b}?", f"{a} plus {b} is {a + b}.", f"It is {a + b + 1}."


def _rows(layout: str, count: int = 40) -> list[dict]:
    rows = []
    for i in range(count):
        q, good, bad = _question(i)
        system = "Answer in one sentence." if i % 2 else None
        chat = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": q}, {"role": "assistant", "content": good}]
        rows.append({
            "sharegpt": {"conversations": [{"from": {"user": "human", "assistant": "gpt"}.get(m["role"], m["role"]), "value": m["content"]} for m in chat]},
            "messages": {"messages": chat},
            "alpaca": {"instruction": q, "input": "", "output": good},
            "completion": {"text": f"{q} {good}"},
            "intel": {"system": system or "", "question": q, "chosen": good, "rejected": bad},
            "ultra": {"prompt": q, "chosen": chat[-2:], "rejected": [chat[-2], {"role": "assistant", "content": bad}]},
            "argilla": {"instruction": q, "chosen_response": good, "rejected_response": bad},
            "dpo_messages": {"messages": chat[:-1], "chosen": {"role": "assistant", "content": good},
                             "rejected": {"role": "assistant", "content": bad}},
        }[layout])
    return rows


DATA_OF = {
    "mlabonne/FineTome-100k": "sharegpt", "HuggingFaceH4/ultrachat_200k": "messages", "tatsu-lab/alpaca": "alpaca",
    "yahma/alpaca-cleaned": "alpaca", "roneneldan/TinyStories": "completion", "Intel/orca_dpo_pairs": "intel",
    "HuggingFaceH4/ultrafeedback_binarized": "ultra", "argilla/distilabel-intel-orca-dpo-pairs": "argilla",
    "argilla/ultrafeedback-binarized-preferences-cleaned": "dpo_messages",
}


def _command(config: dict) -> str:
    return "dpo" if config.get("rl") else "sft"


def test_the_corpus_spans_the_families_and_methods() -> None:
    configs = [yaml.safe_load(path.read_text()) for path in CONFIGS]
    assert len(configs) >= 40
    assert {FAMILY_OF[c["base_model"]] for c in configs} >= {"llama2", "llama3", "mistral", "mixtral", "qwen2", "qwen3", "gemma2", "gemma3",
                                                               "phi3", "olmo2", "granite", "smollm"}
    assert {c.get("rl") for c in configs} >= {None, "dpo", "ipo", "orpo", "simpo"}
    assert {c.get("adapter") for c in configs} >= {"lora", "qlora"} and any(c.get("load_in_8bit") for c in configs)


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_config_validates_as_written(path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert f"ok {path} ({_command(yaml.safe_load(path.read_text()))})" in " ".join(result.output.split()), result.output


@pytest.mark.slow
@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_each_config_trains_two_steps_on_its_family(path: Path, tmp_path: Path) -> None:
    from llmcourse.lab.families import build_family_model

    config = yaml.safe_load(path.read_text())
    model = build_family_model(FAMILY_OF[config["base_model"]])
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in _rows(DATA_OF[config["datasets"][0]["path"]])))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [_command(config), str(path), f"base_model={model}", f"datasets.0.path={data}", "max_steps=2",
                                      "-o", str(out), "--json"])
    assert result.exit_code == 0, result.output[-3000:]
    assert "Traceback" not in result.output
    report = json.loads((out / "report.json").read_text())
    assert report["steps"] == 2 and math.isfinite(report["train_loss"]), report
    assert (out / "tokenizer_config.json").is_file() and any(out.glob("*.safetensors"))
    template = config.get("chat_template")
    if template and not template.startswith("tokenizer_default"):
        from transformers import AutoTokenizer

        saved = AutoTokenizer.from_pretrained(out)
        rendered = saved.apply_chat_template([{"role": "user", "content": "Hi?"}], tokenize=False, add_generation_prompt=True)
        assert "Hi?" in rendered and rendered != "Hi?", "the saved tokenizer carries the recipe's chat template"
