"""Merge cost: `llmcourse merge` vs mergekit's own `mergekit-yaml` on the same config and models.

Two random Llama models are built locally (about 300 MB each by default, lab tokenizer), then the
same slerp config is merged by each tool in its own process, the two tools taking turns
(`--repeat` runs each, medians reported). Reported per tool: wall time, peak RSS (the child's own ru_maxrss, which includes the pages of the memory-mapped
inputs) and peak anonymous RSS (sampled); printed: wall-time ratio (goal <= 1.05) and peak RSS /
sum of input sizes (goal <= 0.75). Outputs are compared tensor for tensor.

    python benchmarks/merge_cost.py [--hidden 1024] [--layers 6] [--out-shard-size 100M] [--repeat 3] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from random_llama import build_random_llama  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def _anon_mb(pid: int) -> float:
    """The process's anonymous resident memory (RssAnon) in MB, 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def timed(args: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, peak anonymous RSS MB) of one child process.

    Peak RSS (ru_maxrss) also counts the pages of memory-mapped input files as they are read: page
    cache the kernel can drop. RssAnon, sampled every 20 ms, is the memory the process itself holds."""
    import threading

    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak_anon = [0.0]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak_anon[0] = max(peak_anon[0], _anon_mb(process.pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    done.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{args[0]} failed:\n{process.stderr.read().decode()[-3000:] if process.stderr else ''}")
    return wall, usage.ru_maxrss / 1024, peak_anon[0]


def same_tensors(a: Path, b: Path) -> bool:
    """True when two output folders hold identical tensors."""
    import torch
    from safetensors.torch import load_file

    left = {k: v for f in sorted(a.glob("*.safetensors")) for k, v in load_file(f).items()}
    right = {k: v for f in sorted(b.glob("*.safetensors")) for k, v in load_file(f).items()}
    return left.keys() == right.keys() and all(torch.equal(left[k], right[k]) for k in left)


def main() -> None:
    """Build two models, merge them with both tools, print the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, default=1024)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--out-shard-size", default=None, help="passed to both tools, e.g. 100M (default: theirs, 5B)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per tool, interleaved; medians reported")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    bin_dir = Path(sys.executable).parent
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sizes = [build_random_llama(work / name, args.hidden, args.layers, seed)[1] for seed, name in enumerate(("a", "b"))]
        config = work / "slerp.yaml"
        config.write_text(
            f"slices:\n  - sources:\n      - model: {work / 'a'}\n        layer_range: [0, {args.layers}]\n"
            f"      - model: {work / 'b'}\n        layer_range: [0, {args.layers}]\n"
            f"merge_method: slerp\nbase_model: {work / 'a'}\nparameters:\n  t: 0.5\ndtype: float32\n"
        )
        shard = ["--out-shard-size", args.out_shard_size] if args.out_shard_size else []
        # Interleaved runs: a single run of each varies by about a second (imports, page cache).
        runs: dict[str, list[tuple[float, float, float]]] = {"mergekit": [], "ours": []}
        for _ in range(args.repeat):
            for name in ("theirs", "ours"):
                shutil.rmtree(work / name, ignore_errors=True)
            runs["mergekit"].append(timed([str(bin_dir / "mergekit-yaml"), str(config), str(work / "theirs"), *shard], work))
            runs["ours"].append(timed([sys.executable, "-m", "llmcourse", "merge", str(config), "-o", str(work / "ours"), *shard], work))
        mergekit, ours = (tuple(statistics.median(run[i] for run in runs[name]) for i in range(3)) for name in ("mergekit", "ours"))
        identical = same_tensors(work / "ours", work / "theirs")
    inputs = sum(sizes)
    result = {
        "input_mb": round(inputs, 1),
        "out_shard_size": args.out_shard_size or "5B",
        "mergekit_yaml": {"wall_s": round(mergekit[0], 2), "peak_rss_mb": round(mergekit[1], 1), "peak_anon_mb": round(mergekit[2], 1)},
        "llmcourse_merge": {"wall_s": round(ours[0], 2), "peak_rss_mb": round(ours[1], 1), "peak_anon_mb": round(ours[2], 1)},
        "repeat": args.repeat,
        "walls_s": {name: [round(run[0], 2) for run in values] for name, values in runs.items()},
        "wall_ratio": round(ours[0] / mergekit[0], 3),
        "rss_over_inputs": round(ours[1] / inputs, 3),
        "anon_over_inputs": round(ours[2] / inputs, 3),
        "mergekit_rss_over_inputs": round(mergekit[1] / inputs, 3),
        "identical_tensors": identical,
    }
    print(f"inputs: 2 models, {inputs:.0f} MB in all; medians of {args.repeat} interleaved runs per tool")
    print(f"  mergekit-yaml    {mergekit[0]:6.1f} s  peak RSS {mergekit[1]:7.0f} MB  peak anonymous {mergekit[2]:7.0f} MB")
    print(f"  llmcourse merge  {ours[0]:6.1f} s  peak RSS {ours[1]:7.0f} MB  peak anonymous {ours[2]:7.0f} MB")
    print(f"wall time ratio {result['wall_ratio']:.3f}x (goal <= 1.05); peak RSS / inputs {result['rss_over_inputs']:.3f} "
          f"(goal <= 0.75; mergekit-yaml {result['mergekit_rss_over_inputs']:.3f}); peak anonymous / inputs "
          f"{result['anon_over_inputs']:.3f}; identical tensors: {identical}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
