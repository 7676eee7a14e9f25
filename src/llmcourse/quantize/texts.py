"""The text a quantizer calibrates on and the held-out text its report scores, as token blocks.

`lab` texts are the lab's own: plain corpus documents for a base model, held-out skill conversations
in the model's chat template for a chat model (a chat fine-tune no longer models plain text, so
scoring it there would compare noise). Users pass a `.txt` file (documents separated by blank lines)
or a `.jsonl` file (a `text` field, or `messages` rendered with the chat template); calibration text
can also be a hub dataset id (a split and a text column of it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.core.errors import UserError
from llmcourse.core.modelio import looks_like_local_path

LAB_BLOCK = 128
USER_BLOCK = 512
LAB_NAMES = ("lab", "lab://corpus", "lab://chat")


@dataclass(frozen=True)
class HubText:
    """Which part of a hub dataset is text: the split, the column and the configuration."""

    split: str = "train"
    field: str = "text"
    config: str | None = None


def is_hub_dataset(source: str) -> bool:
    """A hub dataset id (`org/name`, `name`) rather than a lab name or a file."""
    return source not in LAB_NAMES and not looks_like_local_path(source)


def hub_texts(field: str, source: str, hub: HubText, max_chars: int) -> list[str]:
    """Texts from one column of a hub dataset split, streamed (a corpus like C4 is never downloaded
    whole) until about `max_chars` characters."""
    from datasets import load_dataset

    try:
        rows = load_dataset(source, hub.config, split=hub.split, streaming=True)
        texts: list[str] = []
        for row in rows:
            if hub.field not in row:
                raise UserError(f"{field}_field: hub dataset {source} has no column '{hub.field}'",
                                hint=f"its columns are: {', '.join(row)}")
            text = row[hub.field]
            if isinstance(text, str) and text.strip():
                texts.append(text)
                max_chars -= len(text)
            if max_chars <= 0:
                break
    except UserError:
        raise
    except Exception as exc:  # datasets raises many types (offline, unknown id, unknown split)
        raise UserError(f"{field}: cannot load hub dataset '{source}' ({hub.split}): {str(exc).splitlines()[0]}",
                        hint="hub datasets need network access (HF_DATASETS_OFFLINE unset) or a local .txt/.jsonl copy") from exc
    if not texts:
        raise UserError(f"{field}: hub dataset {source} has no text in column '{hub.field}' of split '{hub.split}'")
    return texts


def check_text_source(field: str, source: str, hub: HubText | None = None) -> None:
    """Fail early on a text source that is not a lab name or a readable, non-empty file (or, where
    `hub` is given, a hub dataset that loads and has text in the column)."""
    if source in LAB_NAMES:
        return
    if hub is not None and is_hub_dataset(source):
        hub_texts(field, source, hub, max_chars=1)  # the id, split and column exist: one text is enough
        return
    path = Path(source)
    if not path.is_file():
        raise UserError(f"{field}: file not found: {source}", hint=f"pass a .txt or .jsonl file, or one of {', '.join(LAB_NAMES)}")
    if path.suffix not in (".txt", ".jsonl", ".md"):
        raise UserError(f"{field}: {source} is not a .txt or .jsonl file")
    if not path.read_text(encoding="utf-8", errors="replace").strip():
        raise UserError(f"{field}: {source} is empty", hint="give it some representative text (a few thousand tokens at least)")


@dataclass
class TokenBlocks:
    """`[n, block]` token ids and which of them are scored as next-token targets."""

    ids: Any  # torch.LongTensor
    scored: Any  # numpy bool array, same shape
    description: str


def _render(tokenizer: Any, messages: list[dict[str, str]], prompt_only: bool = False) -> str:
    if getattr(tokenizer, "chat_template", None):
        turns = messages[:-1] if prompt_only else messages
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=prompt_only)
    turns = messages[:-1] if prompt_only else messages
    return "\n".join(f"{m['role']}: {m['content']}" for m in turns) + ("\nassistant: " if prompt_only else "")


def lab_documents(tokenizer: Any, split: str, count: int, chat: bool) -> list[tuple[str, str]]:
    """Lab documents as (unscored prefix, scored text): skill conversations score only the answers."""
    from llmcourse.lab import corpus as lab_corpus
    from llmcourse.lab import skills as lab_skills

    if not chat:
        return [("", doc) for doc in lab_corpus.documents(split, count)]
    per_skill = max(count // len(lab_skills.SKILLS), 1)
    documents = []
    for row in lab_skills.mixed(list(lab_skills.SKILLS), split, per_skill):
        messages = lab_skills.as_messages(row)["messages"]
        prompt, full = _render(tokenizer, messages, prompt_only=True), _render(tokenizer, messages)
        documents.append((prompt, full[len(prompt):]) if full.startswith(prompt) else ("", full))
    return documents


def file_texts(path: Path, tokenizer: Any) -> list[str]:
    """Documents of a user's text file."""
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix == ".jsonl":
        texts = []
        for number, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UserError(f"{path}:{number}: not JSON: {exc.msg}") from exc
            if isinstance(row, dict) and isinstance(row.get("text"), str):
                texts.append(row["text"])
            elif isinstance(row, dict) and isinstance(row.get("messages"), list):
                texts.append(_render(tokenizer, row["messages"]))
            else:
                raise UserError(f"{path}:{number}: expected a `text` string or a `messages` list")
        return texts
    return [doc.strip() for doc in raw.split("\n\n") if doc.strip()]


def token_blocks(tokenizer: Any, source: str, split: str, block_size: int | None, max_tokens: int, hub: HubText | None = None) -> TokenBlocks:
    """Token blocks of a text source, at most `max_tokens` tokens in all.

    On `lab` text a chat model is scored on its answers only: the user turns of a chat fine-tune
    were never trained, so their perplexity says nothing about the quantization.
    """
    import numpy as np
    import torch

    is_lab = source in LAB_NAMES
    block = block_size or (LAB_BLOCK if is_lab else USER_BLOCK)
    limit = getattr(tokenizer, "model_max_length", None)
    if isinstance(limit, int) and 1 < limit < block:
        block = limit
    if is_lab:
        chat = bool(getattr(tokenizer, "chat_template", None)) if source == "lab" else source == "lab://chat"
        docs = lab_documents(tokenizer, split, 8 * max_tokens // block + 64, chat)  # short documents: ask for plenty
        description = f"held-out lab {'conversations (answer tokens scored)' if chat else 'text'}"
    elif hub is not None and is_hub_dataset(source):
        docs = [("", text) for text in hub_texts("calibration", source, hub, max_chars=8 * (max_tokens + block))]
        description = f"{source} ({hub.split}, column {hub.field})"
    else:
        docs = [("", text) for text in file_texts(Path(source), tokenizer)]
        description = f"text of {Path(source).name}"
    ids: list[int] = []
    scored: list[bool] = []
    for prefix, text in docs:
        head = tokenizer(prefix, add_special_tokens=False)["input_ids"] if prefix else []
        body = tokenizer(text, add_special_tokens=False)["input_ids"]
        tail = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None and not prefix else []  # a chat turn ends itself
        ids += head + body + tail
        scored += [False] * len(head) + [True] * (len(body) + len(tail))
        if len(ids) >= max_tokens + block:
            break
    count = min(len(ids) // block, max(max_tokens // block, 1))
    if count == 0:
        raise UserError(f"{source}: fewer than {block} tokens of text", hint="give more text or a smaller eval_block_size")
    return TokenBlocks(torch.tensor(ids[: count * block]).view(count, block), np.array(scored[: count * block]).reshape(count, block),
                       f"{description}: {count} blocks of {block} tokens")
