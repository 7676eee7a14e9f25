"""SFT data: every supported format normalised to chat messages or raw text, then tokenized with
a mask of the tokens that carry loss (the assistant turns, unless `train_on_inputs`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from llmcourse.finetune.sources import is_lab, load_rows
from llmcourse.core.errors import UserError
from llmcourse.recipes.sft import SftDataset, SftRecipe

ROLE_ALIASES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "model": "assistant",
                "bot": "assistant", "system": "system"}


@dataclass
class Encoded:
    """Tokenized examples and what happened on the way."""

    rows: list[dict[str, list[int]]]
    truncated: int = 0
    dropped: int = 0
    per_source: dict[str, int] = field(default_factory=dict)


def detect_type(source: SftDataset, columns: list[str]) -> str:
    """The dataset's format: `type` if given, else guessed from its columns."""
    if source.type:
        return source.type
    if is_lab(source.path):
        return "messages"
    if source.field_messages and source.field_messages in columns:
        return "chat_template"
    for column, kind in (("messages", "messages"), ("conversations", "sharegpt"), (source.field_instruction, "alpaca"), (source.field, "text")):
        if column in columns:
            return kind
    raise UserError(f"cannot tell the format of {source.path} from its columns ({', '.join(columns)})",
                    hint="set type: alpaca | sharegpt | messages | chat_template | completion | text")


def to_example(row: dict[str, Any], source: SftDataset, kind: str, where: str) -> dict[str, Any]:
    """One row as `{"messages": [...]}` or `{"text": ...}`."""
    if kind in ("completion", "text"):
        return {"text": field_of(row, source.field, where)}
    if kind == "alpaca":
        prompt = field_of(row, source.field_instruction, where)
        extra = row.get(source.field_input) or ""
        messages = []
        if row.get(source.field_system):
            messages.append({"role": "system", "content": str(row[source.field_system])})
        messages.append({"role": "user", "content": f"{prompt}\n\n{extra}" if extra else prompt})
        messages.append({"role": "assistant", "content": field_of(row, source.field_output, where)})
        return {"messages": messages}
    default_field = "conversations" if kind == "sharegpt" else "messages"
    turns = field_of(row, source.field_messages or default_field, where, expect=list)
    thinking = (source.field_thinking, source.template_thinking_key) if source.field_thinking else None
    messages = normalize_turns(turns, source.message_property_mappings, source.roles, where, sharegpt=kind == "sharegpt", thinking=thinking)
    if source.drop_system_message:
        messages = [m for m in messages if m["role"] != "system"]
    if not any(m["role"] == "assistant" for m in messages):
        raise UserError(f"{where}: a conversation has no assistant turn to learn from")
    return {"messages": messages}


def normalize_turns(turns: list[Any], mappings: dict[str, str], roles: dict[str, list[str]], where: str,
                    sharegpt: bool = False, thinking: tuple[str, str] | None = None) -> list[dict[str, str]]:
    """Messages as `{"role", "content"}` with standard roles, whatever the dataset calls them.

    `thinking` = (the dataset's reasoning field, the key the chat template reads it from): a turn's
    reasoning trace is kept under that key, for templates that render it (Qwen 3).
    """
    default_keys = {"role": "from", "content": "value"} if sharegpt else {"role": "role", "content": "content"}
    keys = {**default_keys, **mappings}
    aliases = dict(ROLE_ALIASES)
    for role, names in roles.items():
        aliases.update({name: role for name in names})
    messages = []
    for turn in turns:
        if not isinstance(turn, dict) or keys["role"] not in turn or keys["content"] not in turn:
            raise UserError(f"{where}: a message lacks '{keys['role']}' or '{keys['content']}'",
                            hint="set message_property_mappings: {role: ..., content: ...}")
        role = aliases.get(str(turn[keys["role"]]))
        if role is None:
            raise UserError(f"{where}: unknown role '{turn[keys['role']]}'", hint="map it with roles: {assistant: [...], user: [...]}")
        message = {"role": role, "content": str(turn[keys["content"]])}
        if thinking and turn.get(thinking[0]):
            message[thinking[1]] = str(turn[thinking[0]])
        messages.append(message)
    return messages


def field_of(row: dict[str, Any], name: str, where: str, expect: type = str) -> Any:
    """A row's field, with an error naming the field and listing the row's fields if it is missing."""
    if name not in row:
        raise UserError(f"{where}: rows have no field '{name}' (fields: {', '.join(row)})", hint="map it with field_* keys")
    value = row[name]
    if expect is str:
        return "" if value is None else str(value)
    if not isinstance(value, expect):
        raise UserError(f"{where}: field '{name}' should be a {expect.__name__}, got {type(value).__name__}")
    return value


def load_examples(recipe: SftRecipe) -> list[tuple[str, dict[str, Any]]]:
    """Every dataset of the recipe, normalised, as (source path, example) pairs, shuffled together."""
    examples: list[tuple[str, dict[str, Any]]] = []
    for index, source in enumerate(recipe.datasets):
        where = f"datasets.{index}"
        dataset = load_rows(source, where, lab_format="messages")
        if source.shards:
            if source.shards_idx >= source.shards:
                raise UserError(f"{where}.shards_idx: {source.shards_idx} is not below shards: {source.shards}")
            dataset = dataset.shard(num_shards=source.shards, index=source.shards_idx)
        kind = detect_type(source, dataset.column_names)
        examples += [(source.path, to_example(row, source, kind, where)) for row in dataset]
    if recipe.dataset_exact_deduplication:  # the first of identical examples is kept
        import json

        unique = {json.dumps(example, sort_keys=True): (path, example) for path, example in reversed(examples)}
        examples = list(reversed(unique.values()))
    random.Random(recipe.train.seed).shuffle(examples)
    return examples


