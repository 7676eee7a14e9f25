"""A byte-level BPE tokenizer with the GPT-2 pre-tokenizer regex, trained locally.

Chosen because llama.cpp converts it (pre-tokenizer `gpt-2`) and then tokenizes exactly as
transformers does; byte-level means every string round-trips, whatever its characters.
"""

from __future__ import annotations

from typing import Iterable

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, *CHAT_TOKENS]


def train_tokenizer(texts: Iterable[str], vocab_size: int, model_max_length: int = 2048):
    """Train a byte-level BPE on `texts` and wrap it as a transformers fast tokenizer.

    The result is deterministic for the same texts and vocabulary size.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=CHAT_TOKENS,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
