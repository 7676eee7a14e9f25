"""The quality report every quantize run ends with: each output measured against its source.

The source's next-token log-probabilities on held-out text are computed once and kept on disk (as
llama.cpp's `--kl-divergence-base` does); every output is then scored on the same token ids:
perplexity and its ratio to the source, mean KL(source ‖ quant), top-1 agreement, size, bits per
weight and greedy decode tokens/s. GGUF files run through llama.cpp, HF folders through transformers (GPTQ/AWQ with GPTQModel's kernels), HQQ folders
through hqq.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from llmcourse.core.measure import log_softmax, weights_mb
from llmcourse.quantize.base import QuantOutput

DECODE_PROMPT = 16
DECODE_TOKENS = 48


class HfScorer:
    """Logits and decode speed of a transformers model."""

    def __init__(self, path: str, model: Any = None) -> None:
        import torch

        from llmcourse.core.modelio import load_causal_lm

        self.model = model if model is not None else load_causal_lm(path, dtype=torch.float32, device="cpu")[0]

    def logits(self, block: list[int]) -> Any:
        """Logits for every position of one block."""
        import torch

        with torch.no_grad():
            return self.model(input_ids=torch.tensor([block])).logits[0].float().numpy()

    def decode_speed(self, prompt: list[int], count: int) -> float:
        """Greedy decode tokens/s for `count` new tokens (no early stop)."""
        import torch

        ids = torch.tensor([prompt])
        with torch.no_grad():
            self.model.generate(input_ids=ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)  # warm-up
            started = time.perf_counter()
            self.model.generate(input_ids=ids, max_new_tokens=count, min_new_tokens=count, do_sample=False)
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        """Free the model."""
        del self.model


class GgufScorer:
    """Logits and decode speed of a GGUF file through llama.cpp."""

    def __init__(self, path: str, context: int) -> None:
        from llama_cpp import Llama

        self.llm = Llama(model_path=path, n_ctx=max(context, DECODE_PROMPT + DECODE_TOKENS + 8), n_batch=context, n_ubatch=context,
                         logits_all=True, verbose=False, n_threads=os.cpu_count() or 1)

    def logits(self, block: list[int]) -> Any:
        """Logits for every position of one block."""
        import numpy as np

        self.llm.reset()
        self.llm.eval(block)
        return np.array(self.llm.scores[: len(block)], dtype=np.float32)

    def decode_speed(self, prompt: list[int], count: int) -> float:
        """Greedy decode tokens/s for `count` new tokens, one token per llama_decode (no early stop)."""
        self.llm.reset()
        self.llm.eval(prompt)
        started = time.perf_counter()
        for _ in range(count):
            token = int(self.llm.scores[self.llm.n_tokens - 1].argmax())
            self.llm.eval([token])
        return count / (time.perf_counter() - started)

    def close(self) -> None:
        """Free the model."""
        self.llm.close()


def scorer_for(output: QuantOutput, context: int) -> Any:
    """The scorer that loads `output` the way its users will: llama.cpp for GGUF, transformers otherwise."""
    if output.loader == "gguf":
        return GgufScorer(str(output.path), context)
    if output.loader == "hqq":
        from llmcourse.quantize.formats.hqq import load_quantized

        return HfScorer(str(output.path), load_quantized(output.path, device="cpu"))
    if output.loader == "gptq":
        from llmcourse.quantize.formats import gptq

        return HfScorer(str(output.path), gptq.load_quantized(output.path, device="cpu"))
    return HfScorer(str(output.path))


@dataclass
class Reference:
    """The source's log-probabilities on the eval blocks, on disk, and its own scores."""

    blocks: Any  # texts.TokenBlocks
    logprobs: Any  # memmap [n_blocks, block, vocab]
    row: dict[str, Any]


def scored_rows(logp: Any, block: list[int], scored: Any) -> tuple[Any, Any]:
    """The log-prob rows that predict a scored token, and those tokens."""
    import numpy as np

    keep = np.asarray(scored[1:], dtype=bool)
    return logp[:-1][keep], np.asarray(block[1:])[keep]


def nll_sum(rows: Any, targets: Any) -> float:
    """Sum of the negative log-likelihood of `targets` under `rows`."""
    import numpy as np

    return float(-rows[np.arange(len(targets)), targets].sum())


