"""Bad input through the real CLI: exit code 2, a message naming the problem, no traceback, no output."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import pytest

from conftest import REPO, run_cli

LAB_RECIPE = (REPO / "configs" / "lab" / "pretrain.yaml").read_text()
Case = Callable[[Path], tuple[list[str], str]]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def malformed_yaml(tmp: Path) -> tuple[list[str], str]:
    recipe = write(tmp / "bad.yaml", "# llmcourse pretrain\ndata:\n  datasets: [\n")
    return ["pretrain", str(recipe)], "malformed YAML (line"


def unknown_key(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "train.learning_rat=0.1"], "train.learning_rat: unknown key (did you mean 'learning_rate'?)"


def unknown_top_level_key(tmp: Path) -> tuple[list[str], str]:
    recipe = write(tmp / "r.yaml", LAB_RECIPE + "ouput_dir: x\n")
    return ["pretrain", str(recipe)], "ouput_dir: unknown key (did you mean 'output_dir'?)"


def wrong_type(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "train.micro_batch_size=lots"], "train.micro_batch_size: input should be a valid integer"


def out_of_range(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "model.hidden_size=-4"], "model.hidden_size: must be > 0, got -4"


def every_problem_at_once(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "model.hidden_size=-4", "train.learning_rate=0"], "2 problems"


def missing_recipe(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", str(tmp / "nope.yaml")], "recipe file not found"


def missing_dataset_file(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", f"data.datasets.0.path={tmp / 'corpus.txt'}"], "data.datasets.0.path: dataset file not found"


def unknown_lab_skill(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "data.datasets.0.path=lab://revers"], "unknown lab skill 'revers'"


def empty_dataset(tmp: Path) -> tuple[list[str], str]:
    empty = write(tmp / "empty.txt", "")
    return ["pretrain", "lab/pretrain", f"data.datasets.0.path={empty}"], "dataset is empty"


def blank_text_dataset(tmp: Path) -> tuple[list[str], str]:
    rows = write(tmp / "rows.jsonl", "\n".join(json.dumps({"text": "  "}) for _ in range(3)) + "\n")
    return ["pretrain", "lab/pretrain", f"data.datasets.0.path={rows}"], "dataset is empty"


def wrong_text_column(tmp: Path) -> tuple[list[str], str]:
    rows = write(tmp / "rows.jsonl", json.dumps({"body": "hello"}) + "\n")
    return ["pretrain", "lab/pretrain", f"data.datasets.0.path={rows}"], "has no column 'text'"


def bad_override_syntax(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "train.max_steps"], "bad override 'train.max_steps'"


def output_exists(tmp: Path) -> tuple[list[str], str]:
    existing = tmp / "out"
    write(existing / "keep.txt", "precious")
    return ["pretrain", "lab/pretrain", "--output-dir", str(existing)], "output already exists"


def missing_model(tmp: Path) -> tuple[list[str], str]:
    return ["lab", "score", str(tmp / "no-such-model")], "model not found"


def pickled_model(tmp: Path) -> Path:
    folder = tmp / "pickled"
    write(folder / "config.json", json.dumps({"model_type": "llama"}))
    write(folder / "pytorch_model.bin", "not really a pickle")
    return folder


def pickle_only_weights(tmp: Path) -> tuple[list[str], str]:
    return ["lab", "score", str(pickled_model(tmp))], "only pickle weights"


def unknown_shipped_recipe(tmp: Path) -> tuple[list[str], str]:
    return ["recipes", "cp", "lab/pretrian", str(tmp / "x.yaml")], "unknown recipe 'lab/pretrian' (did you mean 'lab/pretrain'?)"


def recipe_of_unknown_kind(tmp: Path) -> tuple[list[str], str]:
    recipe = write(tmp / "mystery.yaml", "foo: 1\n")
    return ["validate", str(recipe)], "cannot tell which command this recipe is for"


def sequence_longer_than_positions(tmp: Path) -> tuple[list[str], str]:
    return ["pretrain", "lab/pretrain", "data.sequence_len=4096"], "exceeds model.max_position_embeddings"


def hub_model_offline(tmp: Path) -> tuple[list[str], str]:
    return ["sft", "lab/sft", "base_model=some-org/not-cached-model"], "cannot load tokenizer 'some-org/not-cached-model'"


def sft_missing_tokenizer_folder(tmp: Path) -> tuple[list[str], str]:
    return ["sft", "lab/sft", f"tokenizer={tmp / 'tok'}/"], "tokenizer: folder not found"


def sft_pickle_only_base(tmp: Path) -> tuple[list[str], str]:
    return ["sft", "lab/sft", f"base_model={pickled_model(tmp)}"], "only pickle weights"


def sft_deepspeed_missing(tmp: Path) -> tuple[list[str], str]:
    return ["sft", "lab/sft", "deepspeed=zero2"], "deepspeed package is not installed"


CASES: list[Case] = [
    malformed_yaml, unknown_key, unknown_top_level_key, wrong_type, out_of_range, every_problem_at_once,
    missing_recipe, missing_dataset_file, unknown_lab_skill, empty_dataset, blank_text_dataset, wrong_text_column,
    bad_override_syntax, output_exists, missing_model, pickle_only_weights, unknown_shipped_recipe,
    recipe_of_unknown_kind, sequence_longer_than_positions, hub_model_offline, sft_missing_tokenizer_folder,
    sft_pickle_only_base, sft_deepspeed_missing,
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
def test_bad_input_exits_2_with_a_clear_message(case: Case, tmp_path: Path) -> None:
    args, expected = case(tmp_path)
    default_out = tmp_path / "default-out"
    if "--output-dir" not in args and args[0] in ("pretrain", "sft", "dpo"):
        args = [*args, "--output-dir", str(default_out)]
    before = sorted(p.name for p in tmp_path.iterdir())
    result = run_cli(*args, cwd=tmp_path, env={"LLMCOURSE_HOME": str(tmp_path / "home")})
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    after = sorted(p.name for p in tmp_path.iterdir())
    assert after == before, "a failed run must not leave output behind"
    assert not default_out.exists()


def test_existing_output_is_untouched(tmp_path: Path) -> None:
    args, _ = output_exists(tmp_path)
    run_cli(*args, cwd=tmp_path)
    assert (tmp_path / "out" / "keep.txt").read_text() == "precious"


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    result = run_cli("pretrain", str(tmp_path / "nope.yaml"), "--debug", cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" in result.stderr
    assert "recipe file not found" in result.stderr


def dpo_beta_not_positive(tmp: Path) -> tuple[list[str], str]:
    return ["dpo", "lab/dpo", "beta=0"], "beta: must be > 0.0, got 0"


def dpo_unknown_loss_type(tmp: Path) -> tuple[list[str], str]:
    return ["dpo", "lab/dpo", "loss_type=sigmod"], "unknown loss type 'sigmod' (did you mean 'sigmoid'?)"


def dpo_unknown_method(tmp: Path) -> tuple[list[str], str]:
    return ["dpo", "lab/dpo", "rl=kto"], "rl: must be one of 'dpo', 'ipo', 'orpo' or 'simpo', got 'kto'"


CASES += [dpo_beta_not_positive, dpo_unknown_loss_type, dpo_unknown_method]


@pytest.mark.parametrize(("args", "message"), [
    (["sft", "lab/sft", "deepspeed=./missing.json", "--dry-run"], "deepspeed: './missing.json' is neither a preset"),
    (["dpo", "lab/dpo", "ref_model=./missing-ref", "--dry-run"], "missing-ref"),
    (["quantize", "lab://base", "--format", "bnb", "--method", "nf5", "--dry-run"], "unknown method 'nf5'"),
])
def test_dry_run_refuses_what_the_real_run_would(args: list[str], message: str, tmp_path: Path) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def _sft_case(name: str, overrides: list[str], expected: str) -> Case:
    """An Axolotl-style mistake in an sft recipe, given as overrides of the shipped lab recipe."""

    def case(tmp: Path) -> tuple[list[str], str]:
        return ["sft", "lab/sft", *overrides], expected

    case.__name__ = name
    return case


AXOLOTL_MISTAKES = [
    ("sft_unknown_chat_template", ["chat_template=llama-3"], "unknown chat_template 'llama-3' (did you mean 'llama3'?)"),
    ("sft_unknown_dataset_type", ["datasets.0.type=sharegtp"], "unknown dataset type 'sharegtp' (did you mean 'sharegpt'?)"),
    ("sft_target_modules_not_names", ["lora_target_modules=5"], "lora_target_modules: expected a list of module names"),
    ("sft_tensor_parallel", ["tensor_parallel_size=2"], "tensor_parallel_size: multi-dimensional parallelism is not offered"),
    ("sft_foreign_plugin", ["plugins=[axolotl.integrations.kd.KDPlugin]"], "plugins: axolotl.integrations.kd.KDPlugin not offered"),
    ("sft_activation_offload", ["gradient_checkpointing=offload"], "gradient_checkpointing: offload"),
    ("sft_remove_unused_columns", ["remove_unused_columns=true"], "remove_unused_columns"),
    ("sft_early_stopping_without_evals", ["early_stopping_patience=3"], "early_stopping_patience needs evaluations"),
    ("sft_negative_evals_per_epoch", ["evals_per_epoch=-1"], "evals_per_epoch: must be >= 0, got -1"),
    ("sft_unknown_save_strategy", ["save_strategy=sometimes"], "save_strategy: must be one of"),
    ("sft_unknown_train_on_eos", ["train_on_eos=first"], "train_on_eos: must be one of"),
    ("sft_unknown_special_token_role", ["special_tokens={foo_token: x}"], "unknown special token 'foo_token'"),
    ("sft_unfrozen_with_lora", ["adapter=lora", "unfrozen_parameters=['^model.']"], "unfrozen_parameters selects weights for full"),
    ("sft_unfrozen_not_a_regex", ["unfrozen_parameters=['[']"], "unfrozen_parameters: '[' is not a regular expression"),
    ("sft_hub_strategy_every_save", ["hub_model_id=a/b", "hub_strategy=every_save"], "hub_strategy"),
    ("sft_scattermoe", ["use_scattermoe=true"], "use_scattermoe: needs CUDA kernels"),
    ("sft_unknown_deepspeed_name", ["deepspeed=deepspeed_configs/zero4.json"], "is neither a preset"),
    ("sft_fractional_val_set_count", ["val_set_size=1.5"], "val_set_size is a fraction (< 1) or a whole number"),
    ("sft_both_bit_widths", ["adapter=lora", "load_in_4bit=true", "load_in_8bit=true"], "load_in_4bit and load_in_8bit are exclusive"),
    ("sft_quantized_full_fine_tune", ["load_in_8bit=true"], "a quantized base cannot be fully fine-tuned"),
    ("sft_merge_without_adapter", ["merge_adapter=true"], "merge_adapter needs adapter: lora or qlora"),
    ("sft_rl_key_in_sft", ["rl=dpo"], "rl: preference tuning is `llmcourse dpo RECIPE`"),
]
CASES += [_sft_case(*mistake) for mistake in AXOLOTL_MISTAKES]


def test_the_matrix_has_at_least_45_cases() -> None:
    assert len(CASES) >= 45 and len({case.__name__ for case in CASES}) == len(CASES)


def test_generate_plot_without_matplotlib_is_refused_before_any_weight_is_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A user without the [plot] extra: the refusal must come before the model is read (this folder has no model at all).
    import sys

    from typer.testing import CliRunner

    from llmcourse.cli import app

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an environment without matplotlib looks like to find_spec
    result = CliRunner().invoke(app, ["generate", str(tmp_path), "--prompt", "hi", "--plot", str(tmp_path / "beam.png")])
    assert result.exit_code == 2, result.output
    assert "--plot needs matplotlib" in result.output and "pip install 'llmcourse[plot]'" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "beam.png").exists()
