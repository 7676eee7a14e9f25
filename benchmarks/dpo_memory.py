"""Peak memory of LoRA DPO with the implicit reference vs an SFT run and vs an explicit reference model.

One model (a ~150 M-parameter random Llama with the lab tokenizer, built locally, so that weights,
not libraries, dominate memory), the same LoRA settings, batch and steps; each run is a separate
`llmcourse` process and reports its own peak RSS (`peak_memory_mb` in report.json). Printed:
DPO(implicit) ÷ SFT (goal ≤ 1.15) and DPO(explicit reference) ÷ SFT, measured in the same run.

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


def build_model(folder: Path, hidden: int, layers: int) -> int:
    """A random Llama of the given size with the lab tokenizer, saved as safetensors (lab base built if needed)."""
    from transformers import AutoTokenizer

    from llmcourse.lab.model import count_parameters, init_model, llama_config
    from llmcourse.labcmd import build

    tokenizer = AutoTokenizer.from_pretrained(build([])["path"])
    config = llama_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, hidden_size=hidden,
                          intermediate_size=int(hidden * 2.75), num_hidden_layers=layers, num_attention_heads=hidden // 64,
                          num_key_value_heads=hidden // 128, max_position_embeddings=256)
    model = init_model(config, seed=0)
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return count_parameters(model)


def run(command: str, recipe: str, model: Path, out: Path, steps: int, extra: list[str]) -> dict:
    """One `llmcourse` run; its report.json."""
    args = [sys.executable, "-m", "llmcourse", command, recipe, f"base_model={model}", f"max_steps={steps}",
            "micro_batch_size=4", "eval_lab_count=0", "lora_r=16", "lora_alpha=32", "merge_adapter=false",
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
        params = build_model(work / "model", args.hidden, args.layers)
        size_mb = sum(p.stat().st_size for p in (work / "model").glob("*.safetensors")) / 1e6
        data = ["datasets.0.path=lab://parity+sentiment", "datasets.0.num_samples=200", "sequence_len=64"]
        sft = run("sft", "lab/sft-lora", work / "model", work / "sft", args.steps, [*data, "sample_packing=false"])
        implicit = run("dpo", "lab/dpo-lora", work / "model", work / "dpo", args.steps, [*data, "eval_pairs=0"])
        explicit = run("dpo", "lab/dpo-lora", work / "model", work / "dpo-ref", args.steps,
                       [*data, "eval_pairs=0", f"ref_model={work / 'model'}"])
    rows = {"sft (LoRA)": sft, "dpo (LoRA, implicit reference)": implicit, "dpo (LoRA, explicit reference)": explicit}
    result = {
        "parameters": params, "weights_mb": round(size_mb, 1), "steps": args.steps,
        "peak_rss_mb": {name: report["peak_memory_mb"] for name, report in rows.items()},
        "implicit_over_sft": round(implicit["peak_memory_mb"] / sft["peak_memory_mb"], 3),
        "explicit_over_sft": round(explicit["peak_memory_mb"] / sft["peak_memory_mb"], 3),
    }
    print(f"model: {params / 1e6:.0f} M parameters, {size_mb:.0f} MB of weights; {args.steps} steps of batch 4 each")
    for name, mb in result["peak_rss_mb"].items():
        print(f"  {name:34s} peak RSS {mb:8.0f} MB")
    print(f"DPO implicit reference / SFT: {result['implicit_over_sft']:.3f}x (goal <= 1.15)")
    print(f"DPO explicit reference / SFT: {result['explicit_over_sft']:.3f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