def assistant_spans(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of its assistant turns.

    Each span is what the template adds after the generation prompt for that turn, found by
    rendering the conversation up to the turn with and without it, so any template works. The
    parts are told which turns are final in the whole conversation (`last_index`,
    `last_query_index`: Qwen 3's reasoning blocks depend on it); a closing EOS that a template
    appends to every rendering (Phi-3.5) belongs to the last turn only.
    """
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    whole = {"last_index": len(messages) - 1, "last_query_index": users[-1] if users else len(messages) - 1}
    text = render(tokenizer, messages, **whole)
    eos = tokenizer.eos_token or ""
    spans = []
    for index, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(tokenizer, messages[:index], add_generation_prompt=True, **whole) if index else ""
        upto = render(tokenizer, messages[: index + 1], **whole)
        if eos and upto != text and upto.endswith(eos) and not text.startswith(upto):
            upto = upto[: -len(eos)]
        if not text.startswith(upto) or not upto.startswith(before):
            raise UserError("the chat template does not render conversations incrementally, so loss masking cannot be derived",
                            hint="use train_on_inputs: true or another chat_template")
        spans.append((len(before), len(upto)))
    return text, spans


def render(tokenizer: Any, messages: list[dict[str, str]], **variables: Any) -> str:
    """The chat template applied to `messages` as text; a template's own refusal becomes a UserError."""
    from jinja2 import TemplateError

    try:
        return tokenizer.apply_chat_template(messages, tokenize=False, **variables)
    except TemplateError as exc:
        raise UserError(f"chat_template: the template refused a conversation: {exc}",
                        hint="check the roles in the data (roles:, drop_system_message:) or choose another chat_template") from exc


def encode(tokenizer: Any, example: dict[str, Any], train_on_inputs: bool,
           end_tokens: tuple[str, set[int]] = ("turn", set())) -> tuple[list[int], list[int]]:
    """Token ids and the loss mask (1 = learn this token) of one example.

    `end_tokens` = (Axolotl's train_on_eos, the ids that end a turn): `turn` learns each assistant
    turn's end token (the template's default), `all` every end token, `last` only the final one,
    `none` none of them.
    """
    if "text" in example:
        ids = tokenizer(example["text"], add_special_tokens=False)["input_ids"]
        if tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        return ids, [1] * len(ids)
    if train_on_inputs:
        ids = tokenizer(render(tokenizer, example["messages"]), add_special_tokens=False)["input_ids"]
        return list(ids), [1] * len(ids)
    text, spans = assistant_spans(tokenizer, example["messages"])
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    mask = [1 if any(a <= start < b for a, b in spans) else 0 for start, _ in enc["offset_mapping"]]
    ids = list(enc["input_ids"])
    return ids, apply_end_token_policy(ids, mask, *end_tokens)


def apply_end_token_policy(ids: list[int], mask: list[int], policy: str, end_ids: set[int]) -> list[int]:
    """The mask with end-of-turn tokens learned as `policy` says (see `encode`)."""
    if policy == "turn" or not end_ids:
        return mask
    ends = [i for i, token in enumerate(ids) if token in end_ids]
    learned_ends = [i for i in ends if mask[i]]
    mask = list(mask)
    for i in ends:
        mask[i] = {"all": 1, "none": 0, "last": int(bool(learned_ends) and i == learned_ends[-1])}[policy]
    return mask


def encode_all(tokenizer: Any, examples: list[tuple[str, dict[str, Any]]], max_length: int, train_on_inputs: bool,
               end_tokens: tuple[str, set[int]] = ("turn", set())) -> Encoded:
    """Tokenize, truncate to `max_length` (counted) and drop examples left with nothing to learn."""
    result = Encoded(rows=[])
    for source, example in examples:
        ids, mask = encode(tokenizer, example, train_on_inputs, end_tokens)
        if len(ids) > max_length:
            result.truncated += 1
            ids, mask = ids[:max_length], mask[:max_length]
        if not any(mask):
            result.dropped += 1
            continue
        result.rows.append({"input_ids": ids, "assistant_masks": mask})
        result.per_source[source] = result.per_source.get(source, 0) + 1
    if not result.rows:
        raise UserError("datasets: no example has a token to learn from after formatting and truncation",
                        hint="check the dataset fields, or raise sequence_len")
    return result


def split_eval(rows: list[dict], val_set_size: float, seed: int) -> tuple[list[dict], list[dict]]:
    """Hold out `val_set_size` rows (a fraction below 1, else a count) for evaluation."""
    if not val_set_size:
        return rows, []
    count = int(val_set_size) if val_set_size >= 1 else max(1, int(len(rows) * val_set_size))
    if count >= len(rows):
        raise UserError(f"val_set_size: {val_set_size} leaves no training rows (there are {len(rows)})")
    shuffled = rows[:]
    random.Random(seed + 1).shuffle(shuffled)
    return shuffled[count:], shuffled[:count]
