"""The demo's quantization stages: the final lab model as Q8_0 and Q4_K_M GGUF files, each scored
on the held-out lab skills by `llmcourse eval` through llama.cpp alone (its tokenizer, its chat
template, its greedy decoding); and as a 4-bit GPTQ folder (GPTQModel), scored the same way through
transformers."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path
from typing import Any

from llmcourse.console import err

DEMO_QUANTS = ("Q8_0", "Q4_K_M")


def quant_stages(final: Any, force: bool) -> list[Any]:
    """Quantize the final model to the demo's GGUF types (cached) and score each file."""
    from llmcourse.demo import StageResult

    if importlib.util.find_spec("llama_cpp") is None:
        err.print("[yellow]skipping the GGUF stage: llama-cpp-python is not installed[/] (make install builds it)")
        return []
    from llmcourse.cache import llmcourse_home
    from llmcourse.demo_eval import eval_exact_match
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
    stages = []
    for method in DEMO_QUANTS:
        row = rows[method]
        cached = folder / f"lab-score-{method}.json"
        if cached.is_file() and not force:
            measured = json.loads(cached.read_text(encoding="utf-8"))
        else:
            measured = eval_exact_match(row["path"], folder / f"eval-lab-{method}")
            cached.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
        stages.append(StageResult(f"GGUF {method} (llama.cpp)", row["path"], {
            **measured, "size_mb": round(row["size_mb"], 2), "ppl_ratio": round(row["ppl_ratio"], 4),
            "kl_divergence": row["kl_divergence"], "decode_tok_s": round(row["tokens_per_second"], 1),
            "bits_per_weight": round(row["bits_per_weight"], 2)}))
    final.metrics["decode_tok_s"] = round(rows["-"]["tokens_per_second"], 1) if "-" in rows else None
    return stages


GPTQ_METHOD = "4bit"


def gptq_stage(final: Any, force: bool) -> list[Any]:
    """The final model as 4-bit GPTQ (group size 128, calibrated on lab conversations), scored like
    the GGUF files. Empty, with a note, where GPTQModel is not installed."""
    from llmcourse.demo import StageResult

    if importlib.util.find_spec("gptqmodel") is None:
        err.print("[yellow]skipping the GPTQ stage: GPTQModel is not installed[/] (pip install 'llmcourse[gptq]')")
        return []
    from llmcourse.cache import llmcourse_home
    from llmcourse.demo_eval import eval_exact_match
    from llmcourse.quantize.run import run
    from llmcourse.recipes.quantize import QuantizeRecipe

    digest = hashlib.sha256(f"{final.path}:gptq:{GPTQ_METHOD}".encode()).hexdigest()[:10]
    parent = llmcourse_home() / "lab" / f"quant-{digest}"
    recipe = QuantizeRecipe(model=final.path, formats=["gptq"], gptq={"methods": [GPTQ_METHOD], "group_size": 128},
                            calibration="lab://chat", output_dir=str(parent))
    folder = parent / f"{Path(final.path).name}-GPTQ"
    if not (folder / "report.json").exists() or force:
        run(recipe, overwrite=True)
    else:
        err.print(f"reusing the GPTQ folder in {folder}")
    rows = {row["method"]: row for row in json.loads((folder / "report.json").read_text(encoding="utf-8"))["rows"]}
    row = rows[GPTQ_METHOD]
    cached = folder / "lab-score.json"
    if cached.is_file() and not force:
        measured = json.loads(cached.read_text(encoding="utf-8"))
    else:
        from llmcourse.quantize.gptq import engine_output

        with engine_output():  # transformers loads the folder through GPTQModel
            measured = eval_exact_match(row["path"], folder / "eval-lab")
        cached.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    return [StageResult("GPTQ 4-bit g128 (GPTQModel)", row["path"], {
        **measured, "size_mb": round(row["size_mb"], 2), "ppl_ratio": round(row["ppl_ratio"], 4),
        "kl_divergence": row["kl_divergence"], "decode_tok_s": round(row["tokens_per_second"], 1),
        "bits_per_weight": round(row["bits_per_weight"], 2)})]
