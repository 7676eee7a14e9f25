"""Synthetic skills with exact answers, split into disjoint train and held-out sets.

Each skill draws a *key* (the thing the question is about: a number, a word, a review) and the
split is a stable hash of that key, so no held-out question is ever seen in training, by any
format (chat, alpaca, preference pairs, plain text for pretraining).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from typing import Callable, Iterator

from llmcourse.core.errors import UserError, did_you_mean

HELDOUT_PERCENT = 20
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
POSITIVE = ["good", "great", "lovely", "fresh", "friendly", "tasty", "clean", "quick", "bright", "calm", "warm", "perfect"]
NEGATIVE = ["bad", "awful", "rude", "stale", "dirty", "slow", "noisy", "broken", "cold", "boring", "late", "terrible"]
NOUNS = ["food", "room", "staff", "view", "bed", "coffee", "music", "service", "garden", "bread", "train", "shop"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


@dataclass(frozen=True)
class Example:
    """One question with its exact answer and a plausible wrong answer (for preference pairs)."""

    skill: str
    question: str
    answer: str
    rejected: str


@dataclass(frozen=True)
class Skill:
    """A named generator of (key, question, answer, rejected) tuples."""

    name: str
    description: str
    draw: Callable[[random.Random], tuple[str, str, str, str]]


def pseudo_word(rng: random.Random, syllables: int) -> str:
    """A pronounceable made-up word such as `bakitu`."""
    return "".join(rng.choice(CONSONANTS) + rng.choice(VOWELS) for _ in range(syllables))


def _parity(rng: random.Random) -> tuple[str, str, str, str]:
    n = rng.randrange(0, 10000)
    answer = "even" if n % 2 == 0 else "odd"
    return str(n), f"Is {n} even or odd?", answer, "odd" if answer == "even" else "even"


def _sentiment(rng: random.Random) -> tuple[str, str, str, str]:
    positive = rng.random() < 0.5
    adjectives = rng.sample(POSITIVE if positive else NEGATIVE, 2)
    nouns = rng.sample(NOUNS, 2)
    review = f"The {nouns[0]} was {adjectives[0]} and the {nouns[1]} was {adjectives[1]}."
    answer, wrong = ("positive", "negative") if positive else ("negative", "positive")
    return review, f"Is this review positive or negative? {review}", answer, wrong


def _first_letter(rng: random.Random) -> tuple[str, str, str, str]:
    word = pseudo_word(rng, rng.randint(2, 3))
    return word, f"What is the first letter of {word}?", word[0], word[1]


def _count(rng: random.Random) -> tuple[str, str, str, str]:
    words = [pseudo_word(rng, 1) for _ in range(rng.randint(1, 5))]
    text = " ".join(words)
    n = len(words)
    # One more or one fewer, wrapping around (one <-> five), so that every number word is a wrong
    # answer exactly as often as a right one: with the ends clamped (one -> two, five -> four) the
    # preference pairs rejected "two" and "four" more often than they chose them, and DPO learned to
    # avoid "four" (count 0.93 -> 0.85 on one seed, all of it on four-word lists).
    wrong = n % 5 + 1 if rng.random() < 0.5 else (n - 2) % 5 + 1
    return text, f"How many words are in: {text}?", NUMBER_WORDS[n], NUMBER_WORDS[wrong]


def _larger(rng: random.Random) -> tuple[str, str, str, str]:
    a, b = rng.sample(range(100), 2)
    return f"{a},{b}", f"Which is larger, {a} or {b}?", str(max(a, b)), str(min(a, b))


def _last_letter(rng: random.Random) -> tuple[str, str, str, str]:
    word = pseudo_word(rng, rng.randint(2, 3)) + (rng.choice(CONSONANTS) if rng.random() < 0.5 else "")
    return word, f"What is the last letter of {word}?", word[-1], word[-2]


def _add(rng: random.Random) -> tuple[str, str, str, str]:
    a, b = rng.randrange(10), rng.randrange(10)
    total = a + b
    wrong = total + rng.choice([-1, 1]) if total > 0 else 1
    return f"{a}+{b}", f"What is {a} plus {b}?", str(total), str(wrong)


FOODS = ["bread", "coffee", "tea", "soup", "cake", "rice", "fish", "salad", "pie", "juice", "cheese", "pasta"]
PLACES = ["room", "garden", "shop", "park", "hall", "beach", "station", "kitchen", "office", "hotel", "street", "museum"]


def _topic(rng: random.Random) -> tuple[str, str, str, str]:
    food = rng.random() < 0.5
    noun = rng.choice(FOODS if food else PLACES)
    adjectives = rng.sample(POSITIVE + NEGATIVE, 2)
    sentence = f"The {noun} was {adjectives[0]} and {adjectives[1]}."
    # `meal` / `location`: no other skill's answer starts with the same token in chat form, where the
    # lab tokenizer spells answers in pieces (`place` began like `positive`; measured: merges of the
    # two specialists then answered sign questions with "place").
    answer, wrong = ("meal", "location") if food else ("location", "meal")
    return sentence, f"Is this about a meal or a location? {sentence}", answer, wrong


def _sign(rng: random.Random) -> tuple[str, str, str, str]:
    n = rng.randrange(1, 1000) * (1 if rng.random() < 0.5 else -1)
    # `above` / `below` zero, not `positive` / `negative`: those are sentiment's answers, and topic's
    # sentences are full of sentiment words, so a sign specialist's task vector pulled merged models
    # to answer topic questions with "negative" (measured: best merge of the two specialists 43-83 %).
    answer, wrong = ("above", "below") if n > 0 else ("below", "above")
    return str(n), f"Is {n} above or below zero?", answer, wrong


# The lab's skills (`lab://all`): all in the pretraining corpus, and all learned thoroughly by the
# lab model on every machine measured (benchmarks/lab_spread.py); the demo's SFT teaches the first
# three in chat form and leaves topic and sign to the merging experiment's two specialists.
SKILLS: dict[str, Skill] = {
    skill.name: skill
    for skill in [
        Skill("parity", "is a number even or odd", _parity),
        Skill("sentiment", "is a short review positive or negative", _sentiment),
        Skill("count", "how many words are in a list (one to five)", _count),
        Skill("topic", "is a sentence about a meal or a location", _topic),
        Skill("sign", "is a number above or below zero", _sign),
    ]
}
# Offered by name (lab://larger, lab://first_letter+add) but not part of lab://all: copying a letter
# or comparing two numbers is half-learned by a model this small in the lab's budget, and such a
# skill's score swings between machines (see the lab spread table in README.md).
EXTRA_SKILLS: dict[str, Skill] = {
    skill.name: skill
    for skill in [
        Skill("first_letter", "the first letter of a made-up word", _first_letter),
        Skill("larger", "the larger of two numbers below 100", _larger),
        Skill("last_letter", "the last letter of a made-up word", _last_letter),
        Skill("add", "the sum of two single digits", _add),
    ]
}
SPLITS = ("train", "heldout")


def get_skill(name: str) -> Skill:
    """Look up a skill by name, with a clear error listing the valid ones."""
    known = {**SKILLS, **EXTRA_SKILLS}
    if name not in known:
        raise UserError(
            f"unknown lab skill '{name}'{did_you_mean(name, known)}",
            hint=f"lab skills: {', '.join(known)} (or lab://all)",
        )
    return known[name]


def split_of(skill: str, key: str) -> str:
    """The split a key belongs to, stable across runs, machines and Python versions."""
    digest = hashlib.sha256(f"{skill}:{key}".encode()).digest()
    return "heldout" if int.from_bytes(digest[:4], "big") % 100 < HELDOUT_PERCENT else "train"


def examples(skill: str, split: str, count: int, seed: int = 0, unique: bool | None = None) -> list[Example]:
    """`count` examples of one skill from one split; held-out examples are unique by default.

    Fewer are returned when a split has fewer distinct keys than asked for (e.g. `add`).
    """
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}'", hint=f"splits: {', '.join(SPLITS)}")
    spec = get_skill(skill)
    unique = split == "heldout" if unique is None else unique
    rng = random.Random(f"{seed}:{skill}:{split}")
    seen: set[str] = set()
    result: list[Example] = []
    misses = 0
    while len(result) < count and misses < 20 * count + 1000:
        key, question, answer, rejected = spec.draw(rng)
        if split_of(skill, key) != split or (unique and key in seen):
            misses += 1
            continue
        seen.add(key)
        result.append(Example(skill, question, answer, rejected))
    return result


def mixed(skills: list[str], split: str, count_per_skill: int, seed: int = 0) -> list[Example]:
    """Examples of several skills, interleaved deterministically."""
    rows = [ex for name in skills for ex in examples(name, split, count_per_skill, seed)]
    random.Random(f"{seed}:mix:{split}").shuffle(rows)
    return rows


def as_messages(example: Example) -> dict:
    """Chat format: a user turn and the assistant's exact answer."""
    return {"messages": [{"role": "user", "content": example.question}, {"role": "assistant", "content": example.answer}]}


def as_alpaca(example: Example) -> dict:
    """Alpaca format: instruction / input / output."""
    return {"instruction": example.question, "input": "", "output": example.answer}


def as_preference(example: Example) -> dict:
    """Preference pair: chosen is the exact answer, rejected a plausible wrong one."""
    return {"prompt": example.question, "chosen": example.answer, "rejected": example.rejected}


def plain_prompt(question: str) -> str:
    """The plain-text prompt a base model sees in pretraining (no chat template)."""
    return f"Q: {question}\nA:\n"


def as_text(example: Example) -> dict:
    """Plain text, the way skills appear in the pretraining corpus: the answer on a line of its own,
    so that it is spelled with the same tokens as a chat answer, which starts after a newline too."""
    return {"text": f"{plain_prompt(example.question)}{example.answer}"}


FORMATS: dict[str, Callable[[Example], dict]] = {
    "messages": as_messages,
    "alpaca": as_alpaca,
    "preference": as_preference,
    "text": as_text,
}


def iter_skill_names(spec: str) -> Iterator[str]:
    """Expand `all` or a `+`-joined list such as `parity+add` into skill names."""
    names = list(SKILLS) if spec == "all" else spec.split("+")
    for name in names:
        get_skill(name)
        yield name
