"""One interface over the two runtimes a user's model can need: transformers (HF folders, hub ids,
LoRA adapters) and llama.cpp (`.gguf` files). Both build the prompt with the model's chat template
(unless raw), decode with a registered strategy, and report the sequence's log-probability under
the model's own distribution, so strategies can be compared on one scale."""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from llmcourse.core.chat_templates import END_OF_TURN_TOKENS, end_of_turn_ids
from llmcourse.core.errors import UserError
from llmcourse.core.measure import log_softmax
from llmcourse.generation.strategies import DecodeOptions, Strategy



@dataclass
class Generation:
    """One decoded answer and what it cost."""

    strategy: str
    text: str
    token_ids: list[int]
    prompt_tokens: int
    seq_logprob: float
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of wall time."""
        return len(self.token_ids) / max(self.seconds, 1e-9)


@dataclass
class BatchRow:
    """One row of a batched decode: its tokens (end-of-turn excluded), text, and why it ended."""

    token_ids: list[int]
    text: str
    finish_reason: str  # "stop" (end of turn) or "length" (its token limit)


def split_at_stop(tokens: list[int], stop_ids: list[int]) -> tuple[list[int], list[int]]:
    """(the answer before the first stop token, the answer with that stop token): the end of a
    sequence is part of its probability, not of its text."""
    for index, token in enumerate(tokens):
        if token in stop_ids:
            return tokens[:index], tokens[: index + 1]
    return tokens, tokens


def messages_for(prompt: str, system: str | None) -> list[dict[str, str]]:
    """A one-turn conversation, with an optional system message."""
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]


def render_chat(template: str, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
    """A conversation rendered with a GGUF file's Jinja chat template (sandboxed, as transformers does)."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    return ImmutableSandboxedEnvironment().from_string(template).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token="", eos_token="")


def open_engine(model: str, allow_pickle: bool = False, draft_model: str | None = None) -> "HfEngine | GgufEngine":
    """The engine that runs `model`: llama.cpp for a `.gguf` file, transformers for everything else."""
    if model.endswith(".gguf"):
        if not Path(model).is_file():
            raise UserError(f"GGUF file not found: {model}")
        return GgufEngine(model)
    return HfEngine(model, allow_pickle=allow_pickle, draft_model=draft_model)


