"""The lab is deterministic, its splits are disjoint, and its tokenizer round-trips every skill string."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_cli
from llmcourse.lab import corpus, skills
from llmcourse.lab.model import init_model, llama_config
from llmcourse.lab.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(corpus.documents("train", 3000), vocab_size=512)


def test_same_seed_gives_identical_data() -> None:
    assert corpus.documents("train", 500, seed=3) == corpus.documents("train", 500, seed=3)
    assert corpus.documents("train", 500, seed=3) != corpus.documents("train", 500, seed=4)
    for name in skills.SKILLS:
        assert skills.examples(name, "train", 50, seed=1) == skills.examples(name, "train", 50, seed=1)


def test_same_texts_give_identical_tokenizer(tokenizer) -> None:
    again = train_tokenizer(corpus.documents("train", 3000), vocab_size=512)
    assert again.backend_tokenizer.to_str() == tokenizer.backend_tokenizer.to_str()
    assert len(tokenizer) == 512


def test_same_seed_gives_identical_initial_weights(tokenizer) -> None:
    import torch

    config = llama_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id,
                          hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1)
    first, second, other = init_model(config, 7).state_dict(), init_model(config, 7).state_dict(), init_model(config, 8).state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)


@pytest.mark.parametrize("name", [*skills.SKILLS, *skills.EXTRA_SKILLS])
def test_train_and_heldout_keys_are_disjoint(name: str) -> None:
    train = {ex.question for ex in skills.examples(name, "train", 3000)}
    heldout = skills.examples(name, "heldout", 200)
    assert heldout, "every skill has held-out questions"
    assert len({ex.question for ex in heldout}) == len(heldout), "held-out questions are unique"
    assert not train & {ex.question for ex in heldout}


@pytest.mark.parametrize("name", [*skills.SKILLS, *skills.EXTRA_SKILLS])
def test_answers_are_exact_and_rejected_answers_differ(name: str) -> None:
    for ex in skills.examples(name, "train", 200):
        assert ex.answer and ex.rejected and ex.answer != ex.rejected
    sample = skills.examples(name, "train", 1)[0]
    if name == "add":
        a, b = [int(t) for t in sample.question.removeprefix("What is ").removesuffix("?").split(" plus ")]
        assert sample.answer == str(a + b)
    if name == "parity":
        n = int(sample.question.split()[1])
        assert sample.answer == ("even" if n % 2 == 0 else "odd")



@pytest.mark.parametrize("name", list(skills.SKILLS))
def test_preference_pairs_reject_each_answer_as_often_as_they_choose_it(name: str) -> None:
    # A skewed pair set teaches DPO to avoid an answer, not a mistake: when `count` rejected "four"
    # more often than it chose it, DPO's count exact match fell from 0.93 to 0.85, all on four words.
    from collections import Counter

    pairs = skills.examples(name, "train", 3000)
    chosen, rejected = Counter(ex.answer for ex in pairs), Counter(ex.rejected for ex in pairs)
    assert set(rejected) <= set(chosen), "every rejected answer is a right answer elsewhere"
    for answer, times in chosen.items():
        assert abs(rejected[answer] - times) <= 0.25 * times, (answer, times, rejected[answer])


def test_skills_answer_with_words_no_other_skill_uses() -> None:
    # Merged specialists answer with whichever skill's words their task vectors push: when `sign`
    # answered positive / negative like `sentiment`, merges answered topic questions with "negative".
    vocabularies = {name: {ex.answer for ex in skills.examples(name, "train", 500)} for name in skills.SKILLS}
    for name, words in vocabularies.items():
        others = set().union(*(v for other, v in vocabularies.items() if other != name))
        assert not words & others, (name, words & others)

def test_tokenizer_round_trips_every_skill_string(tokenizer) -> None:
    strings = []
    for name in skills.SKILLS:
        for split in skills.SPLITS:
            for ex in skills.examples(name, split, 300):
                strings += [ex.question, ex.answer, ex.rejected, skills.as_text(ex)["text"]]
    for text in strings:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_chat_tokens_are_single_special_tokens(tokenizer) -> None:
    for token in ("<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|pad|>"):
        ids = tokenizer(token, add_special_tokens=False)["input_ids"]
        assert len(ids) == 1 and tokenizer.convert_ids_to_tokens(ids[0]) == token


def test_formats_carry_the_same_example() -> None:
    ex = skills.examples("sentiment", "train", 1)[0]
    assert skills.as_messages(ex)["messages"][1]["content"] == ex.answer
    assert skills.as_alpaca(ex)["output"] == ex.answer
    pair = skills.as_preference(ex)
    assert (pair["chosen"], pair["rejected"]) == (ex.answer, ex.rejected)


def test_lab_export_writes_every_skill_format_and_split(tmp_path: Path) -> None:
    dest = tmp_path / "lab-data"
    result = run_cli("lab", "export", str(dest), "--count", "40")
    assert result.returncode == 0, result.stderr
    for name in skills.SKILLS:
        for split in skills.SPLITS:
            for fmt in skills.FORMATS:
                rows = [json.loads(line) for line in (dest / name / f"{split}.{fmt}.jsonl").read_text().splitlines()]
                assert rows, f"{name}/{split}.{fmt}"
    train_prompts = {json.loads(l)["prompt"] for l in (dest / "parity" / "train.preference.jsonl").read_text().splitlines()}
    held_prompts = {json.loads(l)["prompt"] for l in (dest / "parity" / "heldout.preference.jsonl").read_text().splitlines()}
    assert not train_prompts & held_prompts
    assert (dest / "corpus.train.txt").stat().st_size > 0


CACHED_RUN = """
import json, os, sys, time
from pathlib import Path
from llmcourse.lab.cache import run_cached
from llmcourse.recipes.registry import load_command_recipe

def runner(recipe, overwrite):
    with open(sys.argv[1], "a") as log:
        log.write(f"{os.getpid()}\\n")
    time.sleep(2)  # long enough for the other process to arrive while this one builds
    Path(recipe.output_dir).mkdir(parents=True)
    (Path(recipe.output_dir) / "report.json").write_text("{}")

path, built = run_cached("sft", load_command_recipe("sft", "lab/sft", [], None), runner)
print(json.dumps([str(path), built]))
"""


def test_two_processes_wanting_one_stage_build_it_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    log = tmp_path / "runs.log"
    env = {**os.environ, "LLMCOURSE_HOME": str(tmp_path / "home")}
    processes = [subprocess.Popen([sys.executable, "-c", CACHED_RUN, str(log)], env=env, stdout=subprocess.PIPE, text=True)
                 for _ in range(2)]
    results = [json.loads(process.communicate(timeout=120)[0]) for process in processes]
    assert len(log.read_text().splitlines()) == 1, "the second process waited and reused the first one's folder"
    assert results[0][0] == results[1][0] and sorted(built for _, built in results) == [False, True]
