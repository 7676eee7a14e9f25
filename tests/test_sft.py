"""`llmcourse sft` through the real CLI on the lab base: every mode trains, outputs load, runs resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from llmcourse.core.outputs import read_card_metadata

FAST = ["datasets.0.num_samples=800", "max_steps=24", "logging_steps=4", "eval_lab_count=0", "sequence_len=128"]


def sft(base: str, out: Path, *extra: str, recipe: str = "lab/sft") -> subprocess.CompletedProcess:
    return run_cli("sft", recipe, f"base_model={base}", *FAST, *extra, "-o", str(out), "--json")


def losses(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if "loss" in row]


@pytest.mark.parametrize(
    "mode, recipe, extra",
    [
        ("full", "lab/sft", ["sample_packing=false"]),
        ("packed", "lab/sft", ["sample_packing=true"]),
        ("lora", "lab/sft-lora", ["merge_adapter=false"]),
        ("qlora", "lab/sft-qlora", []),
    ],
)
def test_loss_falls(mode: str, recipe: str, extra: list[str], lab_base: dict, tmp_path: Path) -> None:
    out = tmp_path / mode
    result = sft(lab_base["path"], out, *extra, recipe=recipe)
    assert result.returncode == 0, result.stderr
    curve = losses(out)
    assert len(curve) == 6 and curve[-1] < 0.7 * curve[0], curve
    summary = json.loads(result.stdout)
    assert summary["steps"] == 24 and summary["tokens_per_second"] > 0
    names = {p.name for p in out.iterdir()}
    weights = "adapter_model.safetensors" if mode in ("lora", "qlora") else "model.safetensors"
    assert {weights, "tokenizer.json", "README.md", "llmcourse.yaml", "metrics.jsonl", "report.json"} <= names
    assert not (out / "checkpoints").exists() and not (tmp_path / f"{mode}.partial").exists()
    meta = read_card_metadata(out)
    assert meta["base_model"] == lab_base["path"]
    assert "sft" in meta["tags"]


def test_saved_model_chats_with_its_template(lab_base: dict, tmp_path: Path) -> None:
    out = tmp_path / "llama3"
    result = sft(lab_base["path"], out, "chat_template=llama3", "max_steps=4")
    assert result.returncode == 0, result.stderr
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert "<|eot_id|>" in tokenizer.get_vocab(), "the template's special tokens were added"
    assert model.get_input_embeddings().weight.shape[0] == len(tokenizer), "embeddings resized to the new vocabulary"
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert tokenizer.convert_tokens_to_ids("<|eot_id|>") in model.generation_config.eos_token_id


def test_merged_adapter_matches_base_plus_adapter(lab_base: dict, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = tmp_path / "lora"
    result = sft(lab_base["path"], out, "merge_adapter=true", recipe="lab/sft-lora")
    assert result.returncode == 0, result.stderr
    tokenizer = AutoTokenizer.from_pretrained(out)
    ids = tokenizer(["Q: Is 12 even or odd?\nA:\n", "What is the last letter of bakit?"], return_tensors="pt", padding=True)
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    stacked = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(lab_base["path"]), str(out)).eval()
    base_only = AutoModelForCausalLM.from_pretrained(lab_base["path"]).eval()
    with torch.no_grad():
        a, b, c = merged(**ids).logits, stacked(**ids).logits, base_only(**ids).logits
    assert torch.allclose(a, b, atol=1e-4), (a - b).abs().max()
    assert (a - c).abs().max() > 1e-2, "the adapter changed something"
    assert read_card_metadata(out / "merged")["base_model"] == lab_base["path"]

    separate = tmp_path / "merged-cli"
    cli = run_cli("merge-adapter", str(out), "-o", str(separate), "--json")
    assert cli.returncode == 0, cli.stderr
    again = AutoModelForCausalLM.from_pretrained(separate).eval()
    with torch.no_grad():
        assert torch.allclose(again(**ids).logits, b, atol=1e-4)


def test_two_process_cpu_run_writes_one_adapter(lab_base: dict, tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = run_cli("sft", "lab/sft-lora", f"base_model={lab_base['path']}", *FAST, "merge_adapter=false",
                     "max_steps=8", "-o", str(out), "--num-processes", "2")
    assert result.returncode == 0, result.stderr[-3000:]
    assert (out / "adapter_model.safetensors").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ddp"], "one output, no stray partial folders"
    assert len(losses(out)) == 2, "only rank 0 logs"


def test_sigkill_then_resume_reaches_the_same_loss(lab_base: dict, tmp_path: Path) -> None:
    common = ["lab/sft", f"base_model={lab_base['path']}", *FAST, "max_steps=30", "save_steps=10", "logging_steps=10"]
    reference = run_cli("sft", *common, "-o", str(tmp_path / "straight"), "--json")
    assert reference.returncode == 0, reference.stderr
    target = tmp_path / "killed"
    process = subprocess.Popen([sys.executable, "-m", "llmcourse", "sft", *common, "-o", str(target)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy())
    checkpoint = tmp_path / "killed.partial" / "checkpoints" / "checkpoint-20"
    deadline = time.time() + 600
    while not (checkpoint / "trainer_state.json").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not target.exists(), "a killed run never looks complete"
    resumed = run_cli("sft", *common, "-o", str(target), "--resume", "--json")
    assert resumed.returncode == 0, resumed.stderr
    straight_loss, resumed_loss = losses(tmp_path / "straight")[-1], losses(target)[-1]
    assert abs(resumed_loss - straight_loss) <= 0.01 * straight_loss, (resumed_loss, straight_loss)
    assert json.loads(resumed.stdout)["steps"] == 30


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path, lab_base: dict) -> None:
    result = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", "-o", str(tmp_path / "none"), "--resume")
    assert result.returncode == 2 and "no checkpoint" in result.stderr


def test_preview_shows_masked_samples_without_weights(lab_base: dict, tmp_path: Path) -> None:
    import shutil

    no_weights = tmp_path / "unreadable-weights"
    shutil.copytree(lab_base["path"], no_weights)
    (no_weights / "model.safetensors").write_bytes(b"garbage: loading these weights would fail")
    result = run_cli("sft", "lab/sft", f"base_model={no_weights}", "--preview")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("sample ") == 2
    assert "tokens" in result.stdout and "with loss" in result.stdout and "template chatml" in result.stdout


def test_ctrl_c_saves_a_checkpoint_and_says_how_to_resume(lab_base: dict, tmp_path: Path) -> None:
    target = tmp_path / "interrupted"
    process = subprocess.Popen(
        [sys.executable, "-m", "llmcourse", "sft", "lab/sft", f"base_model={lab_base['path']}", *FAST, "max_steps=400",
         "-o", str(target)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    metrics = tmp_path / "interrupted.partial" / "metrics.jsonl"
    deadline = time.time() + 300
    while (not metrics.exists() or not metrics.read_text()) and process.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 130, stderr[-2000:]
    assert "--resume" in stderr and "Traceback" not in stderr
    assert list((tmp_path / "interrupted.partial" / "checkpoints").glob("checkpoint-*")), "a checkpoint was saved"
    assert not target.exists()


def test_axolotl_special_tokens_form_previews_and_trains_with_that_pad_token(lab_base: dict, tmp_path: Path) -> None:
    # Axolotl writes `special_tokens: {pad_token: ...}`; it used to become `pad_token_token` and crash
    recipe = tmp_path / "axolotl.yaml"
    recipe.write_text(f"base_model: {lab_base['path']}\nchat_template: chatml\ndatasets:\n  - path: lab://parity\n    num_samples: 64\n"
                      "special_tokens:\n  pad_token: \"<|end_of_text|>\"\nsequence_len: 64\nmicro_batch_size: 4\nmax_steps: 2\n"
                      "eval_lab_count: 0\n", encoding="utf-8")
    preview = run_cli("sft", str(recipe), "--preview")
    assert preview.returncode == 0 and "Traceback" not in preview.stderr, preview.stderr
    assert preview.stdout.count("sample ") == 2
    result = run_cli("sft", str(recipe), "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert tokenizer.pad_token == "<|end_of_text|>" and tokenizer.pad_token_id is not None


def test_a_gemma2_model_fine_tunes_with_attention_auto(lab_base: dict, tmp_path: Path) -> None:
    # transformers refuses SDPA for Gemma 2: `auto` must mean what the architecture supports
    from transformers import AutoTokenizer, Gemma2Config, Gemma2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(lab_base["path"])
    config = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                          num_key_value_heads=1, head_dim=16, pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id)
    model_dir = tmp_path / "tiny-gemma2"
    Gemma2ForCausalLM(config).save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    result = run_cli("sft", "lab/sft", f"base_model={model_dir}", "datasets.0.num_samples=64", "max_steps=2", "eval_lab_count=0",
                     "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["steps"] == 2 and json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "gemma2"


def test_unfrozen_parameters_train_only_the_weights_they_name(lab_base: dict, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    result = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", "unfrozen_parameters=['^model.layers.0.mlp.']", "max_steps=3",
                     "eval_lab_count=0", "datasets.0.num_samples=64", "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    before = load_file(str(Path(lab_base["path"]) / "model.safetensors"))
    after = load_file(str(tmp_path / "out" / "model.safetensors"))
    changed = sorted(name for name in before if not bool((before[name] == after[name]).all()))
    assert changed == [f"model.layers.0.mlp.{p}_proj.weight" for p in ("down", "gate", "up")], "the others stay bit-identical"
    nothing = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", "unfrozen_parameters=['^decoder.']", "max_steps=1",
                      "-o", str(tmp_path / "none"))
    assert nothing.returncode == 2 and "no parameter matches" in nothing.stderr and "Traceback" not in nothing.stderr


def test_unfrozen_row_ranges_train_only_those_rows(lab_base: dict, tmp_path: Path) -> None:
    # Axolotl's range form: the first 128 of the 512 rows of one weight, and all of another
    from safetensors.torch import load_file

    up, gate = "model.layers.1.mlp.up_proj.weight", "model.layers.1.mlp.gate_proj.weight"
    result = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", f"unfrozen_parameters=['^{up}$[:128]', '^{gate}$']",
                     "max_steps=3", "eval_lab_count=0", "datasets.0.num_samples=64", "-o", str(tmp_path / "out"))
    assert result.returncode == 0, result.stderr
    assert f"training {128 * 256 + 512 * 256:,} of" in result.stderr
    before = load_file(str(Path(lab_base["path"]) / "model.safetensors"))
    after = load_file(str(tmp_path / "out" / "model.safetensors"))
    changed = sorted(name for name in before if not bool((before[name] == after[name]).all()))
    assert changed == [gate, up]
    rows_changed = (before[up] != after[up]).any(dim=1)
    assert bool(rows_changed[:128].all()) and not bool(rows_changed[128:].any()), "rows 128 on stay bit-identical"
    for rows, shown in (("[500:600]", "rows [500:600]"), ("[600:]", "rows [600:512]")):  # past the end; empty
        too_far = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", f"unfrozen_parameters=['^{up}${rows}']", "max_steps=1",
                          "-o", str(tmp_path / "none"))
        assert too_far.returncode == 2 and shown in too_far.stderr and "Traceback" not in too_far.stderr, too_far.stderr


def test_adam_keys_reach_the_optimizer(tmp_path: Path) -> None:
    from transformers import Trainer

    from llmcourse.finetune.sft import sft_config
    from llmcourse.lab.model import init_model, llama_config
    from llmcourse.recipes.registry import load_command_recipe

    recipe = load_command_recipe("sft", "lab/sft", ["base_model=m", "adam_beta1=0.8", "adam_beta2=0.95", "adam_eps=1.0e-6"], None)
    model = init_model(llama_config(300, 0, 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    num_key_value_heads=1), seed=0)
    optimizer = Trainer(model=model, args=sft_config(recipe, tmp_path, False, 10)).create_optimizer()
    assert optimizer.defaults["betas"] == (0.8, 0.95) and optimizer.defaults["eps"] == 1.0e-6


def test_tracker_keys_reach_the_trainer_and_a_missing_package_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from llmcourse.finetune.sft import sft_config
    from llmcourse.recipes.registry import load_command_recipe

    for variable in ("WANDB_PROJECT", "WANDB_MODE", "WANDB_NAME", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(os, "environ", dict(os.environ))  # the trackers' settings travel as environment variables
    recipe = load_command_recipe("sft", "lab/sft", ["base_model=m", "wandb_project=lab", "wandb_mode=offline", "wandb_name=run-1",
                                                    "mlflow_tracking_uri=file:./mlruns", "report_to=[tensorboard]"], None)
    config = sft_config(recipe, tmp_path, False, 10)
    assert sorted(config.report_to) == ["mlflow", "tensorboard", "wandb"] and config.run_name == "run-1"
    assert os.environ["WANDB_PROJECT"] == "lab" and os.environ["WANDB_MODE"] == "offline"
    assert os.environ["MLFLOW_TRACKING_URI"] == "file:./mlruns"
    off = load_command_recipe("sft", "lab/sft", ["base_model=m", "wandb_project=lab", "wandb_mode=disabled"], None)
    assert sft_config(off, tmp_path, False, 10).report_to in ([], "none", ["none"])
    import importlib.util

    if importlib.util.find_spec("wandb") is None:  # where wandb is installed the same run goes ahead
        result = run_cli("sft", "lab/sft", "wandb_project=lab", "--dry-run")
        assert result.returncode == 2 and "wandb_project: reporting to wandb needs the wandb package" in result.stderr
        assert "pip install wandb" in result.stderr and "Traceback" not in result.stderr


def test_axolotl_loop_keys_reach_the_trainer_arguments(tmp_path: Path) -> None:
    from llmcourse.finetune.sft import sft_config
    from llmcourse.recipes.registry import load_command_recipe

    recipe = load_command_recipe("sft", "lab/sft", ["base_model=m", "group_by_length=true", "save_total_limit=2", "save_steps=5",
                                                    "sdp_attention=true"], None)
    config = sft_config(recipe, tmp_path, False, 10)
    assert config.train_sampling_strategy == "group_by_length" and config.save_total_limit == 2 and config.save_steps == 5
    assert recipe.attn_implementation == "sdpa", "Axolotl's sdp_attention: true"


def test_hub_model_id_pushes_the_finished_output_with_its_card(lab_base: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub

    from llmcourse.finetune.sft import run
    from llmcourse.recipes.registry import load_command_recipe

    calls: list[tuple[str, dict]] = []
    monkeypatch.setattr(huggingface_hub.HfApi, "create_repo", lambda self, repo, **kw: calls.append(("create", {"repo": repo, **kw})))

    def upload(self: object, **kw: object) -> None:
        folder = Path(str(kw["folder_path"]))
        assert not folder.name.endswith(".partial") and (folder / "model.safetensors").is_file()
        assert f"base_model: {lab_base['path']}" in (folder / "README.md").read_text()
        calls.append(("upload", kw))

    monkeypatch.setattr(huggingface_hub.HfApi, "upload_folder", upload)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    recipe = load_command_recipe("sft", "lab/sft", [f"base_model={lab_base['path']}", "max_steps=2", "eval_lab_count=0",
                                                    "datasets.0.num_samples=64", "hub_model_id=someone/lab-sft", "hub_private_repo=true",
                                                    "hub_strategy=end"], tmp_path / "out")
    summary = run(recipe)
    assert summary["pushed"] == "https://huggingface.co/someone/lab-sft"
    assert calls[0] == ("create", {"repo": "someone/lab-sft", "private": True, "exist_ok": True})
    assert calls[1][1]["repo_id"] == "someone/lab-sft" and Path(str(calls[1][1]["folder_path"])) == tmp_path / "out"


def test_hub_keys_that_cannot_be_honoured_are_refused_before_training(tmp_path: Path) -> None:
    strategy = run_cli("sft", "lab/sft", "hub_model_id=someone/x", "hub_strategy=every_save", "--dry-run")
    assert strategy.returncode == 2 and "hub_strategy" in strategy.stderr
    offline = run_cli("sft", "lab/sft", "hub_model_id=someone/x", "--dry-run")  # the tests run with HF_HUB_OFFLINE=1
    assert offline.returncode == 2 and "HF_HUB_OFFLINE is set" in offline.stderr and "Traceback" not in offline.stderr


def test_axolotl_tokens_become_single_tokens_with_embeddings_padded_to_32(lab_base: dict, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    result = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", "tokens=['<tool>', '</tool>']", "resize_token_embeddings_to_32x=true",
                     "max_steps=2", "eval_lab_count=0", "datasets.0.num_samples=64", "-o", str(tmp_path / "out"), "--json")
    assert result.returncode == 0, result.stderr
    before = len(AutoTokenizer.from_pretrained(lab_base["path"]))
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert len(tokenizer) == before + 2 and "<tool>" in tokenizer.tokenize("call <tool> now") and "</tool>" in tokenizer.tokenize("x</tool>")
    rows = json.loads((tmp_path / "out" / "config.json").read_text())["vocab_size"]
    assert rows % 32 == 0 and rows >= len(tokenizer)
