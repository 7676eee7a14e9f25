"""Tiny random models of the families users bring (Llama, Mistral, Qwen, Gemma, Phi...), with real tokenizers.

No hub is reachable offline, but llama.cpp's source archive (the one the GGUF engine is built
from) ships vocabulary-only GGUF files of real tokenizers, and transformers rebuilds a tokenizer
from them. Each family here pairs its own architecture (a few layers, hidden size 64) with its
own tokenizer where llama.cpp ships it, or a stand-in of the same kind where it does not
(`stand_in` says which): enough to run a family's real code paths — its attention, its norms,
its vocabulary size, its special tokens — in seconds.
"""

from __future__ import annotations

import glob
import os
import shutil
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmcourse.core.errors import UserError

SDIST_ENV = "LLMCOURSE_LLAMA_CPP_SDIST"
SDIST_GLOB = "~/.cache/llmcourse/build/llama-cpp-python-*/llama_cpp_python-*.tar.gz"
TINY = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 1024}


@dataclass(frozen=True)
class Family:
    """A model family: its transformers config class, llama.cpp vocabulary, and what stands in."""

    name: str
    config_class: str
    vocab: str
    extra: dict[str, Any] = field(default_factory=dict)
    stand_in: str = ""  # why the tokenizer is not the family's own, when it is not


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("llama2", "LlamaConfig", "llama-spm"),
    Family("llama3", "LlamaConfig", "llama-bpe", {"tie_word_embeddings": True}),
    Family("mistral", "MistralConfig", "llama-spm"),
    Family("mixtral", "MixtralConfig", "llama-spm", {"num_local_experts": 2, "num_experts_per_tok": 1}),
    Family("qwen2", "Qwen2Config", "qwen2", {"tie_word_embeddings": True}),
    Family("qwen3", "Qwen3Config", "qwen2", {"tie_word_embeddings": True}),
    Family("gemma2", "Gemma2Config", "llama-spm", {"tie_word_embeddings": True},
           stand_in="Gemma's 256k SentencePiece vocabulary is not in llama.cpp's archive; Llama 2's is"),
    Family("gemma3", "Gemma3TextConfig", "llama-spm", {"tie_word_embeddings": True},
           stand_in="Gemma's 256k SentencePiece vocabulary is not in llama.cpp's archive; Llama 2's is"),
    Family("phi3", "Phi3Config", "phi-3", {"pad_token_id": 32000}),
    Family("olmo2", "Olmo2Config", "gpt-2", stand_in="OLMo's GPT-NeoX-style vocabulary does not load in transformers from GGUF; GPT-2's does"),
    Family("granite", "GraniteConfig", "starcoder", {"tie_word_embeddings": True}),
    Family("smollm", "LlamaConfig", "starcoder", {"tie_word_embeddings": True},
           stand_in="SmolLM's own 49k BPE vocabulary is not in the archive; StarCoder's, of the same size and kind, is"),
)}


def llama_cpp_sdist() -> Path:
    """The llama-cpp-python source archive: $LLMCOURSE_LLAMA_CPP_SDIST, or the one `make` downloaded."""
    if os.environ.get(SDIST_ENV):
        return Path(os.environ[SDIST_ENV])
    found = sorted(glob.glob(os.path.expanduser(SDIST_GLOB)))
    if not found:
        raise UserError("llama.cpp's source archive (with its tokenizer vocabularies) is not on this machine",
                        hint=f"pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 -d DIR, then set {SDIST_ENV}")
    return Path(found[-1])


def vocab_file(vocab: str, dest: Path) -> Path:
    """`ggml-vocab-VOCAB.gguf` taken out of the source archive into `dest` (once)."""
    target = dest / f"ggml-vocab-{vocab}.gguf"
    if target.is_file():
        return target
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(llama_cpp_sdist()) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith(f"/vendor/llama.cpp/models/{target.name}")), None)
        if member is None:
            raise UserError(f"{target.name} is not in {llama_cpp_sdist()}")
        source = tar.extractfile(member)
        partial = target.with_suffix(".partial")
        with open(partial, "wb") as out:
            shutil.copyfileobj(source, out)
        partial.rename(target)
    return target


def official_template(vocab: str) -> str | None:
    """The chat template stored in llama.cpp's vocabulary file (phi-3, qwen2, command-r carry one)."""
    import gguf

    from llmcourse.lab.cache import cache_folder

    reader = gguf.GGUFReader(vocab_file(vocab, cache_folder("vocab", vocab)))
    entry = reader.fields.get("tokenizer.chat_template")
    return bytes(entry.parts[entry.data[0]]).decode() if entry else None


def tokenizer_folder(vocab: str) -> Path:
    """A transformers tokenizer folder rebuilt from llama.cpp's `vocab` (cached in the lab)."""
    from llmcourse.lab.cache import cache_folder

    folder = cache_folder("tokenizer", vocab)
    if (folder / "tokenizer_config.json").is_file():
        return folder
    from transformers import AutoTokenizer

    gguf_path = vocab_file(vocab, cache_folder("vocab", vocab))
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder


def build_family_model(name: str, seed: int = 0) -> Path:
    """A tiny random model of family `name` with its tokenizer, as a Hugging Face folder (cached)."""
    if name not in FAMILIES:
        raise UserError(f"unknown family '{name}'", hint=f"one of: {', '.join(FAMILIES)}")
    from llmcourse.lab.cache import cache_folder

    family = FAMILIES[name]
    folder = cache_folder(f"family-{name}", family.config_class, family.vocab, family.extra, TINY, seed)
    if (folder / "config.json").is_file():
        return folder
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder(family.vocab))
    special = {k: getattr(tokenizer, f"{k}_id") for k in ("bos_token", "eos_token") if getattr(tokenizer, f"{k}_id") is not None}
    config = getattr(transformers, family.config_class)(vocab_size=len(tokenizer), **{f"{k}_id": v for k, v in special.items()},
                                                       **TINY, **family.extra)
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    model.save_pretrained(partial)
    tokenizer.save_pretrained(partial)
    partial.rename(folder)
    return folder
