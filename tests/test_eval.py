"""`llmcourse eval`: the lab suite through lm-eval on three lab models — the SFT model, a LoRA
adapter on it and that adapter merged — in one comparison report; the adapter scores exactly like
its merged model, the numbers equal calling lm-eval directly, a GGUF file is scored through
llama.cpp like its source, and bad inputs stop before any weight loads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import run_cli
from llmcourse.cli import app

LIMIT = "10"


@pytest.fixture(scope="module")
def three_models(lab_sft: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The lab SFT model, a LoRA adapter on it (random, not trained) and that adapter merged, in one run."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = lab_sft
    work = tmp_path_factory.mktemp("eval")
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(sft, dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False))
    tokenizer = AutoTokenizer.from_pretrained(sft)
    model.save_pretrained(work / "adapter")
    tokenizer.save_pretrained(work / "adapter")
    model.merge_and_unload().save_pretrained(work / "merged")
    tokenizer.save_pretrained(work / "merged")
    paths = [sft, str(work / "adapter"), str(work / "merged")]
    result = run_cli("eval", *paths, "--suite", "lab", "--limit", LIMIT, "--perplexity", "lab", "--log-samples", "-o", str(work / "out"), "--json")
    assert result.returncode == 0, result.stderr
    return {"summary": json.loads(result.stdout), "out": work / "out", "stderr": result.stderr, "paths": paths}


@pytest.mark.slow
def test_three_lab_models_compared_in_one_report(three_models: dict) -> None:
    sft, adapter, merged = three_models["summary"]["models"]
    assert [b["model"] for b in (sft, adapter, merged)] == [Path(p).name for p in three_models["paths"]]
    # The skills the lab SFT model was taught, which it answers on every machine measured (lab spread
    # table: parity and sentiment 1.00 at every variant).
    scores = {row["task"]: row["value"] for row in sft["tasks"] if row["metric"] in ("exact_match", "acc")}
    for skill in ("parity", "sentiment"):
        assert scores[f"lab_{skill}"] >= 0.7 and scores[f"lab_{skill}_mc"] >= 0.7, scores
    report = (three_models["out"] / "report.md").read_text()
    assert report.count("\n## ") == 3 and "| model | exact match | choice | average | word ppl | time |" in report
    assert "**" in report, "the best value per column is marked"
    for board in (sft, adapter, merged):
        folder = three_models["out"] / board["model"]
        results = json.loads((folder / "results.json").read_text())
        assert set(results["results"]) >= {"lab_parity", "lab_parity_mc", "perplexity_lab"} and results["n-samples"]["lab_count"]["effective"] == int(LIMIT)
        assert len((folder / "samples_lab_parity.jsonl").read_text().splitlines()) == int(LIMIT)
        assert board["word_perplexity"] > 1
    assert "llmcourse eval — lab" in three_models["stderr"], "with --json the table goes to stderr"


@pytest.mark.slow
def test_adapter_scores_exactly_like_its_merged_model(three_models: dict) -> None:
    _, adapter, merged = three_models["summary"]["models"]
    assert [(r["task"], r["metric"]) for r in adapter["tasks"]] == [(r["task"], r["metric"]) for r in merged["tasks"]]
    for ours, theirs in zip(adapter["tasks"], merged["tasks"]):
        assert ours["value"] == pytest.approx(theirs["value"], rel=1e-4), ours
    config = json.loads((three_models["out"] / "adapter" / "results.json").read_text())["config"]["llmcourse"]
    assert config["backend"] == "hf" and config["model_args"]["peft"] == three_models["paths"][1]


@pytest.mark.slow
def test_lab_scores_equal_lm_eval_run_directly(three_models: dict) -> None:
    import lm_eval
    from lm_eval.tasks import TaskManager

    from llmcourse.evaluate.lab_tasks import lab_tasks_folder

    sft = three_models["paths"][0]
    ours = json.loads((three_models["out"] / Path(sft).name / "results.json").read_text())["results"]
    names = ["lab_parity", "lab_count_mc", "lab_topic"]
    theirs = lm_eval.simple_evaluate(model="hf", model_args={"pretrained": sft, "dtype": "float32"}, device="cpu", batch_size=16,
                                     tasks=names, limit=int(LIMIT), apply_chat_template=True, bootstrap_iters=1000,
                                     task_manager=TaskManager(include_path=str(lab_tasks_folder()), include_defaults=False))["results"]
    for name in names:
        metrics = {k: v for k, v in theirs[name].items() if "," in k}
        assert metrics and all(ours[name][k] == pytest.approx(v, abs=1e-12) for k, v in metrics.items()), name


def eval_in_process(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["eval", *args])
    return result.exit_code, result.output


def test_bad_inputs_are_one_line_errors_before_loading(lab_sft: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sft = lab_sft
    code, output = eval_in_process(sft, "--tasks", "lab_parityy", "-o", str(tmp_path / "a"))
    assert code == 2 and "unknown task 'lab_parityy'" in output and "lab_parity" in output
    code, output = eval_in_process(str(tmp_path / "nowhere"), "--suite", "lab", "-o", str(tmp_path / "a"))
    assert code == 2 and "not found" in output
    code, output = eval_in_process(sft, "--suite", "openllm", "-o", str(tmp_path / "a"))
    assert code == 2 and "data cannot be loaded" in output and "HF_HUB_OFFLINE" in output, output
    code, output = eval_in_process(sft, "--suite", "lab", "--batch-size", "many", "-o", str(tmp_path / "a"))
    assert code == 2 and "batch_size" in output
    monkeypatch.delenv("GITHUB_TOKEN", raising=False)
    code, output = eval_in_process(sft, "--suite", "lab", "--gist", "-o", str(tmp_path / "a"))
    assert code == 2 and "GITHUB_TOKEN" in output
    assert "Traceback" not in output and not (tmp_path / "a").exists()


def test_gist_is_secret_unless_public(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmcourse.evaluate import report

    sent: list[dict] = []
    monkeypatch.setattr(report, "post_json", lambda url, payload, token: sent.append({"url": url, **payload}) or {"html_url": "https://gist.example/1"})
    assert report.publish_gist("# r", private=True, token="t") == "https://gist.example/1"
    report.publish_gist("# r", private=False, token="t")
    assert [s["public"] for s in sent] == [False, True] and sent[0]["files"]["report.md"]["content"] == "# r"
    assert sent[0]["url"] == "https://api.github.com/gists"


@pytest.mark.gguf
@pytest.mark.slow
def test_gguf_file_is_scored_through_llama_cpp_like_its_source(demo_report: dict, tmp_path: Path) -> None:
    stages = demo_report["stages"]
    q8 = next(s["path"] for s in stages if s["stage"].startswith("GGUF Q8_0"))
    result = run_cli("eval", stages[4]["path"], q8, "--tasks", "lab_parity,lab_sentiment_mc,lab_count", "--limit", LIMIT,
                     "--perplexity", "lab", "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    merge, gguf = json.loads(result.stdout)["models"]
    assert gguf["model"].endswith(".Q8_0.gguf")
    for ours, theirs in zip(merge["tasks"], gguf["tasks"]):
        assert ours["task"] == theirs["task"] and abs(ours["value"] - theirs["value"]) <= 0.1 * max(1.0, ours["value"]), (ours, theirs)
    assert gguf["word_perplexity"] == pytest.approx(merge["word_perplexity"], rel=0.05)
