"""Measurements on the lab: held-out exact match per skill and perplexity on held-out text."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

from llmcourse.core.chat_templates import end_of_turn_ids
from llmcourse.core.errors import UserError, choose
from llmcourse.lab import corpus as lab_corpus
from llmcourse.lab import skills as lab_skills

PromptFormat = Literal["auto", "chat", "plain"]


@dataclass
class ExactMatch:
    """Exact-match accuracy per skill, with a few examples of what the model answered."""

    per_skill: dict[str, float]
    counts: dict[str, int]
    samples: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        """Unweighted mean over skills."""
        return sum(self.per_skill.values()) / max(len(self.per_skill), 1)


def build_prompt(tokenizer: Any, question: str, prompt_format: PromptFormat = "auto") -> str:
    """The prompt for one question: the chat template if the tokenizer has one, else plain Q/A."""
    use_chat = prompt_format == "chat" or (prompt_format == "auto" and getattr(tokenizer, "chat_template", None))
    if use_chat:
        messages = [{"role": "user", "content": question}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return lab_skills.plain_prompt(question)


def clean_answer(text: str) -> str:
    """The first line of a generated answer, stripped: what exact match compares."""
    return text.strip().split("\n")[0].strip()


def greedy_answers(model: Any, tokenizer: Any, questions: list[str], batch_size: int = 64, prompt_format: PromptFormat = "auto",
                   max_new_tokens: int = 8) -> list[str]:
    """The model's greedy answer to each question (its first line, stripped), decoded in batches."""
    import torch

    answers: list[str] = []
    padding_side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    try:
        for start in range(0, len(questions), batch_size):
            prompts = [build_prompt(tokenizer, question, prompt_format) for question in questions[start : start + batch_size]]
            enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
            with torch.no_grad():
                out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad_id,
                                     eos_token_id=end_of_turn_ids(tokenizer))
            answers += [clean_answer(text) for text in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)]
    finally:
        tokenizer.padding_side = padding_side
    return answers


def exact_match(
    model: Any,
    tokenizer: Any,
    skill_names: list[str],
    count: int = 100,
    batch_size: int = 64,
    prompt_format: PromptFormat = "auto",
    max_new_tokens: int = 8,
    split: str = "heldout",
    seed: int = 0,
) -> ExactMatch:
    """Greedy-decode answers to `count` distinct questions per skill of `split` (held-out by
    default; `seed` draws them) and compare exactly."""
    per_skill: dict[str, float] = {}
    counts: dict[str, int] = {}
    samples: dict[str, list[tuple[str, str, str]]] = {}
    for name in skill_names:
        rows = lab_skills.examples(name, split, count, seed=seed, unique=True)
        answers = greedy_answers(model, tokenizer, [ex.question for ex in rows], batch_size, prompt_format, max_new_tokens)
        per_skill[name] = sum(answer == ex.answer for ex, answer in zip(rows, answers)) / max(len(rows), 1)
        counts[name] = len(rows)
        samples[name] = [(ex.question, ex.answer, answer) for ex, answer in list(zip(rows, answers))[:3]]
    return ExactMatch(per_skill, counts, samples)



def token_blocks(tokenizer: Any, texts: list[str], block_size: int) -> Any:
    """Concatenate `texts` (each followed by EOS) and cut into `[n, block_size]` token blocks."""
    import torch

    ids: list[int] = []
    eos = tokenizer.eos_token_id
    for encoded in tokenizer(texts, add_special_tokens=False)["input_ids"]:
        ids.extend(encoded)
        if eos is not None:
            ids.append(eos)
    usable = len(ids) // block_size * block_size
    return torch.tensor(ids[:usable], dtype=torch.long).view(-1, block_size)


def perplexity(model: Any, blocks: Any, batch_size: int = 16) -> float:
    """Perplexity of `model` on token blocks (mean next-token loss over all blocks, exponentiated)."""
    import torch

    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    with torch.no_grad():
        for start in range(0, blocks.shape[0], batch_size):
            batch = blocks[start : start + batch_size].to(model.device)
            loss = model(input_ids=batch, labels=batch).loss
            count = batch.shape[0] * (batch.shape[1] - 1)
            total += loss.item() * count
            tokens += count
    model.train(was_training)
    return math.exp(total / max(tokens, 1))


PERPLEXITY_DOCUMENTS = 1000
PERPLEXITY_BLOCK = 128


def heldout_perplexity(model: Any, tokenizer: Any) -> float:
    """Perplexity on the lab's held-out corpus."""
    docs = lab_corpus.documents("heldout", PERPLEXITY_DOCUMENTS)
    return perplexity(model, token_blocks(tokenizer, docs, PERPLEXITY_BLOCK))


def score_model(model_name: str, skills: str, count: int, prompt_format: str, allow_pickle: bool) -> dict[str, Any]:
    """Exact match per held-out skill and held-out perplexity of one model."""
    choose("prompt format", prompt_format, ("auto", "chat", "plain"))
    if count <= 0:
        raise UserError(f"--count must be > 0, got {count}")
    names = list(lab_skills.iter_skill_names(skills))
    from llmcourse.core.chat_templates import prepare_chat_template
    from llmcourse.core.libraries import quiet_libraries
    from llmcourse.core.modelio import load_causal_lm

    quiet_libraries()
    started = time.perf_counter()
    model, tokenizer = load_causal_lm(model_name, allow_pickle=allow_pickle)
    if prompt_format == "chat" and not getattr(tokenizer, "chat_template", None):
        prepare_chat_template(tokenizer, "chatml")  # a base model asked in ChatML, as its SFT will be
    result = exact_match(model, tokenizer, names, count=count, prompt_format=prompt_format)  # type: ignore[arg-type]
    summary: dict[str, Any] = {"parameters": sum(p.numel() for p in model.parameters())}
    summary.update({f"exact_match/{k}": round(v, 4) for k, v in result.per_skill.items()})
    summary["exact_match/mean"] = round(result.mean, 4)
    summary["heldout_perplexity"] = round(heldout_perplexity(model, tokenizer), 3)
    summary["elapsed_s"] = round(time.perf_counter() - started, 1)
    return summary