class HfEngine:
    """transformers: an HF folder, a hub id, or a LoRA adapter folder (loaded on its base)."""

    def __init__(self, model: str, allow_pickle: bool = False, draft_model: str | None = None) -> None:
        from llmcourse.core.modelio import is_adapter_folder
        from llmcourse.core.modelio import load_causal_lm
        from llmcourse.core.libraries import quiet_libraries

        quiet_libraries(with_datasets=False)
        if Path(model).is_dir() and is_adapter_folder(model):
            from llmcourse.core.modelio import merge_adapter

            self.model, self.tokenizer, _ = merge_adapter(model, None, allow_pickle)
            self.model.eval()
        else:
            self.model, self.tokenizer = load_causal_lm(model, allow_pickle=allow_pickle)
        self.name = model
        self.draft = load_causal_lm(draft_model, allow_pickle=allow_pickle)[0] if draft_model else None
        self.stop_ids = end_of_turn_ids(self.tokenizer)
        self.context_length: int | None = getattr(self.model.config, "max_position_embeddings", None)
        self.pad_id: int | None = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id

    def prompt_ids(self, prompt: str, raw: bool = False, system: str | None = None, history: list[dict[str, str]] | None = None) -> list[int]:
        """Token ids of the prompt: through the chat template when the model has one and not `raw`."""
        if raw or not getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer(prompt)["input_ids"]
        conversation = (history or []) + messages_for(prompt, system if not history else None)
        text = self.tokenizer.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _kwargs(self, strategy: Strategy, options: DecodeOptions) -> dict[str, Any]:
        kwargs = strategy.hf(options)
        if strategy.name == "speculative" and self.draft is not None:
            kwargs["assistant_model"] = self.draft
        return {**kwargs, "max_new_tokens": options.max_new_tokens, "pad_token_id": self.pad_id, "eos_token_id": self.stop_ids}

    def generate(self, ids: list[int], strategy: Strategy, options: DecodeOptions, seed: int = 0) -> Generation:
        """Decode with `strategy`; seeded, so sampling strategies repeat."""
        import torch

        torch.manual_seed(seed)
        inputs = torch.tensor([ids], device=self.model.device)
        started = time.perf_counter()
        try:
            with torch.no_grad():
                out = self.model.generate(input_ids=inputs, attention_mask=torch.ones_like(inputs), **self._kwargs(strategy, options))
        except (OSError, ValueError) as exc:
            if strategy.name == "contrastive":
                raise UserError(f"contrastive search: {str(exc).splitlines()[0]}",
                                hint="transformers 5 runs it from the hub repo transformers-community/contrastive-search (network needed)") from exc
            raise
        seconds = time.perf_counter() - started
        new, scored = split_at_stop(out[0, len(ids):].tolist(), self.stop_ids)
        text = self.tokenizer.decode(new, skip_special_tokens=True)
        return Generation(strategy.name, text, new, len(ids), self.sequence_logprob(ids, scored), seconds)

    def generate_batch(self, prompts: list[list[int]], strategy: Strategy, options: DecodeOptions, limits: list[int],
                       seed: int | None = None, on_text: Callable[[int, str], None] | None = None) -> list[BatchRow]:
        """Decode several prompts in one left-padded `generate` call, row i stopping at its end-of-turn
        token or after `limits[i]` tokens; `on_text(i, piece)` receives each row's text as it grows.
        Greedy rows are the answers `generate` gives one at a time; sampled rows draw from the shared
        generator, seeded once per batch when `seed` is given."""
        import torch

        from llmcourse.generation.batched import RowLimits, RowStreamer

        if seed is not None:
            torch.manual_seed(seed)
        width = max(len(ids) for ids in prompts)
        kwargs = self._kwargs(strategy, replace(options, max_new_tokens=max(limits)))
        inputs = torch.tensor([[self.pad_id] * (width - len(ids)) + ids for ids in prompts], device=self.model.device)
        mask = torch.tensor([[0] * (width - len(ids)) + [1] * len(ids) for ids in prompts], device=self.model.device)
        streamer = RowStreamer(self.tokenizer, self.stop_ids, limits, on_text) if on_text else None
        with torch.no_grad():
            out = self.model.generate(input_ids=inputs, attention_mask=mask, stopping_criteria=[RowLimits(width, limits)],
                                      streamer=streamer, **kwargs)
        rows = []
        for index, limit in enumerate(limits):
            produced = out[index, width:].tolist()
            new, _ = split_at_stop(produced, self.stop_ids)
            stopped = len(new) < len(produced) and len(new) < limit
            new = new[:limit]
            rows.append(BatchRow(new, self.tokenizer.decode(new, skip_special_tokens=True), "stop" if stopped else "length"))
        return rows

    def sequence_logprob(self, ids: list[int], new: list[int]) -> float:
        """Sum of log p(token | prefix) of the generated tokens under the model's own distribution."""
        import torch

        if not new:
            return 0.0
        with torch.no_grad():
            logits = self.model(input_ids=torch.tensor([ids + new], device=self.model.device)).logits[0].float()
        logp = torch.log_softmax(logits[len(ids) - 1 : -1], dim=-1)
        return float(logp[torch.arange(len(new)), torch.tensor(new)].sum())

    def stream(self, ids: list[int], strategy: Strategy, options: DecodeOptions, seed: int = 0) -> Iterator[str]:
        """Yield text pieces as they are generated (a background thread runs `generate`)."""
        import threading

        import torch
        from transformers import TextIteratorStreamer

        torch.manual_seed(seed)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        inputs = torch.tensor([ids], device=self.model.device)
        kwargs = {**self._kwargs(strategy, options), "input_ids": inputs, "attention_mask": torch.ones_like(inputs), "streamer": streamer}
        worker = threading.Thread(target=self.model.generate, kwargs=kwargs, daemon=True)
        worker.start()
        yield from streamer
        worker.join()


