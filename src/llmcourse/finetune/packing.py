"""Packed batches that keep one row per packed sequence, for attention without varlen kernels.

TRL's padding-free collator flattens a whole batch of packed sequences into ONE row, which suits
flash-attention's varlen kernels. With PyTorch SDPA (CPUs, GPUs without flash-attn) that row gets a
dense block-diagonal mask: attention over batch × max_length squared positions. Keeping each packed
sequence in its own row (right-padded, position_ids restarting at every example, no attention
mask) gives transformers the same packed-sequence masks at 1/batch of the attention cost.

TRL accepts a collator of our own only without its packing switched on, so we pack the rows with its
public `pack_dataset` first, the way its own preparation does (labels from the assistant masks,
best-fit decreasing), and hand the trainer packed rows and this collator.
"""

from __future__ import annotations

from typing import Any


def row_packed_collator(pad_token_id: int, pad_to_multiple_of: int | None = None) -> Any:
    """A TRL `DataCollatorForLanguageModeling` that returns `[batch, max_len]` packed rows."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    class RowPackedCollator(DataCollatorForLanguageModeling):
        def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
            output = super().torch_call(examples)
            # transformers detects packed sequences from position_ids only when no 2D mask is given;
            # right padding has position 0 everywhere, so each pad is its own (never attended) sequence.
            output.pop("attention_mask", None)
            output["labels"][output["position_ids"] == 0] = -100  # never predict a new example's first token
            return output

    return RowPackedCollator(pad_token_id=pad_token_id, padding_free=False, return_position_ids=True,
                             pad_to_multiple_of=pad_to_multiple_of)


def pack_rows(rows: list[dict[str, Any]], max_length: int, shuffle_seed: int | None = None) -> Any:
    """Tokenized rows (`input_ids`, `assistant_masks`) as a Dataset of packed rows of at most
    `max_length` tokens (best-fit decreasing), with labels (-100 outside the assistant turns) and
    the `seq_lengths` the collator turns into position ids; shuffled first when given a seed."""
    from datasets import Dataset
    from trl import pack_dataset

    labelled = [{"input_ids": row["input_ids"],
                 "labels": [token if keep else -100 for token, keep in zip(row["input_ids"], row["assistant_masks"])]}
                for row in rows]
    dataset = Dataset.from_list(labelled)
    if shuffle_seed is not None:
        dataset = dataset.shuffle(seed=shuffle_seed)
    return pack_dataset(dataset, max_length, "bfd")
