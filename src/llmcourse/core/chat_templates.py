"""Chat templates by name, and installing one into a tokenizer (and model) that lacks it."""

from __future__ import annotations

from typing import Any

from llmcourse.core.chat_formats import FALLBACK_PREFIX, TEMPLATES, ChatTemplate, template_names
from llmcourse.core.errors import UserError

__all__ = ["ChatTemplate", "TEMPLATES", "prepare_chat_template", "end_of_turn_ids", "stop_token_ids", "END_OF_TURN_TOKENS"]


def prepare_chat_template(tokenizer: Any, name: str | None, jinja: str | None = None) -> tuple[str, list[str]]:
    """Give `tokenizer` the requested chat template; returns (template name, special tokens added).

    `None` keeps the tokenizer's own template, or installs ChatML when it has none;
    `tokenizer_default_fallback_NAME` keeps the tokenizer's own, or installs NAME; `jinja` installs the
    recipe's `chat_template_jinja`. The caller must resize the model's embeddings when tokens were added.
    """
    own = getattr(tokenizer, "chat_template", None)
    if name == "jinja":
        if not jinja:
            raise UserError("chat_template: jinja needs the template itself", hint="set chat_template_jinja: to the Jinja text")
        tokenizer.chat_template = jinja
        return "jinja", _ensure_pad(tokenizer, [])
    if jinja:
        raise UserError("chat_template_jinja is set but chat_template is not `jinja`", hint="set chat_template: jinja, or remove chat_template_jinja")
    if name is not None and name.startswith(FALLBACK_PREFIX):
        name = "tokenizer_default" if own else name.removeprefix(FALLBACK_PREFIX)
    if name == "tokenizer_default" or (name is None and own):
        if not own:
            raise UserError(
                "chat_template: tokenizer_default, but the tokenizer has no chat template",
                hint=f"choose one of: {', '.join(template_names())}",
            )
        return "tokenizer_default", _ensure_pad(tokenizer, [])
    template = TEMPLATES[name or "chatml"]
    missing = [t for t in template.special_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    tokenizer.chat_template = template.jinja
    return template.name, _ensure_pad(tokenizer, missing)


def _ensure_pad(tokenizer: Any, added: list[str]) -> list[str]:
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return added


# Tokens that end an assistant turn in the families we meet (ChatML, Llama 3, Llama 2 / Mistral,
# GPT-2 style, Gemma, Phi-3, Cohere). The Space's app.py carries its own copy (it runs without llmcourse).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "</s>", "<|endoftext|>", "<end_of_turn>", "<|end|>", "<|END_OF_TURN_TOKEN|>")


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """EOS plus every END_OF_TURN_TOKENS entry that is one token in this (transformers) tokenizer."""
    ids = {tokenizer.eos_token_id} - {None}
    for token in END_OF_TURN_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id >= 0 and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(ids)


def stop_token_ids(tokenizer: Any, template_name: str) -> list[int]:
    """Token ids that end an assistant turn: EOS plus the template's end-of-turn token."""
    ids = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    template = TEMPLATES.get(template_name)
    if template and template.end_of_turn:
        ids.append(tokenizer.convert_tokens_to_ids(template.end_of_turn))
    return sorted(set(ids))