class GgufEngine:
    """llama.cpp through llama-cpp-python: the same strategies where llama.cpp has them."""

    def __init__(self, path: str, n_ctx: int = 0) -> None:  # 0: the context length the model was trained with
        from llama_cpp import Llama

        self.path = path
        self.name = path
        self.llm = Llama(model_path=path, n_ctx=n_ctx, verbose=False)
        stops = {self.llm.token_eos()}
        for token in END_OF_TURN_TOKENS:
            ids = self.llm.tokenize(token.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                stops.add(ids[0])
        self.stop_ids = sorted(stops)
        self.chat_template = self.llm.metadata.get("tokenizer.chat_template")

    def prompt_ids(self, prompt: str, raw: bool = False, system: str | None = None, history: list[dict[str, str]] | None = None) -> list[int]:
        """Token ids of the prompt, through the GGUF's own chat template unless `raw`."""
        if raw or not self.chat_template:
            return self.llm.tokenize(prompt.encode(), add_bos=True, special=False)
        conversation = (history or []) + messages_for(prompt, system if not history else None)
        text = render_chat(self.chat_template, conversation)
        return self.llm.tokenize(text.encode(), add_bos=False, special=True)

    def _tokens(self, ids: list[int], strategy: Strategy, options: DecodeOptions, seed: int, ended: list[int]) -> Iterator[int]:
        """Token ids as llama.cpp samples them; a stop token is put in `ended` instead."""
        if strategy.gguf is None:
            raise UserError(f"'{strategy.name}' is not available for GGUF models in llama.cpp",
                            hint="use greedy, top-k, top-p, min-p, temperature or speculative, or the HF folder")
        llm = self._speculative(options) if strategy.name == "speculative" else self.llm
        sampling = strategy.gguf(options)
        llm.set_seed(seed)
        count = 0
        for token in llm.generate(ids, top_k=sampling["top_k"], top_p=sampling.get("top_p", 1.0), min_p=sampling.get("min_p", 0.0),
                                  temp=sampling["temperature"], repeat_penalty=1.0, reset=True):
            if count >= options.max_new_tokens:
                return
            if token in self.stop_ids:
                ended.append(token)
                return
            count += 1
            yield token

    def generate(self, ids: list[int], strategy: Strategy, options: DecodeOptions, seed: int = 0) -> Generation:
        """Decode with llama.cpp's sampler (or prompt-lookup drafting for `speculative`)."""
        ended: list[int] = []
        started = time.perf_counter()
        new = list(self._tokens(ids, strategy, options, seed, ended))
        seconds = time.perf_counter() - started
        text = self.llm.detokenize(new).decode("utf-8", errors="replace")
        return Generation(strategy.name, text, new, len(ids), self.sequence_logprob(ids, new + ended), seconds)

    def _speculative(self, options: DecodeOptions) -> Any:
        from llama_cpp import Llama
        from llama_cpp.llama_speculative import LlamaPromptLookupDecoding

        if options.draft_model:
            raise UserError("--draft-model is for HF models; llama.cpp here drafts by prompt lookup", hint="drop --draft-model")
        return Llama(model_path=self.path, n_ctx=self.llm.n_ctx(), verbose=False,
                     draft_model=LlamaPromptLookupDecoding(num_pred_tokens=options.prompt_lookup_tokens))

    def sequence_logprob(self, ids: list[int], new: list[int]) -> float:
        """Sum of log p(token | prefix) of the generated tokens, from llama.cpp's logits."""
        import llama_cpp
        import numpy as np

        if not new:
            return 0.0
        total = 0.0
        self.llm.reset()
        self.llm.eval(ids)
        for token in new:
            last = llama_cpp.llama_get_logits_ith(self.llm.ctx, -1)  # the C API on the public context handle
            logits = np.ctypeslib.as_array(last, shape=(self.llm.n_vocab(),)).astype(np.float64)
            total += float(log_softmax(logits)[token])
            self.llm.eval([token])
        return total

    def stream(self, ids: list[int], strategy: Strategy, options: DecodeOptions, seed: int = 0) -> Iterator[str]:
        """Yield text pieces as llama.cpp produces tokens (whole characters only)."""
        tokens: list[int] = []
        shown = ""
        for token in self._tokens(ids, strategy, options, seed, []):
            tokens.append(token)
            text = self.llm.detokenize(tokens).decode("utf-8", errors="ignore")
            if len(text) > len(shown):
                yield text[len(shown):]
                shown = text
