"""The two hooks transformers' `generate` offers for decoding several requests in one call: a
stopping criterion that ends each row at its own token limit, and a streamer that turns each
step's tokens into every row's new text."""

from __future__ import annotations

from typing import Any, Callable

from transformers import StoppingCriteria
from transformers.generation.streamers import BaseStreamer


class RowLimits(StoppingCriteria):
    """Row i is done once it has `limits[i]` new tokens (prompts are left-padded to `prompt_width`)."""

    def __init__(self, prompt_width: int, limits: list[int]) -> None:
        self.prompt_width = prompt_width
        self.limits = limits

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        """One flag per row: True where that row has reached its limit."""
        import torch

        produced = input_ids.shape[1] - self.prompt_width
        return torch.tensor([produced >= limit for limit in self.limits], device=input_ids.device)


class RowStreamer(BaseStreamer):
    """Calls `on_text(row, piece)` with each row's new text, until that row's end-of-turn token or
    limit. Text is decoded from the row's whole answer so far, and a piece that would end inside a
    multi-byte character waits for the next token."""

    def __init__(self, tokenizer: Any, stop_ids: list[int], limits: list[int], on_text: Callable[[int, str], None]) -> None:
        self.tokenizer = tokenizer
        self.stop_ids = set(stop_ids)
        self.limits = limits
        self.on_text = on_text
        self.tokens: list[list[int]] = [[] for _ in limits]
        self.shown = [""] * len(limits)
        self.open = [True] * len(limits)
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        """Receive one decoding step's tokens (the first call is the prompt, skipped)."""
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(len(self.limits), -1)[:, -1].tolist()):
            if not self.open[row]:
                continue
            if token in self.stop_ids:
                self.open[row] = False
                continue
            self.tokens[row].append(token)
            self.open[row] = len(self.tokens[row]) < self.limits[row]
            text = self.tokenizer.decode(self.tokens[row], skip_special_tokens=True)
            if len(text) > len(self.shown[row]) and not text.endswith("\ufffd"):
                self.on_text(row, text[len(self.shown[row]):])
                self.shown[row] = text

    def end(self) -> None:
        """Nothing is held back: the caller sends each row's remainder from the final decode."""
