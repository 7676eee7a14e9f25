"""The lab merging experiment: two specialists, five merges, held-out exact match on both skills.

By default the best design measured (benchmarks/README.md), not the demo's: from the lab SFT model
(the demo's, reused from the lab cache), a parent taught both skills' answer format at chance (each
question asked twice, once with each answer); two specialists fine-tuned from it on one skill each
with the demo's recipe, replaying the parent's own answers to the other lab skills and the other
specialist's questions both ways; merged with linear, slerp, ties, dare_ties and task_arithmetic by
`llmcourse merge` (mergekit YAML, fixed seed), the task vectors taken against a common base (the
parent trained as each specialist is on the replay they share); then `llmcourse eval` scores the
parent, both specialists and every merge on the two skills' held-out questions (lm-eval, exact
match) in one report. Printed: each model's scores and, per merge, the share of each specialist's
own-skill score it keeps (goal: the best merge keeps >= 80 % of both) and the share of each
specialist's gain over the parent it keeps (what the merge carried over, whatever the parent
already guessed).

The demo's own design is `--parent sft --other-skill none --merge-base parent --lora-r 16 --lr 1e-3`
(the other specialist's skill left out of the replay; rank-16 LoRA specialists, without dropout as
the demo's; without the last two options, specialists of every weight: the demo's design before),
trained here one after the other with the default threads (the demo trains the two at once, one
thread each) and merged with every weight at `--weight` (the demo chooses task_arithmetic's two
weights on training questions). Other options: `--other-skill parent` (that skill
replayed as the parent answers it: the demo's design before lab data version 6), `--train head`
(specialists that train only the output layer), `--coin` (a guessed
question answered by a seeded coin instead of asked both ways), `--seed` (a spread variant's seed:
base, SFT and specialists; with `LLMCOURSE_HOME` set to that variant's lab cache, its own models
are reused).

    python benchmarks/merge_specialists.py [--skills topic,sign] [--steps 400] [--lr 1e-4] [--lora-r 0] [--train all|head]
        [--replay 500] [--parent format|sft] [--other-skill guess|parent|none] [--coin] [--merge-base common|parent]
        [--seed 0] [--weight 1.0] [--work DIR] [--json OUT.json]
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


FORMAT_STEPS = 200  # the format parent
LEARNING_RATE = 1.0e-4  # every weight: the specialists', the format parent's and the common base's


def replay_model(start: str, skills: list[str], steps: int, seed: int, both_ways: bool) -> str:
    """`start` fine-tuned with the shipped lab SFT recipe, `steps` at the demo specialists' rate, on
    its own answers to every lab skill but `skills`, plus `skills`' questions asked both ways (or
    answered by a coin); cached in the lab cache."""
    from llmcourse.demo.specialists import parent_replay
    from llmcourse.finetune.sft import run as run_sft
    from llmcourse.lab import skills as lab_skills
    from llmcourse.lab.cache import run_cached
    from llmcourse.recipes.registry import load_command_recipe

    data = parent_replay(start, [name for name in lab_skills.SKILLS if name not in skills], guessed=skills, both_ways=both_ways)
    recipe = load_command_recipe("sft", "lab/sft", [f"base_model={start}", f"datasets=[{{path: '{data}', type: messages}}]", f"max_steps={steps}",
                                                    f"learning_rate={LEARNING_RATE}", "warmup_steps=10", "eval_lab_count=0", f"seed={seed}"], None)
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
                                 both_ways=not args.coin))
    recipe = specialist_recipe(parent, skill, args.steps, args.lr, args.lora_r, seed=args.seed, replay=data,
                               unfrozen=["^lm_head.weight$"] if args.train == "head" else [])
    path, _ = run_cached("sft", recipe, run_sft)
    return str(path / "merged" if args.lora_r else path)


def main() -> None:
    """Build, merge, evaluate, print the table and the kept shares."""
    import yaml

    from llmcourse.demo.specialists import MERGE_METHODS, REPLAY_PER_SKILL, merge_configs

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skills", default="topic,sign", help="two lab skills, one per specialist")
    parser.add_argument("--steps", type=int, default=400, help="SFT steps per specialist")
    parser.add_argument("--lr", type=float, default=LEARNING_RATE, help="specialists' learning rate")
    parser.add_argument("--lora-r", type=int, default=0, help="train LoRA specialists of this rank (merged into the weights); 0: full")
    parser.add_argument("--train", choices=("all", "head"), default="all",
                        help="the specialists train every weight, or only the output layer (lm_head)")
    parser.add_argument("--replay", type=int, default=500,
                        help="questions of every other lab skill answered by the parent, mixed into each specialist's data (0: none)")
    parser.add_argument("--parent", choices=("format", "sft"), default="format",
                        help="the specialists' parent: the SFT model taught both skills' answer format at chance, or the SFT model (the demo)")
    parser.add_argument("--other-skill", choices=("guess", "parent", "none"), default="guess",
                        help="the other specialist's skill in each replay: guessed, answered by the parent (the demo), or left out")
    parser.add_argument("--coin", action="store_true",
                        help="a guessed question is answered by a seeded coin instead of asked twice, once with each answer")
    parser.add_argument("--merge-base", choices=("common", "parent"), default="common",
                        help="ties/dare_ties/task_arithmetic task vectors against the common base or the parent (the demo)")
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
    if args.merge_base == "common" and (args.other_skill != "guess" or args.replay != REPLAY_PER_SKILL or args.lr != LEARNING_RATE or args.lora_r
                                     or args.train != "all"):
        sys.exit("--merge-base common: the common base is trained as the specialists are (the demo's recipe), on their shared replay; "
                 "with another --other-skill, --replay, --lr, --lora-r or --train, add --merge-base parent")
    parent = parent_model(args.seed)
    if args.parent == "format":  # answers both skills in their format, at about chance
        parent = replay_model(parent, skills, FORMAT_STEPS, args.seed, both_ways=not args.coin)
    experts = [specialist(parent, skill, args, [other for other in skills if other != skill]) for skill in skills]
    # the common base: the parent trained as each specialist is, on the replay the two share
    base = parent if args.merge_base == "parent" else replay_model(parent, skills, args.steps, args.seed, both_ways=not args.coin)
    layers = json.loads((Path(parent) / "config.json").read_text())["num_hidden_layers"]
    parent_label = "parent (format)" if args.parent == "format" else "parent (SFT)"
    models = {parent_label: parent, f"specialist {skills[0]}": experts[0], f"specialist {skills[1]}": experts[1]}
    if base != parent:
        models["common base"] = base
    for method, config in merge_configs(base, *experts, layers, args.weight).items():
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
