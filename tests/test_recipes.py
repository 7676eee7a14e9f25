"""Every shipped recipe validates; overrides and error messages behave."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO, run_cli
from llmcourse.core.errors import UserError
from llmcourse.recipes.loader import apply_overrides, parse_override, validate
from llmcourse.recipes.pretrain import PretrainRecipe
from llmcourse.recipes.registry import detect_command, recipe_model, shipped_recipes

SHIPPED = sorted((REPO / "configs").rglob("*.yaml"))


def test_recipes_are_shipped() -> None:
    assert SHIPPED, "configs/ must hold recipes"
    assert set(shipped_recipes()) == {str(p.relative_to(REPO / "configs").with_suffix("")) for p in SHIPPED}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(REPO / "configs")))
def test_shipped_recipe_validates(path: Path) -> None:
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("# llmcourse "), "each shipped recipe starts with the command that runs it"
    result = run_cli("validate", str(path))
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stderr


def test_validate_reports_each_invalid_recipe(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("# llmcourse pretrain\ndata:\n  datasets: []\n")
    result = run_cli("validate", str(SHIPPED[0]), str(bad))
    assert result.returncode == 2
    assert "data.datasets: list should have at least 1 item" in result.stderr
    assert "1 of 2 recipe(s) invalid" in result.stderr


def test_overrides_set_nested_values_and_list_items() -> None:
    data = {"train": {"learning_rate": 0.1}, "data": {"datasets": [{"path": "a"}]}}
    result = apply_overrides(data, ["train.learning_rate=1e-4", "data.datasets.0.path=lab://corpus", "model.hidden_size=64"])
    assert result["data"]["datasets"][0]["path"] == "lab://corpus"
    assert result["model"] == {"hidden_size": 64}
    assert data["train"]["learning_rate"] == 0.1, "the input is not modified"
    recipe = validate(PretrainRecipe, result)
    assert recipe.train.learning_rate == pytest.approx(1e-4)


@pytest.mark.parametrize("text", ["novalue", "=3", "a..b=1", ".a=1"])
def test_bad_override_syntax_is_a_user_error(text: str) -> None:
    with pytest.raises(UserError):
        parse_override(text)


def test_every_validation_problem_is_reported_with_its_path() -> None:
    with pytest.raises(UserError) as info:
        validate(PretrainRecipe, {"data": {"datasets": [{"path": "lab://corpus", "num_sample": 3}]},
                                  "train": {"micro_batch_size": 0, "lr_scheduler": "cosin"}})
    message = info.value.message
    assert "3 problems" in message
    assert "data.datasets.0.num_sample: unknown key (did you mean 'num_samples'?)" in message
    assert "train.micro_batch_size: must be > 0, got 0" in message
    assert "train.lr_scheduler: must be one of" in message


def test_dry_run_prints_the_resolved_recipe() -> None:
    result = run_cli("pretrain", "lab/pretrain", "train.max_steps=7", "--dry-run")
    assert result.returncode == 0, result.stderr
    import yaml

    resolved = yaml.safe_load(result.stdout)
    assert resolved["train"]["max_steps"] == 7
    assert resolved["model"]["hidden_size"] == 256


def test_detect_command_reads_the_header(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("# llmcourse pretrain my.yaml\ndata: {}\n")
    assert detect_command(recipe) == "pretrain"
    assert recipe_model("pretrain") is PretrainRecipe


def test_recipes_cp_copies_and_refuses_to_overwrite(tmp_path: Path) -> None:
    dest = tmp_path / "mine.yaml"
    assert run_cli("recipes", "cp", "lab/pretrain", str(dest)).returncode == 0
    assert dest.read_text() == (REPO / "configs/lab/pretrain.yaml").read_text()
    again = run_cli("recipes", "cp", "lab/pretrain", str(dest))
    assert again.returncode == 2 and "already exists" in again.stderr


def test_recipes_ls_lists_every_shipped_recipe() -> None:
    result = run_cli("recipes", "ls")
    assert result.returncode == 0
    for name in shipped_recipes():
        assert name in result.stdout


def test_validate_runs_the_dpo_preflight(tmp_path: Path) -> None:
    recipe = tmp_path / "dpo.yaml"
    text = (REPO / "configs" / "lab" / "dpo.yaml").read_text(encoding="utf-8")
    recipe.write_text(text + "ref_model: ./no-such-reference\n", encoding="utf-8")
    result = run_cli("validate", str(recipe))
    assert result.returncode == 2
    assert "no-such-reference" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(("text", "expected"), [
    ("base_model: lab://base\nrl: dpo\ndatasets:\n  - path: lab://parity\n", "(dpo)"),
    ("base_model: lab://base\ndatasets:\n  - path: lab://parity\n", "(sft)"),
    ("models: [lab://base]\nsuite: lab\nlimit: 5\n", "(eval)"),
    ("model: lab://base\nformats: [int8]\n", "(quantize)"),
    ("tokenizer: {vocab_size: 512}\ndata:\n  datasets: [{path: lab://corpus}]\n", "(pretrain)"),
])
def test_validate_infers_the_command_of_an_unmarked_axolotl_file(tmp_path: Path, text: str, expected: str) -> None:
    recipe = tmp_path / "config.yml"
    recipe.write_text(text, encoding="utf-8")
    result = run_cli("validate", str(recipe))
    assert result.returncode == 0, result.stderr
    assert expected in result.stderr


@pytest.mark.parametrize(("text", "message"), [
    ("base_model: lab://base\nrl: kto\ndatasets:\n  - path: lab://parity\n", "rl: kto is not supported yet"),
    ("merge_method: slerp\nbase_model: a\nslices: []\n", "this is a mergekit config"),
    ("learning_rate: 0.1\n", "cannot tell which command"),
    ("task: my_task\ndataset_path: json\ndoc_to_text: '{{q}}'\n", "this is an lm-eval task file"),
])
def test_validate_says_why_it_cannot_take_a_file(tmp_path: Path, text: str, message: str) -> None:
    recipe = tmp_path / "config.yml"
    recipe.write_text(text, encoding="utf-8")
    result = run_cli("validate", str(recipe))
    assert result.returncode == 2 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_special_tokens_take_axolotls_keys_and_refuse_unknown_roles() -> None:
    from llmcourse.recipes.sft import SftRecipe

    base = {"base_model": "m", "datasets": [{"path": "lab://parity"}]}
    recipe = SftRecipe.model_validate({**base, "special_tokens": {"pad_token": "<|end_of_text|>", "eos": "</s>"}})
    assert recipe.special_tokens == {"pad": "<|end_of_text|>", "eos": "</s>"}
    with pytest.raises(Exception, match="unknown special token 'padd_token'"):
        SftRecipe.model_validate({**base, "special_tokens": {"padd_token": "x"}})


def test_errors_name_the_keys_as_written_and_suggest_only_close_ones(tmp_path: Path) -> None:
    recipe = tmp_path / "config.yml"
    recipe.write_text("base_model: lab://base\ndatasets:\n  - path: lab://parity\nbeta_schedule: 1.0e-8\nevals_per_epoch: -1\n"
                      "lora_target_modules: 5\nlearnig_rate: 0.1\n", encoding="utf-8")
    result = run_cli("validate", str(recipe))
    assert result.returncode == 2
    assert "  evals_per_epoch: must be >= 0, got -1" in result.stderr and "train.evals_per_epoch" not in result.stderr
    assert "  lora_target_modules: expected a list of module names or one regular expression, got 5" in result.stderr
    assert "beta_schedule: unknown key\n" in result.stderr, "no far-fetched suggestion"
    assert "learnig_rate: unknown key (did you mean 'learning_rate'?)" in result.stderr


def test_unfrozen_parameters_are_for_full_fine_tuning_and_must_be_regexes() -> None:
    from llmcourse.recipes.sft import SftRecipe

    base = {"base_model": "m", "datasets": [{"path": "lab://parity"}]}
    assert SftRecipe.model_validate({**base, "unfrozen_parameters": ["^lm_head"]}).unfrozen_parameters == ["^lm_head"]
    with pytest.raises(Exception, match="with a LoRA adapter use lora_target_modules"):
        SftRecipe.model_validate({**base, "adapter": "lora", "unfrozen_parameters": ["^lm_head"]})
    with pytest.raises(Exception, match="is not a regular expression"):
        SftRecipe.model_validate({**base, "unfrozen_parameters": ["model.layers.[0"]})
    with pytest.raises(Exception, match="the range's end must be greater than its start"):
        SftRecipe.model_validate({**base, "unfrozen_parameters": ["^lm_head.weight$[300:200]"]})


def test_unfrozen_parameters_take_axolotl_s_row_ranges() -> None:
    from llmcourse.recipes.sft import split_row_range

    assert split_row_range("^model.embed_tokens.weight$[:32000]") == ("^model.embed_tokens.weight$", (0, 32000))
    assert split_row_range("^lm_head.weight$[100:]") == ("^lm_head.weight$", (100, None))
    assert split_row_range("^lm_head.weight$[3:7]") == ("^lm_head.weight$", (3, 7))
    assert split_row_range("^lm_head.weight$[5]") == ("^lm_head.weight$", (5, 6))
    assert split_row_range("model.layers.[0-3].mlp") == ("model.layers.[0-3].mlp", None), "a character class is a regex"
    assert split_row_range("^model.layers.1[0-9]") == ("^model.layers.1[0-9]", None)


@pytest.mark.parametrize(("line", "message"), [
    ("tensor_parallel_size: 2", "tensor_parallel_size: multi-dimensional parallelism is not offered"),
    ("context_parallel_size: 4", "context_parallel_size: multi-dimensional parallelism"),
    ("dp_shard_size: 2", "dp_shard_size: multi-dimensional parallelism"),
    ("use_scattermoe: true", "use_scattermoe: needs CUDA kernels"),
    ("lora_model_dir: ./old-adapter", "lora_model_dir: continuing a saved adapter is not offered"),
    ("lr_quadratic_warmup: true", "lr_quadratic_warmup: a quadratic warmup is not offered"),
    ("loss_watchdog_threshold: 5.0", "loss_watchdog_threshold: the loss watchdog is not offered"),
    ("shuffle_merged_datasets: false", "shuffle_merged_datasets: false is not offered"),
    ("plugins:\n  - axolotl.integrations.cut_cross_entropy.CutCrossEntropyPlugin", "plugins: axolotl.integrations.cut_cross_entropy"),
])
def test_axolotl_keys_we_cannot_honour_are_refused_by_name(tmp_path: Path, line: str, message: str) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"base_model: some/model\ndatasets:\n  - path: data.jsonl\n{line}\n")
    result = run_cli("validate", str(recipe))
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr, result.stderr


def test_liger_plugin_keys_switch_liger_on(tmp_path: Path) -> None:
    from llmcourse.recipes.registry import load_command_recipe

    recipe = tmp_path / "r.yaml"
    recipe.write_text("base_model: some/model\ndatasets:\n  - path: data.jsonl\nplugins:\n  - axolotl.integrations.liger.LigerPlugin\n"
                      "liger_rms_norm: true\nliger_glu_activation: true\n")
    assert load_command_recipe("sft", str(recipe), [], None).liger is True
    plain = tmp_path / "p.yaml"
    plain.write_text("base_model: some/model\ndatasets:\n  - path: data.jsonl\n")
    assert load_command_recipe("sft", str(plain), [], None).liger is False
