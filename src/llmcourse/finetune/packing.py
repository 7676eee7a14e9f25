"""Packed batches that keep one row per packed sequence, for attention without varlen kernels.

TRL's padding-free collator flattens a whole batch of packed sequences into ONE row, which suits
flash-attention's varlen kernels. With PyTorch SDPA (CPUs, GPUs without flash-attn) that row gets a
dense block-diagonal mask: attention over batch × max_length squared positions. Keeping each packed
sequence in its own row (right-padded, position_ids restarting at every example, no attention
mask) gives transformers the same packed-sequence masks at 1/batch of the attention cost.

TRL accepts a collator of our own only without its packing switched on, so we pack the rows
ourselves and hand the trainer packed rows (TRL's column names: `input_ids`, `labels`,
`seq_lengths`) and this collator. Not with TRL's `pack_dataset`: its best-fit-decreasing sorts the
examples by length, so a packed row holds examples of one length, which in a chat dataset often
means one task, and every optimizer step sees a few tasks instead of a sample of all. On the lab
(3000 chats of five skills, 4 rows of 256 tokens per step, one epoch) that left the held-out loss at
0.172 against 0.104 packing in order (benchmarks/README.md). Packing in order keeps the shuffle,
as Axolotl's multipack sampler (first fit in the sampler's order) and torchtune's greedy packing
do: each example goes to the first of a few open rows it fits, and rows fill as well.
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


def pack_rows(rows: list[dict[str, Any]], max_length: int, shuffle_seed: int | None = None, open_rows: int = 8,
              max_examples: int = 200) -> Any:
    """Tokenized rows (`input_ids`, `assistant_masks`) as a Dataset of packed rows of at most
    `max_length` tokens and `max_examples` examples, with labels (-100 outside the assistant turns)
    and the `seq_lengths` the collator turns into position ids. Shuffled first when given a seed,
    then packed in that order: each example goes to the first of `open_rows` rows with room for it
    (an example longer than `max_length` is truncated); a row is closed when an example opens a row
    beyond those. `open_rows=1` is next-fit, Axolotl's `sample_packing_sequentially`."""
    import random

    from datasets import Dataset

    order = list(range(len(rows)))
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(order)
    open_now: list[dict[str, list[int]]] = []
    closed: list[dict[str, list[int]]] = []
    for index in order:
        ids = rows[index]["input_ids"][:max_length]
        labels = [token if keep else -100 for token, keep in zip(ids, rows[index]["assistant_masks"])]
        target = next((row for row in open_now
                       if len(row["input_ids"]) + len(ids) <= max_length and len(row["seq_lengths"]) < max_examples), None)
        if target is None:
            target = {"input_ids": [], "labels": [], "seq_lengths": []}
            open_now.append(target)
            if len(open_now) > open_rows:
                closed.append(open_now.pop(0))
        target["input_ids"] += ids
        target["labels"] += labels
        target["seq_lengths"].append(len(ids))
    return Dataset.from_list(closed + open_now)
