"""Chat templates by name, and installing one into a tokenizer (and model) that lacks it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llmcourse.core.errors import UserError


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template, the special tokens it needs, and the token that ends a turn."""

    name: str
    jinja: str
    special_tokens: tuple[str, ...]
    end_of_turn: str | None


BOS = "{{ bos_token if bos_token else '' }}"
TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate(
        "chatml",
        "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
        ("<|im_start|>", "<|im_end|>"),
        "<|im_end|>",
    ),
    "llama3": ChatTemplate(
        "llama3",
        BOS + "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
        "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "<|eot_id|>",
    ),
    "mistral": ChatTemplate(
        "mistral",
        BOS + "{% set system = namespace(text='') %}{% for message in messages %}"
        "{% if message['role'] == 'system' %}{% set system.text = message['content'] + '\\n\\n' %}"
        "{% elif message['role'] == 'user' %}{{ '[INST] ' + system.text + message['content'] + ' [/INST]' }}"
        "{% set system.text = '' %}{% else %}{{ message['content'] + eos_token }}{% endif %}{% endfor %}",
        (),
        None,
    ),
    "alpaca": ChatTemplate(
        "alpaca",
        "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\\n' + message['content'] + '\\n\\n' }}"
        "{% else %}{{ '### Response:\\n' + message['content'] + eos_token + '\\n\\n' }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\\n' }}{% endif %}",
        (),
        None,
    ),
}


def prepare_chat_template(tokenizer: Any, name: str | None) -> tuple[str, list[str]]:
    """Give `tokenizer` the requested chat template; returns (template name, special tokens added).

    `None` keeps the tokenizer's own template, or installs ChatML when it has none. The caller
    must resize the model's embeddings when tokens were added.
    """
    own = getattr(tokenizer, "chat_template", None)
    if name == "tokenizer_default" or (name is None and own):
        if not own:
            raise UserError(
                "chat_template: tokenizer_default, but the tokenizer has no chat template",
                hint="choose one of: chatml, llama3, mistral, alpaca",
            )
        return "tokenizer_default", []
    template = TEMPLATES[name or "chatml"]
    missing = [t for t in template.special_tokens if t not in tokenizer.get_vocab()]
    if missing:
        tokenizer.add_special_tokens({"additional_special_tokens": missing}, replace_extra_special_tokens=False)
    tokenizer.chat_template = template.jinja
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return template.name, missing


# Tokens that end an assistant turn in the families we meet (ChatML, Llama 3, Llama 2 / Mistral,
# GPT-2 style, Gemma). The Space's app.py carries its own copy (it runs without llmcourse).
END_OF_TURN_TOKENS = ("<|im_end|>", "<|eot_id|>", "</s>", "<|endoftext|>", "<end_of_turn>")


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
