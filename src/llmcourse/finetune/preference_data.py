"""Preference data: every supported layout normalised to conversational pairs that TRL tokenizes
with the recipe's chat template (prompt = messages, chosen / rejected = one assistant message)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from llmcourse.core.console import err
from llmcourse.finetune.sources import is_lab, load_rows
from llmcourse.core.errors import UserError
from llmcourse.finetune.data import field_of, normalize_turns
from llmcourse.recipes.dpo import DpoRecipe, PreferenceDataset

Pair = dict[str, list[dict[str, str]]]


@dataclass
class Pairs:
    """Normalised pairs and what was left out on the way."""

    train: list[Pair]
    eval: list[Pair]
    identical: int = 0
    long_prompts: int = 0
    per_source: dict[str, int] = field(default_factory=dict)


def detect_type(source: PreferenceDataset, columns: list[str]) -> str:
    """The layout: `type` if given, else guessed from the columns."""
    if source.type:
        return source.type
    if is_lab(source.path):
        return "preference"
    if source.field_messages and source.field_messages in columns:
        return "chat_template"
    if "question" in columns and "prompt" not in columns:
        return "intel"
    if "chosen_response" in columns:
        return "argilla"
    return "preference"


def _as_messages(value: Any, source: PreferenceDataset, where: str, role: str) -> list[dict[str, str]]:
    """A string, one message or a message list, as a message list (strings get `role`)."""
    if value is None:
        return [{"role": role, "content": ""}]
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    if isinstance(value, dict):
        value = [value]
    if isinstance(value, list):
        return normalize_turns(value, source.message_property_mappings, source.roles, where)
    raise UserError(f"{where}: expected text or chat messages, got {type(value).__name__}")


def _answer(messages: list[dict[str, str]], prompt: list[dict[str, str]], where: str, name: str) -> list[dict[str, str]]:
    """The answer part: a full conversation that repeats the prompt (UltraFeedback style) loses that prefix."""
    if len(messages) > len(prompt) and messages[: len(prompt)] == prompt:
        messages = messages[len(prompt) :]
    if not messages or messages[-1]["role"] != "assistant":
        raise UserError(f"{where}: '{name}' does not end with an assistant message")
    return messages


def _shared_turns(chosen: list[dict[str, str]], rejected: list[dict[str, str]]) -> list[dict[str, str]]:
    """The implicit prompt of two full conversations: the turns they share before the answers differ."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1
    return chosen[:shared]


def to_pair(row: dict[str, Any], source: PreferenceDataset, kind: str, where: str) -> Pair:
    """One row as `{"prompt": [...], "chosen": [...], "rejected": [...]}`.

    Without a prompt column (`ultra`), the prompt is the turns the chosen and rejected conversations share.
    """
    chosen_key, rejected_key = source.field_chosen, source.field_rejected
    if kind == "intel":
        prompt = [{"role": "user", "content": field_of(row, "question", where)}]
    elif kind == "argilla":
        prompt = [{"role": "user", "content": field_of(row, "instruction", where)}]
        chosen_key, rejected_key = "chosen_response", "rejected_response"
    elif kind == "chat_template":
        turns = field_of(row, source.field_messages or "messages", where, expect=list)
        prompt = normalize_turns(turns, source.message_property_mappings, source.roles, where)
    else:
        value = row.get(source.field_prompt) if kind == "ultra" else field_of(row, source.field_prompt, where, expect=object)
        prompt = _as_messages(value, source, where, "user") if value else []
    chosen = _as_messages(field_of(row, chosen_key, where, expect=object), source, where, "assistant")
    rejected = _as_messages(field_of(row, rejected_key, where, expect=object), source, where, "assistant")
    prompt = prompt or _shared_turns(chosen, rejected)
    system = row.get(source.field_system)
    if system and not any(m["role"] == "system" for m in prompt):
        prompt = [{"role": "system", "content": str(system)}] + prompt
    if not prompt:
        raise UserError(f"{where}: a pair has no prompt", hint=f"set field_prompt (columns: {', '.join(row)})")
    return {"prompt": prompt, "chosen": _answer(chosen, prompt, where, chosen_key),
            "rejected": _answer(rejected, prompt, where, rejected_key)}


