"""Packed rows (what `sample_packing: true` trains on without flash-attention): every example kept whole, none attending to another."""

from __future__ import annotations

import torch

from llmcourse.lab.model import init_model, llama_config


def test_pack_rows_keeps_every_example_whole_with_its_loss_mask() -> None:
    from llmcourse.finetune.packing import pack_rows

    rows = [{"input_ids": list(range(10 * i, 10 * i + n)), "assistant_masks": [0] * (n // 2) + [1] * (n - n // 2)}
            for i, n in enumerate([7, 12, 5, 9, 16, 3, 11])]
    packed = pack_rows(rows, max_length=20)
    assert all(sum(row["seq_lengths"]) == len(row["input_ids"]) <= 20 for row in packed)
    assert len(packed) < len(rows), "short examples share a row"
    pieces = []
    for row in packed:
        offset = 0
        for length in row["seq_lengths"]:
            pieces.append((row["input_ids"][offset:offset + length], row["labels"][offset:offset + length]))
            offset += length
    expected = [(r["input_ids"], [t if m else -100 for t, m in zip(r["input_ids"], r["assistant_masks"])]) for r in rows]
    assert sorted(pieces) == sorted(expected), "every example once, whole, loss only on its assistant tokens"


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


def test_packed_rows_keep_the_shuffled_mix_of_examples() -> None:
    # Best-fit-decreasing sorts by length: a row of one length is, in a chat dataset, often one task,
    # and an optimizer step then sees a few tasks instead of a sample of all (benchmarks/README.md).
    from llmcourse.finetune.packing import pack_rows

    short, long = [1] * 5, [2] * 9  # two "tasks" told apart by their length, interleaved as a shuffle leaves them
    rows = [{"input_ids": ids, "assistant_masks": [1] * len(ids)} for _ in range(20) for ids in (short, long)]
    packed = pack_rows(rows, max_length=28)
    mixed = [len(set(row["seq_lengths"])) == 2 for row in packed]
    assert sum(mixed) >= len(packed) - 1, [row["seq_lengths"] for row in packed]
    assert sum(len(row["input_ids"]) for row in packed) / (28 * len(packed)) > 0.85, "rows still fill up"


def test_sequential_packing_keeps_the_order_and_a_row_holds_at_most_bin_size_examples() -> None:
    # Axolotl's sample_packing_sequentially (next-fit) and sample_packing_bin_size, through the recipe.
    from llmcourse.finetune.packing import pack_rows
    from llmcourse.recipes.registry import load_command_recipe

    recipe = load_command_recipe("sft", "lab/sft", ["sample_packing_sequentially=true", "sample_packing_bin_size=3"], None)
    assert recipe.sample_packing_sequentially and recipe.sample_packing_bin_size == 3
    rows = [{"input_ids": [i] * n, "assistant_masks": [1] * n} for i, n in enumerate([9, 2, 8, 3, 3, 1, 7, 2, 2, 2])]
    packed = pack_rows(rows, max_length=12, open_rows=1, max_examples=recipe.sample_packing_bin_size)
    assert [token for row in packed for token in row["input_ids"]] == [token for row in rows for token in row["input_ids"]]
    assert [row["seq_lengths"] for row in packed] == [[9, 2], [8, 3], [3, 1, 7], [2, 2, 2]]
