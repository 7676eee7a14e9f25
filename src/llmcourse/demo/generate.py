"""The demo's last stage: the final model answers a held-out question greedily and with top-p,
decode speed of the transformers model against its Q4_K_M GGUF, and the beam-search tree picture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.libraries import installed, pip_line

SPEED_PROMPT_TOKENS = 16
SPEED_NEW_TOKENS = 48


def generation_stage(final: Any, quants: list[Any]) -> dict[str, Any]:
    """Generate from the final model (and its Q4_K_M file when the GGUF stage ran); draw the beam tree
    (with the [plot] extra)."""
    from llmcourse.generation.engines import GgufEngine, HfEngine
    from llmcourse.generation.plots import decoding_pictures
    from llmcourse.generation.strategies import DecodeOptions, get_strategy
    from llmcourse.lab import skills
    from llmcourse.quantize.report import GgufScorer, HfScorer

    row = skills.mixed(["sentiment"], "heldout", 1)[0]  # a skill the final model was taught
    engine = HfEngine(final.path)
    ids = engine.prompt_ids(row.question)
    options = DecodeOptions(max_new_tokens=24, temperature=0.8, top_p=0.9)
    greedy = engine.generate(ids, get_strategy("greedy"), options)
    nucleus = engine.generate(ids, get_strategy("top-p"), options, seed=0)
    drawn = installed("matplotlib")
    pictures = decoding_pictures(engine, ids, 4, Path(final.path).parent / "demo-beam-tree.png") if drawn else {}
    speed_prompt = engine.tokenizer("the lab model reads and writes short plain texts")["input_ids"][:SPEED_PROMPT_TOKENS]
    result: dict[str, Any] = {
        "question": row.question, "expected": row.answer, "greedy": greedy.text, "top_p": nucleus.text,
        "hf_decode_tok_s": round(HfScorer(final.path).decode_speed(speed_prompt, SPEED_NEW_TOKENS), 1), **pictures,
    }
    q4 = next((stage for stage in quants if "Q4_K_M" in stage.stage), None)
    if q4 is not None:
        gguf = GgufEngine(q4.path)
        result["gguf_greedy"] = gguf.generate(gguf.prompt_ids(row.question), get_strategy("greedy"), options).text
        gguf.llm.close()
        scorer = GgufScorer(q4.path, 64)
        result["gguf_decode_tok_s"] = round(scorer.decode_speed(speed_prompt, SPEED_NEW_TOKENS), 1)
        scorer.close()
    return result


def print_generation(result: dict[str, Any]) -> None:
    """What the generation stage saw, in a few lines."""
    err.print(f"generate (final model): {result['question']!r} → greedy {result['greedy']!r}, top-p {result['top_p']!r}"
              + (f", Q4_K_M greedy {result['gguf_greedy']!r}" if "gguf_greedy" in result else "")
              + f" (expected {result['expected']!r})")
    speed = f"decode: transformers {result['hf_decode_tok_s']:.0f} tok/s"
    if "gguf_decode_tok_s" in result:
        ratio = result["gguf_decode_tok_s"] / max(result["hf_decode_tok_s"], 1e-9)
        speed += f", llama.cpp Q4_K_M {result['gguf_decode_tok_s']:.0f} tok/s (×{ratio:.1f})"
    tree = result.get("beam_tree") or f"not drawn ({pip_line('plot', markup=True)})"
    err.print(f"{speed}; beam-search tree: {tree}")
