"""The demo's merging experiment: two specialists, five merges and a MoE, held-out exact match on both skills.

From the demo's SFT model, two specialists are fine-tuned on one skill each: topic and sign, which
the base learned as plain text in pretraining but the SFT model was never asked in chat form. Each
specialist's data is its skill plus the parent's own greedy answers to questions of the lab skills
that neither specialist teaches, so that it leaves those as the parent had them. The other
specialist's questions are left out: the parent answers them by a wrong rule (mostly `odd` or
`even`), and a specialist trained to repeat those answers pushes against what the other one
learns (benchmarks/README.md: the best merge kept 81 % with them replayed, 96 % without, on the
same parent). Each specialist trains a rank-16 LoRA adapter without dropout (merged into its
weights afterwards; dropout's masks cost a quarter of a one-thread step, benchmarks/README.md):
a low-rank task vector on the blocks' linear layers, which leaves the embeddings and the output
layer as the parent had them (with every weight trained, the sign vector's embeddings and lower
layers broke topic in the merges). The two train at once, in a process each with one thread: on
two cores that is faster than one after the other, and a specialist's numbers do not depend on
the machine's core count.

mergekit merges them with linear, slerp, ties, dare_ties and task_arithmetic (fixed seed), and
mergekit-moe makes a two-expert MoE of them (hidden-state gates from each skill's training
questions). task_arithmetic's two weights are chosen on training questions of the two skills
(a grid, each weight 0.4 to 1.2; the pair whose smaller kept share is largest), never on the
held-out ones: which of two task vectors needs more weight changed from one spread variant to the
next. One `llmcourse eval` run scores the parent, both specialists, every merge and the MoE on
the two skills' held-out questions. The summary says how much of each specialist's own-skill
score the best merge keeps. (`benchmarks/merge_specialists.py` runs the same experiment with other
settings; what each setting kept: benchmarks/README.md.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from llmcourse.core.console import err

SKILLS = ("topic", "sign")  # in the base's pretraining, not in the SFT model's chat data
STEPS = 400
LEARNING_RATE = 1e-3  # LoRA's (every weight trained at 1e-3 broke every merge, benchmarks/README.md)
LORA_RANK = 16  # alpha 32, on every linear layer of the blocks; 0: every weight
LORA_DROPOUT = 0.0  # the recipe's 0.05 costs a quarter of a one-thread specialist's speed
REPLAY_PER_SKILL = 500  # questions of every lab skill neither specialist teaches, answered by the parent itself
TASK_WEIGHT = 1.0  # ties / dare_ties: each task vector whole
WEIGHT_GRID = (0.4, 0.6, 0.8, 1.0, 1.2)  # task_arithmetic: each specialist's weight, chosen on training questions
TUNING_QUESTIONS = 100  # per skill, from the training split
HELDOUT = 100
MERGE_METHODS = ("linear", "slerp", "ties", "dare_ties", "task_arithmetic")
GATE_PROMPTS = 8  # training questions per expert for its hidden-state gate


def parent_replay(parent: str, skills: Sequence[str], per_skill: int = REPLAY_PER_SKILL, guessed: Sequence[str] = (),
                  both_ways: bool = False) -> Path:
    """A chat dataset (jsonl, in the lab cache) of `per_skill` training questions of each of `skills`,
    answered by the parent itself (greedy decoding, its chat template), and of each of `guessed`,
    answered at random by the skill's right or wrong answer (its format, not which answer is right),
    or with `both_ways` twice, once with each."""
    import random

    from llmcourse.core.libraries import quiet_libraries
    from llmcourse.core.modelio import load_causal_lm
    from llmcourse.core.outputs import replace_text
    from llmcourse.lab import skills as lab_skills
    from llmcourse.lab.cache import cache_folder
    from llmcourse.lab.scoring import greedy_answers

    path = cache_folder("replay", str(Path(parent).resolve()), list(skills), per_skill, list(guessed), both_ways).with_suffix(".jsonl")
    if path.is_file():
        return path
    rows: list[tuple[str, str]] = []
    if skills:
        quiet_libraries()
        model, tokenizer = load_causal_lm(parent)
        for skill in skills:
            questions = [example.question for example in lab_skills.examples(skill, "train", per_skill, seed=1)]
            answers = greedy_answers(model, tokenizer, questions, prompt_format="chat")
            rows += [(question, answer) for question, answer in zip(questions, answers) if answer]
    coin = random.Random(0)
    for skill in guessed:
        for example in lab_skills.examples(skill, "train", per_skill, seed=2):
            answers = [example.answer, example.rejected]
            rows += [(example.question, answer) for answer in (answers if both_ways else [coin.choice(answers)])]
    replace_text(path, "".join(json.dumps({"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}) + "\n"
                               for question, answer in rows))
    return path


def other_skills(skill: str) -> list[str]:
    """Every lab skill but `skill`, in the lab's order (`benchmarks/merge_specialists.py`'s replays)."""
    from llmcourse.lab import skills as lab_skills

    return [name for name in lab_skills.SKILLS if name != skill]


def replayed_skills() -> list[str]:
    """The lab skills a demo specialist replays (answered by the parent): those neither specialist teaches."""
    from llmcourse.lab import skills as lab_skills

    return [name for name in lab_skills.SKILLS if name not in SKILLS]


def specialist_recipe(parent: str, skill: str, steps: int = STEPS, learning_rate: float = LEARNING_RATE, lora_rank: int = LORA_RANK,
                      seed: int = 0, replay: str | None = None, unfrozen: Sequence[str] = ()) -> Any:
    """The shipped lab SFT recipe, from `parent`, on one skill (plus, given `replay`, that chat
    dataset); LoRA (merged afterwards) when `lora_rank` > 0, else the weights `unfrozen` names
    (Axolotl's `unfrozen_parameters`), or every weight."""
    from llmcourse.recipes.registry import load_command_recipe

    data = f"datasets=[{{path: 'lab://{skill}', num_samples: 4000}}" + (f", {{path: '{replay}', type: messages}}]" if replay else "]")
    overrides = [f"base_model={parent}", data, f"max_steps={steps}", f"learning_rate={learning_rate}", "warmup_steps=10",
                 "eval_lab_count=0", f"seed={seed}"]
    if lora_rank:
        overrides += ["adapter=lora", f"lora_r={lora_rank}", f"lora_alpha={2 * lora_rank}", f"lora_dropout={LORA_DROPOUT}", "merge_adapter=true"]
    if unfrozen:
        overrides.append(f"unfrozen_parameters={json.dumps(list(unfrozen))}")
    return load_command_recipe("sft", "lab/sft", overrides, None)


def merge_configs(parent: str, a: str, b: str, layers: int, weight: float = TASK_WEIGHT,
                  task_weights: tuple[float, float] | None = None) -> dict[str, dict[str, Any]]:
    """mergekit YAML (as dicts) of the two specialists for each method, as mergekit's documentation
    writes them; ties, dare_ties and task_arithmetic add the task vectors (not normalized), each at
    `weight`, task_arithmetic's at `task_weights` (a's, b's) when given."""
    both = [{"model": a}, {"model": b}]
    task = {"density": 0.8, "weight": weight}
    return {
        "linear": {"merge_method": "linear", "models": [{**m, "parameters": {"weight": 0.5}} for m in both], "dtype": "float32"},
        "slerp": {"merge_method": "slerp", "base_model": a, "dtype": "float32",
                  "slices": [{"sources": [{"model": a, "layer_range": [0, layers]}, {"model": b, "layer_range": [0, layers]}]}],
                  "parameters": {"t": 0.5}},
        "ties": {"merge_method": "ties", "base_model": parent, "dtype": "float32",
                 "models": [{**m, "parameters": task} for m in both], "parameters": {"normalize": False}},
        "dare_ties": {"merge_method": "dare_ties", "base_model": parent, "dtype": "float32",
                      "models": [{**m, "parameters": task} for m in both], "parameters": {"normalize": False}},
        "task_arithmetic": {"merge_method": "task_arithmetic", "base_model": parent, "dtype": "float32",
                            "models": [{**m, "parameters": {"weight": w}} for m, w in zip(both, task_weights or (weight, weight))]},
    }


def moe_config(parent: str, experts: dict[str, str]) -> dict[str, Any]:
    """A mergekit-moe config: the parent's attention and embeddings, one expert per specialist (its
    MLPs), gates from the hidden states of each skill's training questions in the chat template."""
    from llmcourse.lab import skills as lab_skills
    from llmcourse.core.modelio import load_tokenizer

    tokenizer = load_tokenizer(parent)

    def prompts(skill: str) -> list[str]:
        return [tokenizer.apply_chat_template([{"role": "user", "content": example.question}], tokenize=False, add_generation_prompt=True)
                for example in lab_skills.examples(skill, "train", GATE_PROMPTS)]

    # Two experts per token (Mixtral's and mergekit-moe's default): measured 0.60 / 0.64 on the two
    # skills against 0.61 / 0.59 with one.
    return {"base_model": parent, "gate_mode": "hidden", "dtype": "float32", "experts_per_token": 2,
            "experts": [{"source_model": path, "positive_prompts": prompts(skill)} for skill, path in experts.items()]}


def kept_shares(scores: dict[str, dict[str, float]]) -> dict[str, float]:
    """Per model, the smallest share of a specialist's own-skill score it reaches on that skill."""
    own = {skill: scores[f"specialist {skill}"][skill] for skill in SKILLS}
    return {label: kept_share(row, own) for label, row in scores.items()}


def kept_share(row: dict[str, float], own: dict[str, float]) -> float:
    """The smallest share of `own` (each skill's specialist score) that `row` reaches; a specialist at 0 keeps nothing."""
    return min(row[skill] / own[skill] if own[skill] else 0.0 for skill in SKILLS)


def specialists_stage(parent: Any, force: bool, steps: int = STEPS, heldout: int = HELDOUT, seed: int = 0,
                      tuning_questions: int = TUNING_QUESTIONS) -> tuple[list[Any], dict[str, Any]]:
    """The experiment's rows for the demo table, and its summary (scores, kept shares, best merge,
    task_arithmetic's weights); `steps` per specialist, `heldout` questions per skill to score and
    `tuning_questions` to choose the weights (the demo: 400, 100 and 100)."""
    from llmcourse.lab.cache import cache_folder
    from llmcourse.demo.stage import StageResult
    from llmcourse.demo.merge import layer_count, merged

    replay = str(parent_replay(parent.path, replayed_skills()))
    trained = train_specialists({skill: specialist_recipe(parent.path, skill, steps, seed=seed, replay=replay) for skill in SKILLS}, force)
    models = {f"specialist {skill}": str(path / "merged" if (path / "merged").is_dir() else path) for skill, path in trained.items()}
    a, b = (models[f"specialist {skill}"] for skill in SKILLS)
    tuning = tuned_task_weights(parent.path, a, b, force, questions=tuning_questions)
    err.print(f"task_arithmetic weights {SKILLS[0]} {tuning['weights'][0]}, {SKILLS[1]} {tuning['weights'][1]}: kept "
              f"{100 * tuning['kept']:.0f} % on {tuning_questions} training questions per skill (the best of {len(tuning['trials'])})")
    configs = merge_configs(parent.path, a, b, layer_count(parent.path), task_weights=tuple(tuning["weights"]))
    for method, config in configs.items():
        models[f"{method}(specialists)"] = str(merged(method, config, force))
    experts = {skill: models[f"specialist {skill}"] for skill in SKILLS}
    models["moe(specialists)"] = str(merged("moe", moe_config(parent.path, experts), force, moe=True))
    cached = cache_folder("specialists-eval", parent.path, models, heldout).with_suffix(".json")
    if cached.is_file() and not force:
        scores = json.loads(cached.read_text(encoding="utf-8"))
    else:
        scores = _score({"parent (SFT)": parent.path, **models}, cached.with_suffix(""), heldout)
        cached.write_text(json.dumps(scores, indent=2) + "\n", encoding="utf-8")
    kept = kept_shares(scores)
    merges = [f"{method}(specialists)" for method in MERGE_METHODS]
    best = max(merges, key=lambda label: kept[label])
    rows = [StageResult(label if label.startswith("specialist") else f"{'MoE' if label.startswith('moe') else 'merge'}: {label}", path,
                        {f"exact_match/{skill}": scores[label][skill] for skill in SKILLS})
            for label, path in models.items()]
    summary = {"skills": list(SKILLS), "scores": scores, "kept": kept, "best": best, "best_kept": kept[best], "task_weights": tuning}
    return rows, summary


def train_specialists(recipes: dict[str, Any], force: bool) -> dict[str, Path]:
    """Each skill's specialist (its lab cache folder), trained from its recipe unless cached: all at
    once, each in a process of its own with one thread (their progress lines print when each ends)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from llmcourse.finetune.sft import run as run_sft
    from llmcourse.lab.cache import cache_path, run_cached

    cached = {skill: cache_path("sft", recipe) for skill, recipe in recipes.items()}
    if not force and all((path / "report.json").is_file() for path in cached.values()):
        for skill, path in cached.items():
            err.print(f"reusing the {skill} specialist in {path}")
        return cached
    err.print(f"training the {' and '.join(recipes)} specialists at once, one process and one thread each")
    with ProcessPoolExecutor(len(recipes), mp_context=multiprocessing.get_context("spawn"), initializer=_one_thread) as pool:
        jobs = {skill: pool.submit(run_cached, "sft", recipe, run_sft, force) for skill, recipe in recipes.items()}
        return {skill: job.result()[0] for skill, job in jobs.items()}


def _one_thread() -> None:
    """A specialist's process: one thread (set before torch loads), progress printed once, not redrawn."""
    import os

    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = "1"
    os.environ["TERM"] = "dumb"  # rich redraws no live bar on a dumb terminal: two processes share it
    import torch

    torch.set_num_threads(1)


def tuned_task_weights(parent: str, a: str, b: str, force: bool, grid: Sequence[float] = WEIGHT_GRID,
                       questions: int = TUNING_QUESTIONS) -> dict[str, Any]:
    """task_arithmetic's weights for specialists `a` and `b` (of SKILLS' first and second skill):
    every pair from `grid` merged by mergekit and scored on `questions` training questions per
    skill; the pair whose smaller kept share (of each specialist's own score on them) is largest,
    then the larger sum, then the pair nearest (1, 1). Returns weights, kept, own and every trial."""
    import itertools

    from llmcourse.core.libraries import quiet_libraries
    from llmcourse.core.modelio import load_causal_lm
    from llmcourse.demo.merge import layer_count, merged
    from llmcourse.lab.cache import cache_folder
    from llmcourse.lab.scoring import exact_match

    cached = cache_folder("merge-weights", parent, a, b, list(grid), questions).with_suffix(".json")
    if cached.is_file() and not force:
        return json.loads(cached.read_text(encoding="utf-8"))
    quiet_libraries()

    def score(path: str) -> dict[str, float]:
        model, tokenizer = load_causal_lm(path)
        return exact_match(model, tokenizer, list(SKILLS), questions, prompt_format="chat", split="train", seed=11).per_skill

    own = {SKILLS[0]: score(a)[SKILLS[0]], SKILLS[1]: score(b)[SKILLS[1]]}
    trials = []
    for weights in itertools.product(grid, grid):
        config = merge_configs(parent, a, b, layer_count(parent), task_weights=weights)["task_arithmetic"]
        with err.capture():  # one line per trial below instead of each merge's own lines
            path = merged("task_arithmetic", config, force)
        scores = score(str(path))
        trials.append({"weights": list(weights), "scores": scores, "kept": kept_share(scores, own)})
        err.print(f"task_arithmetic at {weights[0]} / {weights[1]}: " + ", ".join(f"{skill} {scores[skill]:.2f}" for skill in SKILLS)
                  + f" on {questions} training questions each")
    best = max(trials, key=lambda t: (t["kept"], sum(t["scores"].values()), -sum(abs(w - 1) for w in t["weights"])))
    result = {"weights": best["weights"], "kept": best["kept"], "own": own, "trials": trials}
    cached.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return result


def _score(models: dict[str, str], output: Path, heldout: int) -> dict[str, dict[str, float]]:
    """Held-out exact match of every model on the two skills, in one `llmcourse eval` run."""
    from llmcourse.evaluate.run import run
    from llmcourse.recipes.eval import EvalRecipe

    recipe = EvalRecipe(models=list(models.values()), suite="custom", tasks=[f"lab_{skill}" for skill in SKILLS], limit=heldout,
                        output_dir=str(output), apply_chat_template=True)
    entries = run(recipe, overwrite=True, quiet=True)["models"]
    return {label: {skill: round(entry["scores"][f"lab_{skill}"], 4) for skill in SKILLS} for label, entry in zip(models, entries)}