def build_reference(source_path: str, blocks: Any, workdir: Path, size_mb: float, parameters: int) -> Reference:
    """Score the source once and keep its log-probs for every output's KL divergence."""
    import numpy as np

    scorer = HfScorer(source_path)
    n, length = blocks.ids.shape
    store = None
    nll, count = 0.0, 0
    for index, block in enumerate(_lists(blocks.ids)):
        logp = log_softmax(scorer.logits(block))
        if store is None:
            store = np.lib.format.open_memmap(workdir / "source-logprobs.npy", mode="w+", dtype=np.float32, shape=(n, length, logp.shape[-1]))
        store[index] = logp
        rows, targets = scored_rows(logp, block, blocks.scored[index])
        nll, count = nll + nll_sum(rows, targets), count + len(targets)
    speed = scorer.decode_speed(blocks.ids[0, :DECODE_PROMPT].tolist(), DECODE_TOKENS)
    scorer.close()
    row = {"format": "source", "method": "-", "perplexity": math.exp(nll / count), "ppl_ratio": 1.0, "kl_divergence": 0.0,
           "top1_agreement": 1.0, "size_mb": size_mb, "bits_per_weight": _hf_bits(source_path, parameters), "tokens_per_second": speed}
    return Reference(blocks, store, row)


def measure(output: QuantOutput, reference: Reference, parameters: int) -> dict[str, Any]:
    """Score one output against the reference: perplexity, ratio, KL, top-1, size, bits/weight, tok/s."""
    import numpy as np

    blocks = reference.blocks
    scorer = scorer_for(output, blocks.ids.shape[1])
    nll, count, kl, agree = 0.0, 0, 0.0, 0
    for index, block in enumerate(_lists(blocks.ids)):
        logits = scorer.logits(block)
        vocab = min(reference.logprobs.shape[-1], logits.shape[-1])
        source, _ = scored_rows(np.asarray(reference.logprobs[index, :, :vocab], dtype=np.float64), block, blocks.scored[index])
        logp, targets = scored_rows(log_softmax(logits[:, :vocab]), block, blocks.scored[index])
        nll, count = nll + nll_sum(logp, targets), count + len(targets)
        kl += float((np.exp(source) * (source - logp)).sum())
        agree += int((source.argmax(-1) == logp.argmax(-1)).sum())
    speed = scorer.decode_speed(blocks.ids[0, :DECODE_PROMPT].tolist(), DECODE_TOKENS)
    scorer.close()
    perplexity = math.exp(nll / count)
    bits = output.notes.get("bits_per_weight") or (_gguf_bits(output.path) if output.loader == "gguf" else _hf_bits(str(output.path), parameters))
    return {"format": output.format, "method": output.method, "perplexity": perplexity,
            "ppl_ratio": perplexity / reference.row["perplexity"], "kl_divergence": kl / count, "top1_agreement": agree / count,
            "size_mb": weights_mb(output.path), "bits_per_weight": bits, "tokens_per_second": speed, "path": str(output.path)}


def _lists(blocks: Any) -> Iterator[list[int]]:
    for row in blocks:
        yield row.tolist()




def _gguf_bits(path: Path) -> float:
    from gguf import GGUFReader

    tensors = GGUFReader(str(path)).tensors
    return 8 * sum(int(t.n_bytes) for t in tensors) / max(sum(int(t.n_elements) for t in tensors), 1)


def _hf_bits(path: str, parameters: int) -> float:
    return 8 * weights_mb(Path(path)) * 1e6 / max(parameters, 1)


COLUMNS = (("format", "format", "{}"), ("method", "method", "{}"), ("perplexity", "ppl", "{:.4g}"), ("ppl_ratio", "ppl ratio", "{:.4f}"),
           ("kl_divergence", "KL", "{:.2e}"), ("top1_agreement", "top-1", "{:.1%}"), ("size_mb", "size MB", "{:.2f}"),
           ("bits_per_weight", "bits/w", "{:.2f}"), ("tokens_per_second", "tok/s", "{:.0f}"))


def format_cell(key: str, value: Any) -> str:
    """One table cell."""
    for name, _, pattern in COLUMNS:
        if name == key:
            return pattern.format(value) if value is not None else ""
    return str(value)


def print_table(rows: list[dict[str, Any]], title: str) -> None:
    """The comparison table on stderr (stdout stays free for --json)."""
    from rich.table import Table

    from llmcourse.core.console import err

    table = Table(title=title, header_style="bold")
    for key, label, _ in COLUMNS:
        table.add_column(label, justify="left" if key in ("format", "method") else "right")
    for row in rows:
        table.add_row(*[format_cell(key, row.get(key)) for key, _, _ in COLUMNS])
    err.print(table)


def markdown(rows: list[dict[str, Any]], title: str, eval_description: str) -> str:
    """The same table as markdown, for report.md and the card."""
    lines = [f"# {title}", "", eval_description, "", "| " + " | ".join(label for _, label, _ in COLUMNS) + " |",
             "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(format_cell(key, row.get(key)) for key, _, _ in COLUMNS) + " |" for row in rows]
    return "\n".join(lines) + "\n"
