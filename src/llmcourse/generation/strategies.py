"""Decoding strategies in a registry: each maps the user's options to transformers' `generate`
arguments and, where llama.cpp has the same thing, to llama-cpp-python's sampling arguments."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from llmcourse.core.errors import UserError, did_you_mean


@dataclass(frozen=True)
class DecodeOptions:
    """What the user can set; each strategy reads the fields it needs."""

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int = 50
    top_p: float = 0.9
    min_p: float = 0.1
    num_beams: int = 4
    length_penalty: float = 1.0
    penalty_alpha: float = 0.6
    prompt_lookup_tokens: int = 3
    draft_model: str | None = None


@dataclass(frozen=True)
class Strategy:
    """One decoding strategy: transformers arguments, and llama.cpp's where it has them."""

    name: str
    description: str
    hf: Callable[[DecodeOptions], dict[str, Any]]
    gguf: Callable[[DecodeOptions], dict[str, Any]] | None
    samples: bool


STRATEGIES: dict[str, Strategy] = {}


def register_strategy(name: str, description: str, samples: bool, gguf: Callable[[DecodeOptions], dict[str, Any]] | None = None) -> Callable:
    """Decorator: register the function that gives transformers' arguments for this strategy."""

    def add(hf: Callable[[DecodeOptions], dict[str, Any]]) -> Callable[[DecodeOptions], dict[str, Any]]:
        STRATEGIES[name] = Strategy(name, description, hf, gguf, samples)
        return hf

    return add


def get_strategy(name: str) -> Strategy:
    """The strategy called `name`; the error lists them all."""
    if name not in STRATEGIES:
        valid = sorted(STRATEGIES)
        raise UserError(f"unknown decoding strategy '{name}'{did_you_mean(name, valid)}", hint=f"strategies: {', '.join(valid)}")
    return STRATEGIES[name]


@register_strategy("greedy", "the most likely token at every step", samples=False,
                   gguf=lambda o: {"temperature": 0.0, "top_k": 1})
def _greedy(o: DecodeOptions) -> dict[str, Any]:
    return {"do_sample": False, "num_beams": 1}


@register_strategy("beam", "keep the num_beams best sequences by total log-probability", samples=False)
def _beam(o: DecodeOptions) -> dict[str, Any]:
    return {"do_sample": False, "num_beams": o.num_beams, "length_penalty": o.length_penalty, "early_stopping": True}


@register_strategy("top-k", "sample among the top_k most likely tokens", samples=True,
                   gguf=lambda o: {"temperature": o.temperature, "top_k": o.top_k, "top_p": 1.0, "min_p": 0.0})
def _top_k(o: DecodeOptions) -> dict[str, Any]:
    return {"do_sample": True, "top_k": o.top_k, "temperature": o.temperature, "top_p": 1.0}


@register_strategy("top-p", "nucleus sampling: the smallest set of tokens whose probability reaches top_p", samples=True,
                   gguf=lambda o: {"temperature": o.temperature, "top_k": 0, "top_p": o.top_p, "min_p": 0.0})
def _top_p(o: DecodeOptions) -> dict[str, Any]:
    return {"do_sample": True, "top_p": o.top_p, "top_k": 0, "temperature": o.temperature}


@register_strategy("min-p", "sample among tokens at least min_p times as likely as the best one", samples=True,
                   gguf=lambda o: {"temperature": o.temperature, "top_k": 0, "top_p": 1.0, "min_p": o.min_p})
def _min_p(o: DecodeOptions) -> dict[str, Any]:
    return {"do_sample": True, "min_p": o.min_p, "top_k": 0, "top_p": 1.0, "temperature": o.temperature}


@register_strategy("temperature", "sample from the whole distribution sharpened or flattened by temperature", samples=True,
                   gguf=lambda o: {"temperature": o.temperature, "top_k": 0, "top_p": 1.0, "min_p": 0.0})
def _temperature(o: DecodeOptions) -> dict[str, Any]:
    return {"do_sample": True, "temperature": o.temperature, "top_k": 0, "top_p": 1.0}


@register_strategy("contrastive", "top_k candidates scored by probability minus similarity to the context (penalty_alpha)",
                   samples=False)
def _contrastive(o: DecodeOptions) -> dict[str, Any]:
    # transformers 5 moved contrastive search to a hub repository of generation code.
    return {"do_sample": False, "penalty_alpha": o.penalty_alpha, "top_k": o.top_k,
            "custom_generate": "transformers-community/contrastive-search", "trust_remote_code": True}


@register_strategy("speculative", "a draft model (or prompt lookup) proposes tokens the model verifies: greedy output, faster",
                   samples=False, gguf=lambda o: {"temperature": 0.0, "top_k": 1})
def _speculative(o: DecodeOptions) -> dict[str, Any]:
    if o.draft_model:
        return {"do_sample": False}  # the draft model itself is passed by the engine as assistant_model
    return {"do_sample": False, "prompt_lookup_num_tokens": o.prompt_lookup_tokens}
