"""A `.gguf` file as an lm-eval model, in process, through llama-cpp-python.

lm-eval's own `gguf` model talks to a running llama.cpp server and gets log-probabilities only for
the top candidates; this one holds the model and reads every logit, so log-likelihood, rolling
perplexity and greedy generation all work. Context/continuation splitting is lm-eval's own
(`TemplateLM._encode_pair`), so the token boundaries are the ones the HF back end scores.
Registered in lm-eval as `llmcourse-gguf` (`model_args: path=FILE.gguf`).
"""

from __future__ import annotations

from typing import Any

import lm_eval.models  # noqa: F401  (lm-eval's own models register first; registering ours alone would hide them)
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model

from llmcourse.core.chat_templates import END_OF_TURN_TOKENS
from llmcourse.core.measure import log_softmax


@register_model("llmcourse-gguf")
class GgufLM(TemplateLM):
    """llama.cpp model for lm-eval: greedy generation and exact log-likelihoods."""

    def __init__(self, path: str, n_ctx: int = 0, batch_size: int | str = 1, **_: Any) -> None:
        super().__init__()
        from llama_cpp import Llama

        self.path = path
        self.llm = Llama(model_path=path, n_ctx=n_ctx, n_batch=512, logits_all=True, verbose=False)
        self.template = self.llm.metadata.get("tokenizer.chat_template")
        self.stop_ids = {self.llm.token_eos()} | self._single_tokens(*END_OF_TURN_TOKENS)
        self.max_length = self.llm.n_ctx()

    def _single_tokens(self, *texts: str) -> set[int]:
        found = set()
        for text in texts:
            ids = self.llm.tokenize(text.encode(), add_bos=False, special=True)
            if len(ids) == 1:
                found.add(ids[0])
        return found

    @property
    def eot_token_id(self) -> int:
        """End of text: llama.cpp's EOS."""
        return self.llm.token_eos()

    @property
    def prefix_token_id(self) -> int:
        """What an empty context is conditioned on: BOS when the model has one, else EOS."""
        bos = self.llm.token_bos()
        return bos if bos >= 0 else self.eot_token_id

    @property
    def tokenizer_name(self) -> str:
        """Names the chat template in lm-eval's cache keys."""
        return self.path

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        """The chat template stored in the GGUF file."""
        return self.template if chat_template else None

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Render the conversation with the GGUF's own template (as `llmcourse generate` does)."""
        from llmcourse.generation.engines import render_chat

        return render_chat(self.template, chat_history, add_generation_prompt)

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **_: Any) -> list[int]:
        """Tokens of `string`, special tokens parsed (a chat-templated prompt holds them)."""
        return self.llm.tokenize(string.encode(), add_bos=bool(add_special_tokens), special=True)

    def _logits(self, tokens: list[int]) -> Any:
        import numpy as np

        self.llm.reset()
        self.llm.eval(tokens)
        return np.asarray(self.llm.scores[: len(tokens)], dtype=np.float64)

    def _loglikelihood_tokens(self, requests: list[tuple[tuple[str, str], list[int], list[int]]], **_: Any) -> list[tuple[float, bool]]:
        import numpy as np

        results = []
        for _, context, continuation in requests:
            tokens = (context + continuation)[-(self.max_length + 1):]
            logits = self._logits(tokens[:-1])[-len(continuation):]
            logp = log_softmax(logits)
            picked = logp[np.arange(len(continuation)), continuation]
            results.append((float(picked.sum()), bool((logits.argmax(axis=-1) == np.array(continuation)).all())))
        return results

    def loglikelihood_rolling(self, requests: list[Any], disable_tqdm: bool = False) -> list[float]:
        """Sum of log-probabilities of whole texts, in disjoint windows (lm-eval's windowing)."""
        from lm_eval.utils import get_rolling_token_windows, make_disjoint_window

        totals = []
        for (text,) in (request.args for request in requests):
            windows = [make_disjoint_window(w) for w in get_rolling_token_windows(
                self.tok_encode(text), self.prefix_token_id, self.max_length, context_len=1)]
            scored = self._loglikelihood_tokens([(("", ""), context, target) for context, target in windows])
            totals.append(sum(value for value, _ in scored))
        return totals

    def generate_until(self, requests: list[Any], disable_tqdm: bool = False) -> list[str]:
        """Greedy generation until a stop string, a stop token or `max_gen_toks`."""
        outputs = []
        for context, kwargs in (request.args for request in requests):
            until = [s for s in kwargs.get("until", []) if s]
            limit = int(kwargs.get("max_gen_toks", 256))
            tokens = self.tok_encode(context)[-(self.max_length - limit):]
            self.llm.reset()
            self.llm.eval(tokens)
            produced: list[int] = []
            text = ""
            for _ in range(limit):
                token = int(self.llm.scores[self.llm.n_tokens - 1].argmax())
                if token in self.stop_ids:
                    break
                produced.append(token)
                text = self.llm.detokenize(produced, special=False).decode("utf-8", errors="ignore")
                if any(stop in text for stop in until):
                    break
                self.llm.eval([token])
            for stop in until:
                text = text.split(stop)[0]
            outputs.append(text)
        return outputs
