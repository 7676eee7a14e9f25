"""How much the lab's figures move between machines: the demo run under perturbations that stand in
for other CPUs, and each figure's mean, min and max.

The same recipes and seeds give identical numbers on one machine but not across CPUs (other BLAS
and vector kernels change the last bits, and training amplifies them). This script reruns the
demo's lab stages, each variant from scratch in its own lab cache:

- `default`   seed 0, the default thread count and CPU kernels (what `make demo` runs);
- `seed1`, `seed2`   other training seeds for every stage (pretraining, SFT, DPO, specialists);
- `threads1`  `OMP_NUM_THREADS=1` (other reduction orders);
- `avx2`      `ATEN_CPU_CAPABILITY=avx2` (torch's AVX2 kernels instead of AVX-512).

and prints, per demo figure (SFT lift, DPO reward accuracy, the quantized files' exact match
against the merge, the merging experiment's kept share, each skill's exact match...), the mean,
min and max over the variants and every variant's value. Test thresholds on lab figures are set
from this table (at least three spreads from the measured value).

    python benchmarks/lab_spread.py [--variants default,seed1,seed2,threads1,avx2] [--jobs 2]
        [--skip gguf,specialists] [--work DIR] [--json OUT.json] [--markdown OUT.md]

Variants run `--jobs` at a time; each keeps its own thread setting (contention changes the time a
variant takes, not its numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

VARIANTS: dict[str, tuple[int, dict[str, str]]] = {
    "default": (0, {}),
    "seed1": (1, {}),
    "seed2": (2, {}),
    "threads1": (0, {"OMP_NUM_THREADS": "1"}),
    "avx2": (0, {"ATEN_CPU_CAPABILITY": "avx2"}),
}
ALWAYS_SKIPPED = ("generate", "gptq")  # neither makes a claim the spread is about


def run_variant(name: str, work: Path, skip: list[str], share_cores: bool = True) -> dict[str, Any]:
    """`llmcourse demo --json` for one variant in its own lab cache; its JSON plus the wall time."""
    seed, extra_env = VARIANTS[name]
    home = work / name
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "LLMCOURSE_HOME": str(home), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("OMP_NUM_THREADS", None)
    if share_cores:  # OpenMP threads that spin while waiting make two jobs on two cores several times slower
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    env.update(extra_env)
    args = [sys.executable, "-m", "llmcourse", "demo", "--json", "--seed", str(seed)]
    for stage in (*ALWAYS_SKIPPED, *skip):
        args += ["--skip", stage]
    started = time.perf_counter()
    with (home / "demo.log").open("w") as log:
        result = subprocess.run(args, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
    if result.returncode != 0:
        sys.exit(f"variant {name} failed; see {home / 'demo.log'}")
    (home / "demo.json").write_text(result.stdout, encoding="utf-8")
    return {**json.loads(result.stdout), "wall_s": round(time.perf_counter() - started, 1)}


def figures(demo: dict[str, Any]) -> dict[str, float]:
    """The figures the demo claims (and the tests check), from one `llmcourse demo --json`."""
    from llmcourse.demo.run import sft_lift

    stages = {stage["stage"]: stage["metrics"] for stage in demo["stages"]}
    chat_base, sft, dpo = (demo["stages"][i]["metrics"] for i in (1, 2, 3))
    merge = demo["stages"][4]["metrics"]
    found: dict[str, float] = {
        "base (Q/A) EM mean": demo["stages"][0]["metrics"]["exact_match/mean"],
        "base (ChatML) EM mean": chat_base["exact_match/mean"],
        "SFT EM mean": sft["exact_match/mean"],
        "SFT lift on its skills": sft_lift(chat_base, sft),
        "DPO reward accuracy": dpo["reward_accuracy"],
        "DPO pair accuracy": dpo["pair_accuracy"],
        "DPO EM mean - SFT": dpo["exact_match/mean"] - sft["exact_match/mean"],
        "merge EM mean": merge["exact_match/mean"],
    }
    for key, value in sft.items():
        if key.startswith("exact_match/") and key != "exact_match/mean":
            found[f"SFT {key.split('/')[1]}"] = value
    for key, value in dpo.items():
        if key.startswith("exact_match/") and key != "exact_match/mean":
            found[f"DPO {key.split('/')[1]}"] = value
    for quant in ("Q8_0", "Q4_K_M"):
        row = stages.get(f"GGUF {quant} (llama.cpp)")
        if row:
            found[f"{quant} EM - merge"] = row["exact_match/mean"] - merge["exact_match/mean"]
    experiment = demo.get("specialists") or {}
    if experiment:
        found["best merge kept share"] = experiment["best_kept"]
        for skill in experiment["skills"]:
            found[f"specialist {skill} own"] = experiment["scores"][f"specialist {skill}"][skill]
    if "wall_s" in demo:
        found["demo wall s"] = demo["wall_s"]
    return found


def table(results: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """One row per figure: mean, min, max, spread (max - min) and the value of each variant."""
    names = list(results)
    keys = list(dict.fromkeys(key for figures_of in results.values() for key in figures_of))
    rows = []
    for key in keys:
        values = [results[name][key] for name in names if key in results[name]]
        rows.append({"figure": key, "mean": statistics.fmean(values), "min": min(values), "max": max(values),
                     "spread": max(values) - min(values), **{name: results[name].get(key) for name in names}})
    return rows


def markdown(rows: list[dict[str, Any]], names: list[str]) -> str:
    """The table as Markdown (values to three decimals, wall time in seconds)."""
    header = ["figure", "mean", "min", "max", "spread", *names]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for row in rows:
        cells = [row["figure"], *(_fmt(row[key]) for key in header[1:])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.0f}" if abs(value) >= 10 else f"{value:.3f}"


def main() -> None:
    """Run the variants, print the table, write JSON / Markdown if asked."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, from: " + ", ".join(VARIANTS))
    parser.add_argument("--jobs", type=int, default=2, help="variants run at the same time")
    parser.add_argument("--skip", default="", help="demo stages to leave out as well (gguf, specialists)")
    parser.add_argument("--work", type=Path, default=None, help="where the variants' lab caches go (default: a temporary folder)")
    parser.add_argument("--json", type=Path, default=None, help="write every variant's figures here")
    parser.add_argument("--markdown", type=Path, default=None, help="write the table here")
    args = parser.parse_args()
    names = [name for name in args.variants.split(",") if name]
    unknown = [name for name in names if name not in VARIANTS]
    if unknown:
        sys.exit(f"unknown variant(s): {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    work = args.work or Path(tempfile.mkdtemp(prefix="lab-spread-"))
    skip = [stage for stage in args.skip.split(",") if stage]
    print(f"running {len(names)} variants, {args.jobs} at a time, in {work}", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        demos = dict(zip(names, pool.map(lambda name: run_variant(name, work, skip, args.jobs > 1), names)))
    results = {name: figures(demo) for name, demo in demos.items()}
    rows = table(results)
    text = markdown(rows, names)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"variants": results, "rows": rows}, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
