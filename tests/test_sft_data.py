"""SFT recipes and data: Axolotl keys, every dataset format, loss masks, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import REPO, run_cli
from llmcourse.core.errors import UserError
from llmcourse.finetune import data as sft_data
from llmcourse.core.chat_templates import TEMPLATES, prepare_chat_template
from llmcourse.lab import corpus
from llmcourse.lab.tokenizer import train_tokenizer
from llmcourse.recipes.loader import validate
from llmcourse.recipes.sft import SftRecipe


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(corpus.documents("train", 2000), vocab_size=512)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def test_axolotl_flat_keys_land_in_sections() -> None:
    recipe = validate(SftRecipe, {"base_model": "org/m", "datasets": [{"path": "lab://all"}], "lora_r": 8, "lora_alpha": 16,
                                  "learning_rate": 1e-4, "micro_batch_size": 2, "num_epochs": 3, "wandb_project": "x"})
    assert recipe.adapter == "lora" and recipe.lora.r == 8 and recipe.lora.alpha == 16
    assert recipe.train.learning_rate == 1e-4 and recipe.train.micro_batch_size == 2 and recipe.train.num_epochs == 3


def test_axolotl_style_config_validates_with_one_warning() -> None:
    result = run_cli("validate", str(REPO / "configs/sft/axolotl-style-qwen-lora.yaml"))
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("warning:") == 1 and "pad_to_sequence_len" in result.stderr


@pytest.mark.parametrize("data, message", [
    ({"lora_rr": 8}, "lora_rr: unknown key (did you mean 'lora_r'?)"),
    ({"learning_rte": 1e-4}, "did you mean 'learning_rate'?"),
    ({"rl": "dpo"}, "llmcourse dpo"),
    ({"adapter": "qlora", "load_in_8bit": True}, "qlora loads the base in 4 bits"),
    ({"adapter": "none", "load_in_4bit": True}, "cannot be fully fine-tuned"),
    ({"datasets": [{"path": "x.jsonl", "type": "alpacca"}]}, "datasets.0.type: unknown dataset type 'alpacca' (did you mean 'alpaca'?)"),
    ({"chat_template": "chatlm"}, "chat_template: unknown chat_template 'chatlm' (did you mean 'chatml'?)"),
    ({"lora_r": 0, "adapter": "lora"}, "lora_r: must be > 0, got 0"),
])
def test_bad_sft_recipes(data: dict, message: str) -> None:
    base = {"base_model": "org/m", "datasets": [{"path": "lab://all"}]}
    with pytest.raises(UserError) as info:
        validate(SftRecipe, {**base, **data})
    assert message in str(info.value)


def examples_for(tmp_path: Path, rows: list[dict], **source) -> list:
    path = write_jsonl(tmp_path / "d.jsonl", rows)
    recipe = validate(SftRecipe, {"base_model": "org/m", "datasets": [{"path": str(path), **source}]})
    return [example for _, example in sft_data.load_examples(recipe)]


def test_alpaca_rows_become_chats(tmp_path: Path) -> None:
    [example] = examples_for(tmp_path, [{"instruction": "Add", "input": "2 and 3", "output": "5"}], type="alpaca")
    assert example["messages"] == [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]


def test_sharegpt_rows_become_chats(tmp_path: Path) -> None:
    rows = [{"conversations": [{"from": "system", "value": "be brief"}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}]
    [example] = examples_for(tmp_path, rows)  # type detected from the column
    assert [m["role"] for m in example["messages"]] == ["system", "user", "assistant"]


def test_chat_template_type_with_field_mappings(tmp_path: Path) -> None:
    rows = [{"dialog": [{"speaker": "customer", "text": "q"}, {"speaker": "agent", "text": "a"}]}]
    [example] = examples_for(tmp_path, rows, type="chat_template", field_messages="dialog",
                             message_property_mappings={"role": "speaker", "content": "text"},
                             roles={"user": ["customer"], "assistant": ["agent"]})
    assert example["messages"][1] == {"role": "assistant", "content": "a"}


def test_completion_rows_are_raw_text(tmp_path: Path) -> None:
    [example] = examples_for(tmp_path, [{"body": "once upon a time"}], type="completion", field="body")
    assert example == {"text": "once upon a time"}


def test_missing_field_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no field 'output'"):
        examples_for(tmp_path, [{"instruction": "x", "answer": "y"}], type="alpaca")


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_loss_mask_covers_exactly_the_assistant_turns(template: str, tokenizer) -> None:
    tok = train_tokenizer(corpus.documents("train", 2000), vocab_size=512)
    name, _ = prepare_chat_template(tok, template)
    messages = [{"role": "user", "content": "Is 12 even or odd?"}, {"role": "assistant", "content": "even"},
                {"role": "user", "content": "And 13?"}, {"role": "assistant", "content": "odd"}]
    ids, mask = sft_data.encode(tok, {"messages": messages}, train_on_inputs=False)
    learned = tok.decode([i for i, m in zip(ids, mask) if m])
    assert "even" in learned and "odd" in learned
    assert "12" not in learned and "And 13" not in learned
    ids_all, mask_all = sft_data.encode(tok, {"messages": messages}, train_on_inputs=True)
    assert ids_all == ids and all(mask_all)


def test_truncation_is_counted_and_empty_examples_dropped(tokenizer) -> None:
    prepare_chat_template(tokenizer, "chatml")
    long_prompt = {"messages": [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}]}
    short = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    encoded = sft_data.encode_all(tokenizer, [("a", long_prompt), ("b", short)], max_length=32, train_on_inputs=False)
    assert encoded.truncated == 1 and encoded.dropped == 1 and len(encoded.rows) == 1


def test_lab_sft_recipe_on_missing_data_file_exits_2(tmp_path: Path) -> None:
    result = run_cli("sft", "lab/sft", f"datasets.0.path={tmp_path / 'nope.jsonl'}", "--preview")
    assert result.returncode == 2 and "dataset file not found" in result.stderr
