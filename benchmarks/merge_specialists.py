"""The lab merging experiment: two specialists, five merges, held-out exact match on both skills.

From the lab SFT model (the demo's, reused from the lab cache), two specialists are fine-tuned on
one skill each with the demo's recipe (`llmcourse.demo.specialists`, other steps, rates and ranks); they are merged with linear, slerp, ties, dare_ties and task_arithmetic by
`llmcourse merge` (mergekit YAML, fixed seed); then `llmcourse eval` scores the parent, both
specialists and every merge on the two skills' held-out questions (lm-eval, exact match) in one
report. Printed: each model's scores and, per merge, the share of each specialist's own-skill
score it keeps (goal: the best merge keeps >= 80 % of both) and the share of each specialist's gain
over the parent it keeps (what the merge carried over, whatever the parent already guessed).

Options beyond the demo's recipe: `--other-skill` (how each specialist's replay treats the other
specialist's skill), `--guessing-parent` (first teach the parent both skills' answer format at
chance), `--both-ways` (a guessed question is asked twice, once with each answer, instead of
answered by a coin), `--seed` (a spread variant's seed: base, SFT and specialists; with `LLMCOURSE_HOME` set to
that variant's lab cache, its own models are reused).

    python benchmarks/merge_specialists.py [--skills topic,sign] [--steps 400] [--lr 1e-4] [--lora-r 0]
        [--replay 500] [--other-skill parent|none|guess] [--guessing-parent] [--both-ways] [--seed 0] [--weight 1.0]
        [--work DIR] [--json OUT.json]
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


def parent_model(seed: int) -> str:
    """The demo's SFT model for `seed` (built with the shipped lab recipes, or reused from the lab cache)."""
    from llmcourse.lab.cache import run_cached
    from llmcourse.demo.run import sft_recipe
    from llmcourse.finetune.sft import run as run_sft

    base = json.loads(cli("lab", "build", "--json", f"train.seed={seed}"))["path"]
    path, _ = run_cached("sft", sft_recipe(base, seed), run_sft)
    return str(path)


def guessing_parent(parent: str, skills: list[str], seed: int, both_ways: bool) -> str:
    """`parent` fine-tuned (200 steps at 1e-4, every weight) on its own answers to every other lab
    skill plus `skills`' questions answered at random (or `both_ways`): it answers them in their format, at chance."""
    from llmcourse.lab import skills as lab_skills
    from llmcourse.lab.cache import run_cached
    from llmcourse.demo.specialists import parent_replay
    from llmcourse.finetune.sft import run as run_sft
    from llmcourse.recipes.registry import load_command_recipe

    data = parent_replay(parent, [name for name in lab_skills.SKILLS if name not in skills], guessed=skills, both_ways=both_ways)
    recipe = load_command_recipe("sft", "lab/sft", [f"base_model={parent}", f"datasets=[{{path: '{data}', type: messages}}]", "max_steps=200",
                                                    "learning_rate=1e-4", "warmup_steps=10", "eval_lab_count=0", f"seed={seed}"], None)
    path, _ = run_cached("sft", recipe, run_sft)
    return str(path)


def specialist(parent: str, skill: str, args: argparse.Namespace, others: list[str]) -> str:
    """The parent fine-tuned further on one skill (the demo's recipe, cached in the lab cache), with
    the parent's own answers to every other lab skill replayed; the other specialists' skills
    (`others`) as `--other-skill` says. Every weight, or a LoRA adapter merged afterwards."""
    from llmcourse.lab.cache import run_cached
    from llmcourse.demo.specialists import other_skills, parent_replay, specialist_recipe
    from llmcourse.finetune.sft import run as run_sft

    data = None
    if args.replay:
        answered = [name for name in other_skills(skill) if args.other_skill == "parent" or name not in others]
        data = str(parent_replay(parent, answered, args.replay, guessed=others if args.other_skill == "guess" else [],
                                 both_ways=args.both_ways))
    recipe = specialist_recipe(parent, skill, args.steps, args.lr, args.lora_r, seed=args.seed, replay=data)
    path, _ = run_cached("sft", recipe, run_sft)
    return str(path / "merged" if args.lora_r else path)


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
    parser.add_argument("--other-skill", choices=("parent", "none", "guess"), default="parent",
                        help="the other specialist's skill in each replay: answered by the parent (the demo), left out, or answered at random")
    parser.add_argument("--guessing-parent", action="store_true",
                        help="start from the parent taught both skills' answer format at chance (200 steps at 1e-4)")
    parser.add_argument("--both-ways", action="store_true",
                        help="a guessed question is asked twice, with each of its two answers, instead of answered by a coin")
    parser.add_argument("--seed", type=int, default=0, help="seed of the base, the SFT model and the specialists (a spread variant's)")
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
    parent = parent_model(args.seed)
    if args.guessing_parent:
        parent = guessing_parent(parent, skills, args.seed, args.both_ways)
    experts = [specialist(parent, skill, args, [other for other in skills if other != skill]) for skill in skills]
    layers = json.loads((Path(parent) / "config.json").read_text())["num_hidden_layers"]
    parent_label = "parent (guessing)" if args.guessing_parent else "parent (SFT)"
    models = {parent_label: parent, f"specialist {skills[0]}": experts[0], f"specialist {skills[1]}": experts[1]}
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
    start = {skill: scores[parent_label][f"lab_{skill}"] for skill in skills}
    print(f"held-out exact match ({args.limit} questions per skill)")
    print(f"{'model':<22}" + "".join(f"{skill:>14}" for skill in skills) + "   kept (min over skills)   gain kept")
    results = {}
    for label, row in scores.items():
        kept = {skill: row[f"lab_{skill}"] / own[skill] if own[skill] else 0.0 for skill in skills}
        gain = {skill: (row[f"lab_{skill}"] - start[skill]) / (own[skill] - start[skill]) if own[skill] > start[skill] else 0.0 for skill in skills}
        results[label] = {"scores": {skill: row[f"lab_{skill}"] for skill in skills}, "kept": kept, "gain_kept": gain, "path": models[label]}
        print(f"{label:<22}" + "".join(f"{row[f'lab_{skill}']:>14.2f}" for skill in skills) + f"   {min(kept.values()):>22.1%}   {min(gain.values()):>9.1%}")
    merges = [label for label in results if label in MERGE_METHODS]
    best = max(merges, key=lambda label: min(results[label]["kept"].values()))
    print(f"best merge: {best}, keeps {min(results[best]['kept'].values()):.1%} of each specialist's own-skill score (goal >= 80 %)")
    if args.json:
        args.json.write_text(json.dumps({"settings": vars(args) | {"work": str(work), "json": str(args.json)}, "parent": parent,
                                         "results": results, "best": best}, indent=2) + "\n")


if __name__ == "__main__":
    main()
