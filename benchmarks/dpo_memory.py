"""Peak memory of LoRA DPO with the implicit reference vs an SFT run and vs an explicit reference model.

One model (a ~150 M-parameter random Llama with the lab tokenizer, built locally, so that weights,
not libraries, dominate memory), the same LoRA settings, batch and steps; each run is a separate
`llmcourse` process and reports its own peak RSS (`peak_memory_mb` in report.json). Printed:
DPO(implicit) ÷ SFT (goal ≤ 1.15) and DPO(explicit reference) ÷ SFT, measured in the same run, in
two settings: gradient checkpointing on (TRL's DPO default) with the same micro batch, and no
checkpointing with the same number of sequences per step (a DPO pair is two sequences, so its
activations are twice an SFT example's: SFT micro batch 2B against DPO micro batch B).

    python benchmarks/dpo_memory.py [--hidden 1024] [--layers 12] [--steps 6] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from random_llama import build_random_llama  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def run(command: str, recipe: str, model: Path, out: Path, steps: int, extra: list[str]) -> dict:
    """One `llmcourse` run; its report.json."""
    args = [sys.executable, "-m", "llmcourse", command, recipe, f"base_model={model}", f"max_steps={steps}",
            "eval_lab_count=0", "lora_r=16", "lora_alpha=32", "merge_adapter=false",
            *extra, "-o", str(out)]
    result = subprocess.run(args, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"{command} failed:\n{result.stderr[-3000:]}")
    return json.loads((out / "report.json").read_text())


def main() -> None:
    """Build the model, run SFT, DPO (implicit reference) and DPO (explicit reference), print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        params, _ = build_random_llama(work / "model", args.hidden, args.layers)
        data = ["datasets.0.path=lab://parity+sentiment", "datasets.0.num_samples=200", "sequence_len=64"]
        settings = {
            "checkpointing, micro batch 4": (["micro_batch_size=4", "gradient_checkpointing=true"],) * 2,
            "no checkpointing, 8 sequences per step": (["micro_batch_size=8"], ["micro_batch_size=4"]),
        }
        result: dict = {"parameters": params, "steps": args.steps, "settings": {}}
        for name, (sft_extra, dpo_extra) in settings.items():
            key = name.split(",")[0].replace(" ", "_")
            sft = run("sft", "lab/sft-lora", work / "model", work / f"sft-{key}", args.steps,
                      [*data, *sft_extra, "sample_packing=false"])
            implicit = run("dpo", "lab/dpo-lora", work / "model", work / f"dpo-{key}", args.steps, [*data, *dpo_extra, "eval_pairs=0"])
            explicit = run("dpo", "lab/dpo-lora", work / "model", work / f"ref-{key}", args.steps,
                           [*data, *dpo_extra, "eval_pairs=0", f"ref_model={work / 'model'}"])
            result["settings"][name] = {
                "peak_rss_mb": {"sft": sft["peak_memory_mb"], "dpo_implicit": implicit["peak_memory_mb"],
                                "dpo_explicit": explicit["peak_memory_mb"]},
                "implicit_over_sft": round(implicit["peak_memory_mb"] / sft["peak_memory_mb"], 3),
                "explicit_over_sft": round(explicit["peak_memory_mb"] / sft["peak_memory_mb"], 3),
            }
        size_mb = sum(p.stat().st_size for p in (work / "model").glob("*.safetensors")) / 1e6
    result["weights_mb"] = round(size_mb, 1)
    print(f"model: {params / 1e6:.0f} M parameters, {size_mb:.0f} MB of weights; {args.steps} steps per run; peak RSS in MB")
    for name, row in result["settings"].items():
        rss = row["peak_rss_mb"]
        print(f"  {name:40s} sft {rss['sft']:6.0f}  dpo implicit {rss['dpo_implicit']:6.0f}  dpo explicit {rss['dpo_explicit']:6.0f}"
              f"  implicit/sft {row['implicit_over_sft']:.3f}x (goal <= 1.15)  explicit/sft {row['explicit_over_sft']:.3f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
