"""Merge cost: `llmcourse merge` vs mergekit's own `mergekit-yaml` on the same config and models.

Two random Llama models are built locally (about 300 MB each by default, lab tokenizer), then the
same slerp config is merged by each tool in its own process, the two tools taking turns
(`--repeat` runs each, medians reported). Reported per tool: wall time, peak RSS (the child's own ru_maxrss, which includes the pages of the memory-mapped
inputs) and peak anonymous RSS (sampled); printed: wall-time ratio (goal <= 1.05) and peak RSS /
sum of input sizes (goal <= 0.75). Outputs are compared tensor for tensor.

Peak RSS counts the pages of memory-mapped inputs, which the kernel can drop under pressure. So with
`--memory-limit MB` each run is made in its own memory cgroup with that hard limit (cgroup v1 or v2,
needs write access to /sys/fs/cgroup): what counts is whether a tool finishes under the limit and how
long it takes there, not its RSS without one.

    python benchmarks/merge_cost.py [--hidden 1024] [--layers 6] [--out-shard-size 100M] [--repeat 3]
        [--memory-limit 800] [--json OUT.json]
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


class MemoryCgroup:
    """A memory cgroup with a hard limit that a child process joins before it runs (`join` as its
    preexec_fn); `peak_mb` and `limit_hits` afterwards (the latter: v1's failcnt, v2's `max` events)."""

    def __init__(self, limit_mb: int, name: str) -> None:
        v2 = Path("/sys/fs/cgroup/cgroup.controllers").is_file()
        self.path = Path("/sys/fs/cgroup" if v2 else "/sys/fs/cgroup/memory") / f"llmcourse-bench-{os.getpid()}-{name}"
        self.v2 = v2
        self.path.mkdir()
        limit = str(limit_mb * 1024 * 1024)
        (self.path / ("memory.max" if v2 else "memory.limit_in_bytes")).write_text(limit)
        if v2:
            (self.path / "memory.swap.max").write_text("0")

    def join(self) -> None:
        """Move the calling process into the cgroup (run in the child before exec)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def peak_mb(self) -> float:
        """The most memory the group used (page cache of the inputs included)."""
        name = "memory.peak" if self.v2 else "memory.max_usage_in_bytes"
        return int((self.path / name).read_text()) / 2**20 if (self.path / name).is_file() else float("nan")

    def limit_hits(self) -> int:
        """How often usage reached the limit (and the kernel had to reclaim)."""
        if self.v2:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
            return int(events.get("max", 0))
        return int((self.path / "memory.failcnt").read_text())

    def remove(self) -> None:
        """Delete the (now empty) cgroup."""
        self.path.rmdir()


def run_child(args: list[str], cwd: Path, cgroup: MemoryCgroup | None = None) -> dict:
    """One child process (in `cgroup`, if given): exit code, wall seconds, peak RSS MB, peak anonymous
    RSS MB and the tail of its stderr.

    Peak RSS (ru_maxrss) also counts the pages of memory-mapped input files as they are read: page
    cache the kernel can drop. RssAnon, sampled every 20 ms, is the memory the process itself holds."""
    import threading

    started = time.perf_counter()
    process = subprocess.Popen(args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               preexec_fn=cgroup.join if cgroup else None)
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
    return {"exit_code": os.waitstatus_to_exitcode(status), "wall_s": wall, "peak_rss_mb": usage.ru_maxrss / 1024,
            "peak_anon_mb": peak_anon[0], "stderr": process.stderr.read().decode()[-3000:] if process.stderr else ""}


def timed(args: list[str], cwd: Path) -> tuple[float, float, float]:
    """(wall seconds, peak RSS MB, peak anonymous RSS MB) of a child that must succeed."""
    run = run_child(args, cwd)
    if run["exit_code"] != 0:
        sys.exit(f"{args[0]} failed (exit {run['exit_code']}):\n{run['stderr']}")
    return run["wall_s"], run["peak_rss_mb"], run["peak_anon_mb"]


def limited(args: list[str], cwd: Path, limit_mb: int, name: str) -> dict[str, float]:
    """One run under a memory cgroup of `limit_mb`: wall time, the group's peak and limit hits; a run
    the kernel's OOM killer stopped is reported as not finished."""
    cgroup = MemoryCgroup(limit_mb, name)
    try:
        run = run_child(args, cwd, cgroup)
        if run["exit_code"] != 0:
            return {"finished": False, "exit_code": run["exit_code"], "error": run["stderr"][-500:], "limit_hits": cgroup.limit_hits()}
        return {"finished": True, "wall_s": round(run["wall_s"], 2), "cgroup_peak_mb": round(cgroup.peak_mb(), 1),
                "limit_hits": cgroup.limit_hits(), "peak_rss_mb": round(run["peak_rss_mb"], 1), "peak_anon_mb": round(run["peak_anon_mb"], 1)}
    finally:
        cgroup.remove()


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
    parser.add_argument("--memory-limit", type=int, default=None, help="also run each tool once in a memory cgroup of this many MB")
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
        under_limit = {}
        if args.memory_limit:
            for name in ("theirs", "ours"):
                shutil.rmtree(work / name, ignore_errors=True)
            under_limit = {
                "limit_mb": args.memory_limit,
                "mergekit_yaml": limited([str(bin_dir / "mergekit-yaml"), str(config), str(work / "theirs"), *shard], work, args.memory_limit, "theirs"),
                "llmcourse_merge": limited([sys.executable, "-m", "llmcourse", "merge", str(config), "-o", str(work / "ours"), *shard], work,
                                           args.memory_limit, "ours"),
            }
            finished = all(under_limit[key]["finished"] for key in ("mergekit_yaml", "llmcourse_merge"))
            under_limit["identical_tensors"] = finished and same_tensors(work / "ours", work / "theirs")
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
        "under_memory_limit": under_limit,
    }
    print(f"inputs: 2 models, {inputs:.0f} MB in all; medians of {args.repeat} interleaved runs per tool")
    print(f"  mergekit-yaml    {mergekit[0]:6.1f} s  peak RSS {mergekit[1]:7.0f} MB  peak anonymous {mergekit[2]:7.0f} MB")
    print(f"  llmcourse merge  {ours[0]:6.1f} s  peak RSS {ours[1]:7.0f} MB  peak anonymous {ours[2]:7.0f} MB")
    print(f"wall time ratio {result['wall_ratio']:.3f}x (goal <= 1.05); peak RSS / inputs {result['rss_over_inputs']:.3f} "
          f"(goal <= 0.75; mergekit-yaml {result['mergekit_rss_over_inputs']:.3f}); peak anonymous / inputs "
          f"{result['anon_over_inputs']:.3f}; identical tensors: {identical}")
    if under_limit:
        for label, key in (("mergekit-yaml", "mergekit_yaml"), ("llmcourse merge", "llmcourse_merge")):
            run = under_limit[key]
            if not run["finished"]:
                print(f"  under a {args.memory_limit} MB cgroup, {label}: FAILED ({run['error'].splitlines()[0]})")
                continue
            print(f"  under a {args.memory_limit} MB cgroup, {label}: finished in {run['wall_s']:.1f} s, group peak {run['cgroup_peak_mb']:.0f} MB, "
                  f"limit reached {run['limit_hits']} times, peak RSS {run['peak_rss_mb']:.0f} MB")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