def load_source(source: PreferenceDataset, where: str, split: str | None = None, count: int = 2000) -> list[Pair]:
    """One source's pairs (lab sources: `count` pairs of `split`), with missing columns named."""
    if split is not None:
        source = source.model_copy(update={"split": split, "num_samples": count})
    dataset = load_rows(source, where, lab_format="preference", lab_count=count)
    kind = detect_type(source, dataset.column_names)
    for required in _required_columns(source, kind):
        if required not in dataset.column_names:
            raise UserError(f"{where}: {source.path} has no '{required}' column (columns: {', '.join(dataset.column_names)})",
                            hint="preference data needs a prompt, a chosen and a rejected answer; map columns with "
                                 "field_prompt / field_chosen / field_rejected")
    return [to_pair(row, source, kind, where) for row in dataset]


def _required_columns(source: PreferenceDataset, kind: str) -> list[str]:
    answers = ["chosen_response", "rejected_response"] if kind == "argilla" else [source.field_chosen, source.field_rejected]
    prompt = {"intel": ["question"], "argilla": ["instruction"], "chat_template": [source.field_messages or "messages"],
              "ultra": [], "preference": [source.field_prompt]}[kind]
    return prompt + answers


def load_pairs(recipe: DpoRecipe, tokenizer: Any) -> Pairs:
    """Training and held-out pairs: lab sources hold out their `heldout` split, others `val_set_size`."""
    train: list[tuple[str, Pair]] = []
    held: list[Pair] = []
    for index, source in enumerate(recipe.datasets):
        where = f"datasets.{index}"
        train += [(source.path, pair) for pair in load_source(source, where)]
        if is_lab(source.path) and recipe.eval_pairs:
            held += load_source(source, where, split="heldout", count=recipe.eval_pairs * _skill_count(source))
    result = Pairs(train=[], eval=[])
    kept: list[tuple[str, Pair]] = []
    for path, pair in train:
        if pair["chosen"] == pair["rejected"]:
            result.identical += 1
        elif recipe.max_prompt_length and _prompt_tokens(tokenizer, pair) > recipe.max_prompt_length:
            result.long_prompts += 1
        else:
            kept.append((path, pair))
    _report_dropped(result, len(train), recipe)
    random.Random(recipe.train.seed).shuffle(kept)
    for path, _ in kept:
        result.per_source[path] = result.per_source.get(path, 0) + 1
    pairs = [pair for _, pair in kept]
    if recipe.val_set_size and not held:
        count = int(recipe.val_set_size) if recipe.val_set_size >= 1 else max(1, int(len(pairs) * recipe.val_set_size))
        if count >= len(pairs):
            raise UserError(f"val_set_size: {recipe.val_set_size} leaves no training pairs (there are {len(pairs)})")
        held, pairs = pairs[:count], pairs[count:]
    result.train, result.eval = pairs, held
    return result


def _skill_count(source: PreferenceDataset) -> int:
    from llmcourse.lab.skills import iter_skill_names

    return len(list(iter_skill_names(source.path.removeprefix("lab://"))))


def _prompt_tokens(tokenizer: Any, pair: Pair) -> int:
    return len(tokenizer.apply_chat_template(pair["prompt"], tokenize=True, add_generation_prompt=True, return_dict=False))


def _report_dropped(result: Pairs, total: int, recipe: DpoRecipe) -> None:
    if result.identical == total:
        raise UserError(f"datasets: chosen equals rejected in all {total} pairs; there is no preference to learn",
                        hint="check field_chosen / field_rejected: they may name the same column")
    if result.identical:
        err.print(f"[yellow]warning:[/] {result.identical} of {total} pairs have chosen == rejected; they were dropped")
    if result.long_prompts == total - result.identical:
        raise UserError(f"max_prompt_length: every prompt is longer than {recipe.max_prompt_length} tokens",
                        hint="raise max_prompt_length")
    if result.long_prompts:
        err.print(f"[yellow]note:[/] {result.long_prompts} pair(s) with prompts over max_prompt_length="
                  f"{recipe.max_prompt_length} tokens were dropped")
