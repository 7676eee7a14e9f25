"""The demo's quantization stage: the final lab model as Q8_0 and Q4_K_M GGUF files, each scored
through llama.cpp alone (its tokenizer, its greedy decoding) on the held-out lab skills."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from llmcourse.console import err
from llmcourse.lab import skills as lab_skills

DEMO_QUANTS = ("Q8_0", "Q4_K_M")


def gguf_exact_match(gguf_file: str, tokenizer: Any, count: int = 100, max_new_tokens: int = 8) -> dict[str, float]:
    """Held-out exact match per skill, greedy-decoded by llama.cpp from the ChatML prompt."""
    from llama_cpp import Llama

    from llmcourse.lab.scoring import build_prompt, clean_answer

    llm = Llama(model_path=gguf_file, n_ctx=256, n_batch=256, logits_all=True, verbose=False)
    stops = {llm.token_eos(), *llm.tokenize(b"<|im_end|>", add_bos=False, special=True)}
    scores: dict[str, float] = {}
    for name in lab_skills.SKILLS:
        rows = lab_skills.examples(name, "heldout", count)
        correct = 0
        for example in rows:
            prompt = build_prompt(tokenizer, example.question, "chat")
            llm.reset()
            llm.eval(llm.tokenize(prompt.encode(), add_bos=False, special=True))
            answer: list[int] = []
            for _ in range(max_new_tokens):
                token = int(llm.scores[llm.n_tokens - 1].argmax())
                if token in stops:
                    break
                answer.append(token)
                llm.eval([token])
            correct += clean_answer(llm.detokenize(answer).decode("utf-8", errors="replace")) == example.answer
        scores[f"exact_match/{name}"] = correct / len(rows)
    llm.close()
    scores["exact_match/mean"] = sum(scores.values()) / len(lab_skills.SKILLS)
    return scores


def quant_stages(final: Any, force: bool) -> list[Any]:
    """Quantize the final model to the demo's GGUF types (cached) and score each file."""
    from llmcourse.demo import StageResult

    if importlib.util.find_spec("llama_cpp") is None:
        err.print("[yellow]skipping the GGUF stage: llama-cpp-python is not installed[/] (make install builds it)")
        return []
    from llmcourse.cache import llmcourse_home
    from llmcourse.modelio import load_tokenizer
    from llmcourse.quantize.run import run
    from llmcourse.recipes.quantize import QuantizeRecipe

    digest = hashlib.sha256(f"{final.path}:{','.join(DEMO_QUANTS)}".encode()).hexdigest()[:10]
    parent = llmcourse_home() / "lab" / f"quant-{digest}"
    recipe = QuantizeRecipe(model=final.path, formats=["gguf"], gguf={"methods": list(DEMO_QUANTS)}, output_dir=str(parent))
    folder = parent / f"{Path(final.path).name}-GGUF"
    if not (folder / "report.json").exists() or force:
        run(recipe, overwrite=True)
    else:
        err.print(f"reusing the GGUF files in {folder}")
    rows = {row["method"]: row for row in json.loads((folder / "report.json").read_text(encoding="utf-8"))["rows"]}
    tokenizer = load_tokenizer(final.path)
    stages = []
    for method in DEMO_QUANTS:
        row = rows[method]
        cached = folder / f"lab-score-{method}.json"
        if cached.is_file() and not force:
            measured = json.loads(cached.read_text(encoding="utf-8"))
        else:
            measured = gguf_exact_match(row["path"], tokenizer)
            cached.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
        stages.append(StageResult(f"GGUF {method} (llama.cpp)", row["path"], {
            **measured, "size_mb": round(row["size_mb"], 2), "ppl_ratio": round(row["ppl_ratio"], 4),
            "kl_divergence": row["kl_divergence"], "decode_tok_s": round(row["tokens_per_second"], 1),
            "bits_per_weight": round(row["bits_per_weight"], 2)}))
    final.metrics["decode_tok_s"] = round(rows["-"]["tokens_per_second"], 1) if "-" in rows else None
    return stages
