"""Speculative decoding: tokens/s with and without it, on the same prompts, same model, one run.

The model is the lab SFT model (or MODEL); the draft is the lab base (or --draft), which shares its
tokenizer. Prompt lookup (no draft model) is measured too. Every speculative answer is checked to
be token-for-token the greedy answer; the ratio is printed honestly, even below 1 (a 2.6 M-parameter
model on a CPU has little to gain: the draft costs almost as much as the model).

    python benchmarks/speculative.py [MODEL] [--draft DRAFT] [--tokens 48] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", help="HF model (default: the demo's SFT model)")
    parser.add_argument("--draft", help="draft model sharing the tokenizer (default: the lab base)")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    from llmcourse.core.cache import llmcourse_home
    from llmcourse.generation.engines import HfEngine
    from llmcourse.generation.strategies import DecodeOptions, get_strategy
    from llmcourse.lab import corpus

    lab = llmcourse_home() / "lab"
    model = args.model or str(sorted(lab.glob("sft-*"), key=os.path.getmtime)[-1])
    draft = args.draft or str(sorted(lab.glob("base-*"), key=os.path.getmtime)[-1])
    engine = HfEngine(model, draft_model=draft)
    prompts = [engine.prompt_ids(doc[:120], raw=True) for doc in corpus.documents("heldout", 8)]
    options = DecodeOptions(max_new_tokens=args.tokens, prompt_lookup_tokens=3)
    rows = {}
    for label, use_draft in (("greedy", False), ("speculative (draft model)", True), ("speculative (prompt lookup)", False)):
        saved = engine.draft
        engine.draft = saved if use_draft else None
        strategy = get_strategy("greedy" if label == "greedy" else "speculative")
        engine.generate(prompts[0], strategy, options)  # warm-up
        started, tokens, outputs = time.perf_counter(), 0, []
        for ids in prompts:
            result = engine.generate(ids, strategy, options)
            tokens += len(result.token_ids)
            outputs.append(result.token_ids)
        rows[label] = {"tokens_per_second": tokens / (time.perf_counter() - started), "outputs": outputs}
        engine.draft = saved
    greedy = rows["greedy"]
    report = {"model": model, "draft": draft, "prompts": len(prompts), "max_new_tokens": args.tokens}
    for label, row in rows.items():
        same = row["outputs"] == greedy["outputs"]
        ratio = row["tokens_per_second"] / greedy["tokens_per_second"]
        report[label] = {"tokens_per_second": round(row["tokens_per_second"], 1), "ratio_vs_greedy": round(ratio, 3), "same_as_greedy": same}
        print(f"{label:28s} {row['tokens_per_second']:8.1f} tok/s   ×{ratio:.2f} vs greedy   same output: {same}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as handle:
            json.dump(report, handle, indent=2)


if __name__ == "__main__":
    main()
