"""The lab merging experiment: two specialists, five merges, held-out exact match on both skills.

From the lab SFT model (the demo's, reused from the lab cache), two specialists are fine-tuned on
one skill each with the demo's recipe (`llmcourse.demo.specialists`, other steps, rates and ranks); they are merged with linear, slerp, ties, dare_ties and task_arithmetic by
`llmcourse merge` (mergekit YAML, fixed seed); then `llmcourse eval` scores the parent, both
specialists and every merge on the two skills' held-out questions (lm-eval, exact match) in one
report. Printed: each model's scores and, per merge, the share of each specialist's own-skill
score it keeps (goal: the best merge keeps >= 80 % of both).

    python benchmarks/merge_specialists.py [--skills topic,sign] [--steps 400] [--lr 1e-4] [--lora-r 0]
        [--replay 500] [--weight 1.0] [--work DIR] [--json OUT.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def cli(*args: str) -> str:
    """Run `python -m llmcourse ARGS`; its stdout (exits with its stderr on failure)."""
    result = subprocess.run([sys.executable, "-m", "llmcourse", *args], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"llmcourse {' '.join(args[:2])} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def parent_model() -> str:
    """The demo's SFT model (built with the shipped lab recipes, or reused from the lab cache)."""
    from llmcourse.lab.cache import run_cached
    from llmcourse.demo.run import sft_recipe
    from llmcourse.finetune.sft import run as run_sft

    base = json.loads(cli("lab", "build", "--json"))["path"]
    path, _ = run_cached("sft", sft_recipe(base), run_sft)
    return str(path)


def specialist(parent: str, skill: str, steps: int, learning_rate: float, lora_r: int, replay: int = 0) -> str:
    """The parent fine-tuned further on one skill only (the demo's recipe, cached in the lab cache):
    every weight, or (lora_r > 0) a LoRA adapter merged into the weights afterwards."""
    from llmcourse.lab.cache import run_cached
    from llmcourse.demo.specialists import parent_replay, specialist_recipe
    from llmcourse.finetune.sft import run as run_sft

    data = str(parent_replay(parent, skill, replay)) if replay else None
    path, _ = run_cached("sft", specialist_recipe(parent, skill, steps, learning_rate, lora_r, replay=data), run_sft)
    return str(path / "merged" if lora_r else path)


def main() -> None:
    """Build, merge, evaluate, print the table and the kept shares."""
    import yaml

    from llmcourse.demo.specialists import MERGE_METHODS, merge_configs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skills", default="topic,sign", help="two lab skills, one per specialist")
    parser.add_argument("--steps", type=int, default=400, help="SFT steps per specialist")
    parser.add_argument("--lr", type=float, default=1.0e-4, help="specialists' learning rate")
    parser.add_argument("--lora-r", type=int, default=0, help="train LoRA specialists of this rank (merged into the weights); 0: full")
    parser.add_argument("--replay", type=int, default=500,
                        help="questions of every other lab skill answered by the parent, mixed into each specialist's data (0: none)")
    parser.add_argument("--weight", type=float, default=1.0, help="ties/dare_ties/task_arithmetic weight of each task vector")
    parser.add_argument("--limit", type=int, default=100, help="held-out questions per skill")
    parser.add_argument("--work", type=Path, default=None, help="work folder for the merges and the eval (kept; merges are reused)")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args()
    skills = args.skills.split(",")
    if len(skills) != 2:
        sys.exit("--skills: give exactly two lab skills")
    work = args.work or Path(tempfile.mkdtemp(prefix="merge-specialists-"))
    work.mkdir(parents=True, exist_ok=True)
    parent = parent_model()
    experts = [specialist(parent, skill, args.steps, args.lr, args.lora_r, args.replay) for skill in skills]
    layers = json.loads((Path(parent) / "config.json").read_text())["num_hidden_layers"]
    models = {"parent (SFT)": parent, f"specialist {skills[0]}": experts[0], f"specialist {skills[1]}": experts[1]}
    for method, config in merge_configs(parent, *experts, layers, args.weight).items():
        text = yaml.safe_dump(config, sort_keys=False)
        out = work / f"merge-{method}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
        if not (out / "config.json").is_file():
            (work / f"{out.name}.yaml").write_text(text)
            cli("merge", str(work / f"{out.name}.yaml"), "-o", str(out), "--random-seed", "0", "--overwrite")
        models[method] = str(out)
    tasks = ",".join(f"lab_{skill}" for skill in skills)
    summary = json.loads(cli("eval", *models.values(), "--tasks", tasks, "--limit", str(args.limit), "--chat-template",
                             "-o", str(work / "eval"), "--overwrite", "--json"))
    scores = {label: entry["scores"] for label, entry in zip(models, summary["models"])}
    own = {skill: scores[f"specialist {skill}"][f"lab_{skill}"] for skill in skills}
    print(f"held-out exact match ({args.limit} questions per skill)")
    print(f"{'model':<22}" + "".join(f"{skill:>14}" for skill in skills) + "   kept (min over skills)")
    results = {}
    for label, row in scores.items():
        kept = {skill: row[f"lab_{skill}"] / own[skill] if own[skill] else 0.0 for skill in skills}
        results[label] = {"scores": {skill: row[f"lab_{skill}"] for skill in skills}, "kept": kept, "path": models[label]}
        print(f"{label:<22}" + "".join(f"{row[f'lab_{skill}']:>14.2f}" for skill in skills) + f"   {min(kept.values()):.1%}")
    merges = [label for label in results if label in MERGE_METHODS]
    best = max(merges, key=lambda label: min(results[label]["kept"].values()))
    print(f"best merge: {best}, keeps {min(results[best]['kept'].values()):.1%} of each specialist's own-skill score (goal >= 80 %)")
    if args.json:
        args.json.write_text(json.dumps({"skills": skills, "steps": args.steps, "results": results, "best": best}, indent=2) + "\n")


if __name__ == "__main__":
    main()
