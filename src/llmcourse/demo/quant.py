"""The demo's quantization stages: the final lab model as Q8_0 and Q4_K_M GGUF files, each scored
on the held-out lab skills by `llmcourse eval` through llama.cpp alone (its tokenizer, its chat
template, its greedy decoding); and as a 4-bit GPTQ folder (GPTQModel), scored the same way through
transformers."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import os
import time
from pathlib import Path
from typing import Any, Callable

from llmcourse.core.console import err
from llmcourse.core.libraries import installed, pip_line

DEMO_QUANTS = ("Q8_0", "Q4_K_M")
# `make demo` compiles the GGUF engine in the background while the demo trains, and names here the
# file that build writes its exit status to when it ends.
ENGINE_BUILD_STATUS = "LLMCOURSE_GGUF_ENGINE_STATUS"


def gguf_engine_ready(module: str = "llama_cpp", poll_s: float = 1.0) -> bool:
    """Whether llama-cpp-python (`module`) imports. Where a background build of it is under way
    (`ENGINE_BUILD_STATUS` names its status file), wait for that build to end first, even if the
    package already imports: it may be installing at that moment."""
    named = os.environ.get(ENGINE_BUILD_STATUS)
    if named:
        status_file, started = Path(named), time.perf_counter()
        if not status_file.is_file():
            with err.status("waiting for the GGUF engine (llama.cpp), which `make demo` builds in the background"):
                while not status_file.is_file():
                    time.sleep(poll_s)
            err.print(f"the GGUF engine's build ended (waited {time.perf_counter() - started:.0f} s for it)")
        status = status_file.read_text(encoding="utf-8").strip()
        if status != "0":
            err.print(f"[red]the GGUF engine's build failed[/] (exit status {status or '?'}; make demo prints its log)")
        importlib.invalidate_caches()  # the package may have been installed after this process first looked
    return importlib.util.find_spec(module) is not None


def quant_stages(final: Any, force: bool) -> list[Any]:
    """Quantize the final model to the demo's GGUF types (cached) and score each file."""
    if not gguf_engine_ready():
        err.print("[yellow]skipping the GGUF stage: llama-cpp-python is not installed[/] (make demo builds it)")
        return []
    from llmcourse.lab.cache import cache_folder
    from llmcourse.recipes.quantize import QuantizeRecipe

    parent = cache_folder("quant", final.path, list(DEMO_QUANTS))
    recipe = QuantizeRecipe(model=final.path, formats=["gguf"], gguf={"methods": list(DEMO_QUANTS)}, output_dir=str(parent))
    folder, rows = quantized_rows(recipe, parent / f"{Path(final.path).name}-GGUF", force)
    stages = [scored_stage(f"GGUF {method} (llama.cpp)", rows[method], folder / f"lab-score-{method}.json",
                           folder / f"eval-lab-{method}", force) for method in DEMO_QUANTS]
    final.metrics["decode_tok_s"] = round(rows["-"]["tokens_per_second"], 1) if "-" in rows else None
    return stages


GPTQ_METHOD = "4bit"


def gptq_stage(final: Any, force: bool) -> list[Any]:
    """The final model as 4-bit GPTQ (group size 128, calibrated on lab conversations), scored like
    the GGUF files. Empty, with a note, where GPTQModel is not installed."""
    if not installed("gptqmodel"):
        err.print(f"[yellow]skipping the GPTQ stage: GPTQModel is not installed[/] ({pip_line('gptq', markup=True)})")
        return []
    from llmcourse.lab.cache import cache_folder
    from llmcourse.quantize.formats.gptq import engine_output
    from llmcourse.recipes.quantize import QuantizeRecipe

    parent = cache_folder("quant", final.path, "gptq", GPTQ_METHOD)
    recipe = QuantizeRecipe(model=final.path, formats=["gptq"], gptq={"methods": [GPTQ_METHOD], "group_size": 128},
                            calibration="lab://chat", output_dir=str(parent))
    folder, rows = quantized_rows(recipe, parent / f"{Path(final.path).name}-GPTQ", force)
    # transformers loads the folder through GPTQModel, whose output is held back
    return [scored_stage("GPTQ 4-bit g128 (GPTQModel)", rows[GPTQ_METHOD], folder / "lab-score.json", folder / "eval-lab", force,
                         engine_output)]


def quantized_rows(recipe: Any, folder: Path, force: bool) -> tuple[Path, dict[str, dict[str, Any]]]:
    """Quantize with `recipe` unless `folder` already holds its report; the report's rows by method."""
    from llmcourse.quantize.run import run

    if not (folder / "report.json").exists() or force:
        run(recipe, overwrite=True)
    else:
        err.print(f"reusing the quantized outputs in {folder}")
    return folder, {row["method"]: row for row in json.loads((folder / "report.json").read_text(encoding="utf-8"))["rows"]}


def scored_stage(name: str, row: dict[str, Any], cached: Path, eval_dir: Path, force: bool,
                 around: Callable[[], Any] = contextlib.nullcontext) -> Any:
    """A quantized output's demo row: held-out exact match (cached in `cached`) and its report figures."""
    from llmcourse.demo.stage import StageResult
    from llmcourse.demo.eval import eval_exact_match

    if cached.is_file() and not force:
        measured = json.loads(cached.read_text(encoding="utf-8"))
    else:
        with around():
            measured = eval_exact_match(row["path"], eval_dir)
        cached.write_text(json.dumps(measured, indent=2) + "\n", encoding="utf-8")
    return StageResult(name, row["path"], {
        **measured, "size_mb": round(row["size_mb"], 2), "ppl_ratio": round(row["ppl_ratio"], 4),
        "kl_divergence": row["kl_divergence"], "decode_tok_s": round(row["tokens_per_second"], 1),
        "bits_per_weight": round(row["bits_per_weight"], 2)})
