"""`llmcourse dpo` / `orpo` through the real CLI on lab models: rewards rise, losses fall, outputs are clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from conftest import run_cli

pytestmark = pytest.mark.slow


def dpo(*args: str, cwd: Path) -> dict:
    result = run_cli(*args, "--json", cwd=cwd)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def card_front_matter(folder: Path) -> str:
    return (folder / "README.md").read_text().split("---")[1]


def test_lora_dpo_with_the_implicit_reference(lab_sft: str, tmp_path: Path) -> None:
    sft = lab_sft
    summary = dpo("dpo", "lab/dpo-lora", f"base_model={sft}", "max_steps=60", "eval_lab_count=20", "-o", "out", cwd=tmp_path)
    assert summary["reference"].startswith("implicit")
    assert summary["last_logged_loss"] < summary["first_logged_loss"]
    assert summary["reward_margin"] > 0 and summary["reward_accuracy"] >= 0.75, summary
    out = tmp_path / "out"
    assert (out / "adapter_model.safetensors").exists() and (out / "merged" / "model.safetensors").exists()
    assert not (out / "ref").exists(), "TRL's frozen reference adapter is not part of the result"
    assert not list(out.rglob("*.bin")), "safetensors only"
    assert f"base_model: {sft}" in card_front_matter(out)
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("rewards/accuracies" in row and "rewards/margins" in row for row in logged)
    merged = load_file(out / "merged" / "model.safetensors")
    original = load_file(Path(sft) / "model.safetensors")
    assert merged.keys() == original.keys()
    assert any((merged[k] - original[k]).abs().max() > 0 for k in merged), "the adapter changed the weights"


def test_orpo_from_the_base_learns_without_a_reference(lab_base: dict, tmp_path: Path) -> None:
    summary = dpo("orpo", "lab/orpo", f"base_model={lab_base['path']}", "max_steps=60", "eval_lab_count=20", "-o", "out",
                  cwd=tmp_path)
    assert summary["rl"] == "orpo" and summary["reference"] == "none"
    assert summary["last_logged_loss"] < 0.5 * summary["first_logged_loss"], summary
    assert summary["pair_accuracy"] > summary["before/pair_accuracy"], summary
    assert summary["exact_match/mean"] > summary["before/exact_match/mean"], summary


# SimPO's reward is the length-normalised log-probability, which the SFT model already separates on
# its own skills (margins ~4 from the first step, flat over 40 steps, lower at the end than at the
# start under ATEN_CPU_CAPABILITY=avx2), so SimPO trains on pairs of two skills the SFT model was
# never taught (topic and sign: margins start near 0 and rise).
SIMPO = ["rl=simpo", "beta=2.0", "max_steps=40", "logging_steps=5", "datasets.0.num_samples=800", "datasets.0.path=lab://topic+sign"]


@pytest.mark.parametrize("extra", [["rl=ipo"], SIMPO, ["ref_model={sft}", "precompute_ref_log_probs=true"]],
                         ids=["ipo", "simpo", "explicit-precomputed-reference"])
def test_other_preference_methods_train(extra: list[str], lab_sft: str, tmp_path: Path) -> None:
    sft = lab_sft
    args = [a.format(sft=sft) for a in extra]
    summary = dpo("dpo", "lab/dpo", f"base_model={sft}", "max_steps=24", "logging_steps=3", "micro_batch_size=16",
                  "datasets.0.num_samples=500", "eval_pairs=10", "eval_lab_count=0", *args, "-o", "out", cwd=tmp_path)
    assert summary["steps"] == (40 if extra == SIMPO else 24) and summary["pair_accuracy"] >= 0.5
    logged = [row for row in map(json.loads, (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()) if "loss" in row]
    margins = [row["rewards/margins"] for row in logged]  # chosen pulled away from rejected: the preference is learned
    assert len(margins) == 8 and sum(margins[-3:]) / 3 > sum(margins[:2]) / 2 and margins[-1] > 0, margins
    assert (tmp_path / "out" / "model.safetensors").exists()
    if "ref_model" in extra[0]:
        assert summary["reference"] == sft and summary["reward_margin"] > 0, summary


def write_pairs(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


ORCA = [{"system": "Answer briefly.", "question": f"Is {n} even or odd?", "chosen": "even" if n % 2 == 0 else "odd",
         "rejected": "odd" if n % 2 == 0 else "even"} for n in range(20)]


def test_preview_shows_one_formatted_pair_without_weights(lab_base: dict, tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "orca.jsonl", ORCA)
    result = run_cli("dpo", "lab/dpo", f"base_model={lab_base['path']}", f"datasets.0.path={data}", "datasets.0.type=chatml.intel",
                     "datasets.0.num_samples=20", "--preview", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Answer briefly." in result.stdout and "Is 0 even or odd?" in result.stdout
    assert "chosen (" in result.stdout and "rejected (" in result.stdout and "left-padded" in result.stdout


def test_some_identical_pairs_are_dropped_with_a_warning(lab_base: dict, tmp_path: Path) -> None:
    rows = [dict(row) for row in ORCA]
    rows[0]["rejected"] = rows[0]["chosen"]
    rows[1]["rejected"] = rows[1]["chosen"]
    data = write_pairs(tmp_path / "pairs.jsonl", rows)
    result = run_cli("dpo", "lab/dpo", f"base_model={lab_base['path']}", f"datasets.0.path={data}", "datasets.0.num_samples=20",
                     "max_steps=2", "eval_lab_count=0", "-o", "out", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "2 of 20 pairs have chosen == rejected" in result.stderr
    assert json.loads(result.stdout)["pairs"] == 18


@pytest.mark.parametrize("rows, expected", [
    ([{k: v for k, v in row.items() if k != "rejected"} for row in ORCA], "has no 'rejected' column"),
    ([{**row, "rejected": row["chosen"]} for row in ORCA], "chosen equals rejected in all 20 pairs"),
], ids=["missing-rejected", "chosen-equals-rejected-everywhere"])
def test_bad_preference_data_is_a_clear_error(rows: list[dict], expected: str, lab_base: dict, tmp_path: Path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", rows)
    result = run_cli("dpo", "lab/dpo", f"base_model={lab_base['path']}", f"datasets.0.path={data}", "-o", "out", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()
