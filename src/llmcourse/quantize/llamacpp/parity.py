"""Tokenizer parity: does llama.cpp tokenize a converted GGUF exactly as transformers tokenizes the source?

A GGUF carries its own copy of the tokenizer, and the converter picks the pre-tokenizer (the regex
that splits text before BPE) by recognising the tokenizer. A wrong pick gives a model that loads
and runs but sees different tokens than it was trained on (early Llama 3 GGUFs did). The check
encodes the report's text and a set of tricky strings both ways and compares the ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TRICKY = (
    "Hello world", "  two  leading spaces", "trailing spaces   ", "tab\tand\nnew\n\nlines", "1234567890 3.14159 1,000,000 007",
    "café naïve résumé Ångström façade", "Grüße aus München", "emoji 🤗🚀👍🏽 and ❤️", "中文分词测试", "日本語のテキスト", "한국어 문장",
    "don't can't I'm we'll they've", "CamelCaseIdentifier snake_case_name kebab-case", "x = f(a, b) ** 2  # comment",
    "https://example.com/path?q=1&r=2", "¿Qué tal? ¡Muy bien!", "mixed 12ab34 cd56", "......!!!???", "a" * 40,
)


@dataclass
class Parity:
    """How many strings encode identically, out of how many, and the first that does not."""

    same: int
    total: int
    differing: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """The fraction of strings with identical ids (1.0 = parity)."""
        return self.same / self.total if self.total else 1.0


def check(model_dir: Path, gguf_file: Path, texts: list[str]) -> Parity:
    """Compare transformers' and llama.cpp's encodings of `texts` plus TRICKY (special tokens parsed)."""
    from llama_cpp import Llama
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    vocab = Llama(model_path=str(gguf_file), vocab_only=True, verbose=False)
    strings = [t for t in [*texts, *TRICKY] if t]
    differing = [s for s in strings if _ids(vocab, s) != tokenizer(s, add_special_tokens=False)["input_ids"]]
    return Parity(len(strings) - len(differing), len(strings), differing)


def _ids(vocab: Any, text: str) -> list[int]:
    return vocab.tokenize(text.encode("utf-8"), add_bos=False, special=True)


def texts_from_blocks(tokenizer: Any, blocks: Any, count: int = 8) -> list[str]:
    """Lines of the first `count` token blocks, decoded back to text (the report's own text)."""
    lines: list[str] = []
    for row in list(blocks)[:count]:
        lines += [line for line in tokenizer.decode(list(row), skip_special_tokens=True).splitlines() if line.strip()]
    return lines[:64]
