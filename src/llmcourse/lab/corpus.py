"""The lab's pretraining corpus: skills written as plain Q/A text, plus filler prose.

Training documents come from the skills' train split; the held-out corpus (for perplexity) from
the held-out split and a different filler seed, so perplexity measures generalisation.
"""

from __future__ import annotations

import random

from llmcourse.lab import skills as lab_skills

ADJECTIVES = lab_skills.POSITIVE + lab_skills.NEGATIVE + ["small", "large", "old", "new", "red", "green", "quiet"]
VERBS = ["saw", "liked", "moved", "found", "cleaned", "painted", "carried", "opened", "closed", "visited"]
NAMES = ["Ada", "Ben", "Cleo", "Dan", "Eva", "Finn", "Gus", "Hana", "Ivo", "Juno"]


def filler_document(rng: random.Random) -> str:
    """A few sentences of simple prose, an alphabet run or a counting run."""
    kind = rng.random()
    if kind < 0.15:
        start = rng.randrange(0, 20)
        return " ".join("abcdefghijklmnopqrstuvwxyz"[start : start + rng.randint(4, 7)])
    if kind < 0.3:
        start = rng.randrange(0, 95)
        return " ".join(str(i) for i in range(start, start + rng.randint(3, 6)))
    sentences = []
    for _ in range(rng.randint(1, 3)):
        sentences.append(
            f"{rng.choice(NAMES)} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} {rng.choice(lab_skills.NOUNS)}."
        )
    return " ".join(sentences)


PRETRAIN_SKILLS = tuple(lab_skills.SKILLS)


def documents(
    split: str,
    num_documents: int,
    skills: tuple[str, ...] = PRETRAIN_SKILLS,
    skill_fraction: float = 0.8,
    seed: int = 0,
) -> list[str]:
    """`num_documents` corpus documents for `split` ("train" or "heldout"), deterministic in `seed`.

    Only `skills` appear in the corpus (by default every skill of `lab://all`).
    """
    names = list(skills)
    num_skill_docs = int(num_documents * skill_fraction)
    per_skill = -(-num_skill_docs // len(names))
    skill_docs = [
        lab_skills.as_text(ex)["text"]
        for ex in lab_skills.mixed(names, split, per_skill, seed=seed)
    ][:num_skill_docs]
    rng = random.Random(f"{seed}:filler:{split}")
    docs = skill_docs + [filler_document(rng) for _ in range(num_documents - len(skill_docs))]
    rng.shuffle(docs)
    return docs
