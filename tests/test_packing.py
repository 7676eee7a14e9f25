"""Packed, padding-free batches (what `sample_packing: true` trains on) never attend across examples."""

from __future__ import annotations

import torch
from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

from llmcourse.lab.model import init_model, llama_config


def test_packed_logits_equal_separate_logits() -> None:
    config = llama_config(300, 0, 1, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2)
    model = init_model(config, seed=0).eval()
    first, second = list(range(5, 17)), list(range(40, 49))
    collator = DataCollatorForLanguageModeling(pad_token_id=1, padding_free=True)
    batch = collator([{"input_ids": first}, {"input_ids": second}])
    assert batch["input_ids"].shape == (1, len(first) + len(second)), "one row, no padding"
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    assert set(inputs) >= {"input_ids", "position_ids"}
    with torch.no_grad():
        # exactly what TRL's SFTTrainer feeds the model in training (it always passes use_cache=False)
        packed = model(**inputs, use_cache=False).logits[0]
        alone_first = model(input_ids=torch.tensor([first]), use_cache=False).logits[0]
        alone_second = model(input_ids=torch.tensor([second]), use_cache=False).logits[0]
        leaky = model(input_ids=batch["input_ids"], use_cache=False).logits[0]
    assert torch.allclose(packed[: len(first)], alone_first, atol=1e-5)
    assert torch.allclose(packed[len(first):], alone_second, atol=1e-5), "the second example must not see the first"
    assert not torch.allclose(leaky[len(first):], alone_second, atol=1e-3), "without position_ids it would leak"


def test_row_packed_batches_equal_separate_logits_and_skip_pads() -> None:
    from llmcourse.finetune.packing import row_packed_collator

    config = llama_config(300, 0, 1, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2)
    model = init_model(config, seed=0).eval()
    a, b, c = list(range(5, 17)), list(range(40, 49)), list(range(60, 70))
    rows = [{"input_ids": a + b, "seq_lengths": [len(a), len(b)]}, {"input_ids": c, "seq_lengths": [len(c)]}]
    batch = row_packed_collator(pad_token_id=1)(rows)
    assert batch["input_ids"].shape == (2, len(a) + len(b)), "one row per packed sequence"
    assert "attention_mask" not in batch
    assert (batch["labels"][1, len(c):] == -100).all() and batch["labels"][0, len(a)] == -100
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False).logits
        alone = [model(input_ids=torch.tensor([x]), use_cache=False).logits[0] for x in (a, b, c)]
    assert torch.allclose(packed[0, : len(a)], alone[0], atol=1e-5)
    assert torch.allclose(packed[0, len(a):], alone[1], atol=1e-5), "the second example must not see the first"
    assert torch.allclose(packed[1, : len(c)], alone[2], atol=1e-5), "real tokens never see the padding"
