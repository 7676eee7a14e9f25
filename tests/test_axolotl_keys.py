"""Axolotl keys that change training, each shown to reach what it changes (or refused with its reason)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from llmcourse.core.chat_templates import prepare_chat_template
from llmcourse.core.errors import UserError
from llmcourse.finetune import data as sft_data
from llmcourse.recipes.registry import load_command_recipe
from test_chat_formats import CONVERSATION, word_tokenizer


def recipe(*overrides: str):
    return load_command_recipe("sft", "lab/sft", ["base_model=m", *overrides], None)


def test_trainer_keys_pass_through_to_the_training_arguments(tmp_path: Path) -> None:
    from llmcourse.finetune.sft import sft_config

    config = sft_config(recipe("fsdp=[full_shard, auto_wrap]", "fsdp_version=2", "ddp_find_unused_parameters=false",
                               "accelerator_config={split_batches: true}", "gradient_checkpointing_kwargs={use_reentrant: false}",
                               "save_strategy=no", "remove_unused_columns=false"), tmp_path, False, 10)
    assert config.fsdp and config.fsdp_config["version"] == 2
    assert config.ddp_find_unused_parameters is False and config.accelerator_config.split_batches is True
    assert config.gradient_checkpointing_kwargs == {"use_reentrant": False}
    assert str(config.save_strategy.value) == "no" and config.remove_unused_columns is False
    epoch = sft_config(recipe("save_strategy=epoch"), tmp_path, False, 10)
    assert str(epoch.save_strategy.value) == "epoch"


@pytest.mark.parametrize(("override", "message"), [
    ("gradient_checkpointing=offload", "gradient_checkpointing: offload"),
    ("remove_unused_columns=true", "remove_unused_columns"),
    ("early_stopping_patience=2", "early_stopping_patience needs evaluations to compare"),
    ("model_config={rope_theta: 1}", None),
])
def test_keys_that_cannot_be_honoured_as_given_are_refused(override: str, message: str | None) -> None:
    if message is None:
        assert recipe(override).config_overrides == {"rope_theta": 1}, "Axolotl's model_config (a name pydantic reserves)"
        return
    with pytest.raises(UserError, match=message):
        recipe(override)


def _tokenizer(template: str = "chatml"):
    tokenizer = word_tokenizer()
    prepare_chat_template(tokenizer, template)
    return tokenizer


@pytest.mark.parametrize(("policy", "learned"), [("turn", 2), ("last", 1), ("none", 0), ("all", 5)])
def test_train_on_eos_decides_which_end_tokens_are_learned(policy: str, learned: int) -> None:
    tokenizer = _tokenizer()
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    ids, mask = sft_data.encode(tokenizer, {"messages": CONVERSATION}, False, (policy, {end}))
    assert sum(m for token, m in zip(ids, mask) if token == end) == learned
    assert sum(1 for token in ids if token == end) == 5, "system, two user and two assistant turns"


def test_eot_tokens_are_single_tokens_that_stop_generation(tmp_path: Path) -> None:
    from llmcourse.finetune.common import end_token_ids, prepare_tokenizer
    from llmcourse.lab.families import tokenizer_folder

    sft = recipe(f"tokenizer={tokenizer_folder('gpt-2')}", "eot_tokens=['<|turn_end|>']", "chat_template=alpaca")
    tokenizer, template, added = prepare_tokenizer(sft)
    assert "<|turn_end|>" in added and len(tokenizer.tokenize("a<|turn_end|>b")) == 3
    assert tokenizer.convert_tokens_to_ids("<|turn_end|>") in end_token_ids(tokenizer, sft, template)


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_dataset_keys_drop_system_keep_reasoning_shard_and_deduplicate(tmp_path: Path) -> None:
    rows = [{"conversations": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": f"Q{i % 10}"},
                               {"role": "assistant", "content": f"A{i % 10}", "thought": f"think {i % 10}"}]} for i in range(40)]
    data = _jsonl(tmp_path / "chat.jsonl", rows)
    base = [f"datasets=[{{path: {data}, type: chat_template, field_messages: conversations}}]"]
    examples = sft_data.load_examples(recipe(*base))
    assert len(examples) == 40 and examples[0][1]["messages"][0]["role"] == "system"
    dropped = sft_data.load_examples(recipe(*base, "datasets.0.drop_system_message=true", "datasets.0.field_thinking=thought"))
    messages = dropped[0][1]["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[1]["reasoning_content"].startswith("think")
    tokenizer = _tokenizer("qwen3")
    assert "<think>\nthink" in tokenizer.apply_chat_template(messages, tokenize=False), "Qwen 3 renders the kept reasoning"
    assert len(sft_data.load_examples(recipe(*base, "datasets.0.shards=4", "datasets.0.shards_idx=1"))) == 10
    assert len(sft_data.load_examples(recipe(*base, "dataset_exact_deduplication=true"))) == 10


def test_model_loading_keys_reach_the_model_the_tokenizer_and_bitsandbytes(tmp_path: Path) -> None:
    from llmcourse.finetune.adapters import attach_lora, load_base, quantization_config
    from llmcourse.lab.model import init_model, llama_config

    folder = tmp_path / "tiny"
    init_model(llama_config(300, 0, 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1), seed=0).save_pretrained(folder)
    sft = load_command_recipe("sft", "lab/sft", [f"base_model={folder}", "model_config={attention_dropout: 0.25}"], None)
    assert load_base(sft).config.attention_dropout == 0.25
    with pytest.raises(UserError, match="model_config: not_a_field not in LlamaConfig"):
        load_base(load_command_recipe("sft", "lab/sft", [f"base_model={folder}", "model_config={not_a_field: 1}"], None))
    lora = load_command_recipe("sft", "lab/sft", [f"base_model={folder}", "adapter=lora", "peft_use_rslora=true", "peft_use_dora=true"], None)
    config = attach_lora(load_base(lora), lora, added_tokens=False).peft_config["default"]
    assert config.use_rslora and config.use_dora
    nf4 = load_command_recipe("sft", "lab/sft", ["base_model=m", "adapter=qlora", "bnb_config_kwargs={bnb_4bit_quant_type: fp4}"], None)
    assert quantization_config(nf4).bnb_4bit_quant_type == "fp4"
    assert recipe("tokenizer_config=some/tokenizer").tokenizer == "some/tokenizer"


def test_a_lora_adapter_starts_from_the_recipe_s_seed(tmp_path: Path) -> None:
    # Two runs of one recipe must start from the same adapter whatever the process drew before.
    import torch

    from llmcourse.finetune.adapters import attach_lora, load_base
    from llmcourse.lab.model import init_model, llama_config

    folder = tmp_path / "tiny"
    init_model(llama_config(300, 0, 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                            num_key_value_heads=1), seed=0).save_pretrained(folder)

    def adapter(seed: int, drawn_before: int) -> dict[str, torch.Tensor]:
        lora = load_command_recipe("sft", "lab/sft", [f"base_model={folder}", "adapter=lora", f"seed={seed}"], None)
        torch.manual_seed(drawn_before)
        model = attach_lora(load_base(lora), lora, added_tokens=False)
        return {name: tensor.detach().clone() for name, tensor in model.state_dict().items() if "lora_A" in name}

    first, again, other = adapter(0, 1), adapter(0, 2), adapter(1, 1)
    assert first and all(torch.equal(first[name], again[name]) for name in first)
    assert not all(torch.equal(first[name], other[name]) for name in first), "another seed, another adapter"


def test_axolotl_deepspeed_config_names_map_to_our_presets(tmp_path: Path) -> None:
    from llmcourse.finetune.sft import deepspeed_config

    assert deepspeed_config("deepspeed_configs/zero3_bf16.json").endswith("ds_zero3.json")
    assert deepspeed_config("deepspeed_configs/zero1.json").endswith("ds_zero1.json")
    own = tmp_path / "deepspeed_configs" / "zero2.json"
    own.parent.mkdir()
    own.write_text("{}")
    assert deepspeed_config(str(own)) == str(own), "a file that exists is the user's own"


@pytest.mark.slow
def test_early_stopping_patience_stops_a_diverging_run(lab_base: dict, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_cli("sft", "lab/sft", f"base_model={lab_base['path']}", "datasets.0.num_samples=400", "max_steps=40",
                     "learning_rate=0.5", "eval_steps=2", "val_set_size=32", "early_stopping_patience=2", "eval_lab_count=0",
                     "sequence_len=128", "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    steps = json.loads((out / "report.json").read_text())["steps"]
    assert steps < 40, f"a run whose eval loss rises stops after 2 evaluations without improvement (ran {steps} steps)"


def test_model_quantization_config_names_a_transformers_config() -> None:
    from llmcourse.finetune.adapters import quantization_config

    named = recipe("adapter=lora", "model_quantization_config=BitsAndBytesConfig",
                   "model_quantization_config_kwargs={load_in_4bit: true, bnb_4bit_quant_type: fp4}")
    config = quantization_config(named)
    assert type(config).__name__ == "BitsAndBytesConfig" and config.load_in_4bit and config.bnb_4bit_quant_type == "fp4"
    with pytest.raises(UserError, match="'LlamaConfig' is not a transformers quantization config"):
        quantization_config(recipe("model_quantization_config=LlamaConfig"))
    with pytest.raises(UserError, match="both quantize the base"):
        recipe("adapter=qlora", "model_quantization_config=BitsAndBytesConfig")


def test_legacy_message_field_keys_and_the_peft_block() -> None:
    from llmcourse.recipes.dpo import PreferenceDataset
    from llmcourse.recipes.sft import SftDataset

    for dataset in (SftDataset, PreferenceDataset):
        source = dataset(path="x.jsonl", message_field_role="from", message_field_content="value")
        assert source.message_property_mappings == {"role": "from", "content": "value"}
    with pytest.raises(UserError, match="peft: LoftQ initialisation"):
        recipe("peft={loftq_config: {loftq_bits: 4}}")


def test_bitsandbytes_optimizers_step_on_this_machine_or_are_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    import torch
    from transformers import Trainer

    from llmcourse.finetune import sft
    from llmcourse.lab.model import init_model, llama_config

    model = init_model(llama_config(300, 0, 1, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
                                    num_key_value_heads=1), seed=0)
    paged = recipe("optimizer=paged_adamw_8bit")
    optimizer = Trainer(model=model, args=sft.sft_config(paged, tmp_path, False, 10)).create_optimizer()
    assert type(optimizer).__module__.startswith("bitsandbytes")
    before = model.model.layers[0].mlp.up_proj.weight.detach().clone()
    model(torch.tensor([[1, 2, 3]]), labels=torch.tensor([[1, 2, 3]])).loss.backward()
    optimizer.step()
    assert not torch.equal(before, model.model.layers[0].mlp.up_proj.weight), "the 8-bit paged optimizer updated the weights"
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bitsandbytes" else real(name, *a))
    monkeypatch.setattr(sft, "check_model_source", lambda *a: "m")
    with pytest.raises(UserError, match="optimizer: paged_adamw_8bit is a bitsandbytes optimizer"):
        sft.preflight(load_command_recipe("sft", "lab/sft", ["base_model=lab://base", "optimizer=paged_adamw_8bit"], None))


def test_attention_kernels_that_cannot_train_here_fall_back_with_a_warning() -> None:
    import torch

    from llmcourse.finetune.adapters import attention_implementation

    assert recipe("attn_implementation=flex").attn_implementation == "flex_attention"
    assert recipe("flash_attention=true").attn_implementation == "flash_attention_2"
    if torch.cuda.is_available():
        pytest.skip("on a GPU these kernels can run")
    attention_implementation.cache_clear()
    assert attention_implementation("flex_attention") is None and attention_implementation("flash_attention_2") is None
    assert attention_implementation("eager") == "eager"
