"""Run llama.cpp's `convert_hf_to_gguf.py` in this (sub)process, with a pre-tokenizer override.

`python -m llmcourse.quantize.llamacpp.convert_entry CONVERTER_DIR PRE_TOKENIZER -- CONVERTER ARGS...`

The converter needs its own vendored gguf-py ahead of the PyPI `gguf`, so it runs in a subprocess
with that folder first on `sys.path`. llama.cpp names a BPE tokenizer's pre-tokenizer by hashing how
it encodes a fixed text; a tokenizer it has never seen raises "BPE pre-tokenizer was not
recognized". PRE_TOKENIZER (`-` for none) then answers that question: an explicit llama.cpp name, or
`auto`, which answers `gpt-2` for a byte-level BPE tokenizer that splits with the GPT-2 regex.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GPT2_PATTERN_MARKERS = ("'s|'t|'re|'ve|'m|'ll|'d", "?\\p{L}+")


def byte_level_gpt2(model_dir: Path) -> bool:
    """True if `tokenizer.json` pre-tokenizes like GPT-2 (byte-level with the GPT-2 regex)."""
    path = model_dir / "tokenizer.json"
    if not path.is_file():
        return False
    pre = json.loads(path.read_text(encoding="utf-8")).get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", [pre]) if pre.get("type") == "Sequence" else [pre]
    for step in steps:
        if step.get("type") == "ByteLevel" and step.get("use_regex", True):
            return True
        pattern = (step.get("pattern") or {}).get("Regex", "")
        if step.get("type") == "Split" and all(marker in pattern for marker in GPT2_PATTERN_MARKERS):
            return True
    return False


def install_override(pre_tokenizer: str, model_dir: Path) -> None:
    """Wrap the converter's pre-tokenizer lookup so an unrecognized tokenizer gets `pre_tokenizer`."""
    from conversion.base import TextModel

    original = TextModel.get_vocab_base_pre

    def lookup(self: object, tokenizer: object) -> str:
        if pre_tokenizer not in ("-", "auto"):
            return pre_tokenizer
        try:
            return original(self, tokenizer)
        except NotImplementedError:
            if pre_tokenizer == "auto" and byte_level_gpt2(model_dir):
                print("llmcourse: unrecognized byte-level BPE tokenizer with the GPT-2 regex → pre-tokenizer 'gpt-2'", file=sys.stderr)
                return "gpt-2"
            raise

    TextModel.get_vocab_base_pre = lookup


def main(argv: list[str]) -> None:
    """Put the converter on the path, install the override, run the converter's own main()."""
    converter, pre_tokenizer, separator, *args = argv
    assert separator == "--", "usage: convert_entry CONVERTER_DIR PRE_TOKENIZER -- ARGS..."
    sys.path[:0] = [str(Path(converter) / "gguf-py"), str(converter)]
    install_override(pre_tokenizer, Path(args[0]))
    import convert_hf_to_gguf

    sys.argv = ["convert_hf_to_gguf.py", *args]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(sys.argv[1:])
