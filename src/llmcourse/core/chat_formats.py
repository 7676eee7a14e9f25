"""Chat templates by Axolotl's names, each written from its model family's published format.

Every template renders what the family's official template renders for conversations of system,
user and assistant turns (tests compare rendered strings, and against the official templates
that ship inside llama.cpp's vocabulary files where there is one). Where an official template
cannot be masked turn by turn, or depends on the date, the difference is stated beside it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ChatTemplate:
    """A Jinja chat template, the special tokens it needs, and the token that ends a turn."""

    name: str
    jinja: str
    special_tokens: tuple[str, ...]
    end_of_turn: str | None


BOS = "{{ bos_token if bos_token else '' }}"
# The first message's content when it is a system message, and the turns after it.
SYSTEM_SPLIT = (
    "{% if messages and messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
    "{% set turns = messages[1:] %}{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
)
CHATML_TURNS = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% endfor %}"
CHATML_PROMPT = "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
CHATML_TOKENS = ("<|im_start|>", "<|im_end|>")


def _mistral(open_inst: str, close_inst: str, before_answer: str) -> str:
    # A system message goes before the first user turn (Mistral's v0.3 template puts it before the
    # last one, which makes a conversation render differently turn by turn; single-turn is identical).
    return (
        BOS + SYSTEM_SPLIT + "{% for message in turns %}{% if message['role'] == 'user' %}"
        f"{{{{ '{open_inst}' + (system + '\\n\\n' if system and loop.first else '') + message['content'] + '{close_inst}' }}}}"
        f"{{% elif message['role'] == 'assistant' %}}{{{{ '{before_answer}' + message['content'] + eos_token }}}}"
        "{% endif %}{% endfor %}"
    )


def _gemma() -> str:
    # Gemma has no system role: a system message is put before the first user turn (Gemma 3's
    # official template does this; Gemma 1 and 2's refuse the conversation).
    return (
        BOS + SYSTEM_SPLIT + "{% for message in turns %}"
        "{{ '<start_of_turn>' + ('model' if message['role'] == 'assistant' else message['role']) + '\\n' + "
        "(system + '\\n\\n' if system and loop.first else '') + message['content'] | trim + '<end_of_turn>\\n' }}"
        "{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}"
    )


def _phi(system_when_empty: bool, final_eos: bool) -> str:
    condition = "message['role'] == 'system'" + ("" if system_when_empty else " and message['content']")
    return (
        ("" if final_eos else BOS) + "{% for message in messages %}"
        f"{{% if {condition} %}}{{{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}}}"
        "{% elif message['role'] in ('user', 'assistant') %}{{ '<|' + message['role'] + '|>\\n' + message['content'] + '<|end|>\\n' }}"
        "{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}"
        + ("{% else %}{{ eos_token }}{% endif %}" if final_eos else "{% endif %}")
    )


# Qwen 3: assistant turns after the last user message carry their reasoning in <think>...</think>
# (from `reasoning_content`, or split out of the content); the final turn always has the block, the
# earlier turns lose it. When a conversation is rendered in parts (for loss masks), `last_index` and
# `last_query_index` (Axolotl's real_last_index) say which turns are final in the whole of it.
QWEN3 = (
    "{% set final = last_index if last_index is defined and last_index is not none else messages | length - 1 %}"
    "{% set ns = namespace(last_query=messages | length - 1) %}"
    "{% for message in messages %}{% if message['role'] == 'user' %}{% set ns.last_query = loop.index0 %}{% endif %}{% endfor %}"
    "{% if last_query_index is defined and last_query_index is not none %}{% set ns.last_query = last_query_index %}{% endif %}"
    "{% for message in messages %}{% if message['role'] != 'assistant' %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}{% else %}"
    "{% set content = message['content'] %}{% set reasoning = message.get('reasoning_content') or '' %}"
    "{% if not reasoning and '</think>' in content %}{% set reasoning = content.split('</think>')[0].rstrip('\\n').split('<think>')[-1].lstrip('\\n') %}"
    "{% set content = content.split('</think>')[-1].lstrip('\\n') %}{% endif %}"
    "{% if loop.index0 > ns.last_query and (loop.index0 == final or reasoning) %}"
    "{{ '<|im_start|>assistant\\n<think>\\n' + reasoning.strip('\\n') + '\\n</think>\\n\\n' + content.lstrip('\\n') + '<|im_end|>\\n' }}"
    "{% else %}{{ '<|im_start|>assistant\\n' + content + '<|im_end|>\\n' }}{% endif %}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
    "{% if enable_thinking is defined and enable_thinking is false %}{{ '<think>\\n\\n</think>\\n\\n' }}{% endif %}{% endif %}"
)

QWEN25_SYSTEM = "You are Qwen, created by Alibaba Cloud. You are a helpful assistant."
COHERE_TOKENS = ("<|START_OF_TURN_TOKEN|>", "<|END_OF_TURN_TOKEN|>", "<|SYSTEM_TOKEN|>", "<|USER_TOKEN|>", "<|CHATBOT_TOKEN|>")

TEMPLATES: dict[str, ChatTemplate] = {
    "chatml": ChatTemplate("chatml", CHATML_TURNS + CHATML_PROMPT, CHATML_TOKENS, "<|im_end|>"),
    "llama3": ChatTemplate(
        "llama3",
        BOS + "{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + "
        "message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
        ("<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"),
        "<|eot_id|>",
    ),
    # Mistral 7B v0.1 and Mixtral 8x7B: [INST] as text, a space on both sides.
    "mistral_v1": ChatTemplate("mistral_v1", _mistral(" [INST] ", " [/INST]", " "), (), None),
    # Mistral 7B v0.2 / v0.3, Mixtral 8x22B: [INST] and [/INST] are control tokens.
    "mistral_v2v3": ChatTemplate("mistral_v2v3", _mistral("[INST] ", "[/INST]", " "), ("[INST]", "[/INST]"), None),
    # Mistral Small 3 / Nemo (Tekken). The official template adds a dated default system prompt when
    # there is none; here there is none, so that a recipe renders the same on every day.
    "mistral_v7_tekken": ChatTemplate(
        "mistral_v7_tekken",
        BOS + "{% for message in messages %}{% if message['role'] == 'system' %}"
        "{{ '[SYSTEM_PROMPT]' + message['content'] + '[/SYSTEM_PROMPT]' }}{% elif message['role'] == 'user' %}"
        "{{ '[INST]' + message['content'] + '[/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
        "{% endif %}{% endfor %}",
        ("[INST]", "[/INST]", "[SYSTEM_PROMPT]", "[/SYSTEM_PROMPT]"),
        None,
    ),
    "gemma": ChatTemplate("gemma", _gemma(), ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "gemma3": ChatTemplate("gemma3", _gemma(), ("<start_of_turn>", "<end_of_turn>"), "<end_of_turn>"),
    "qwen_25": ChatTemplate(
        "qwen_25",
        "{% if not messages or messages[0]['role'] != 'system' %}"
        f"{{{{ '<|im_start|>system\\n{QWEN25_SYSTEM}<|im_end|>\\n' }}}}{{% endif %}}" + CHATML_TURNS + CHATML_PROMPT,
        CHATML_TOKENS,
        "<|im_end|>",
    ),
    "qwen3": ChatTemplate("qwen3", QWEN3, CHATML_TOKENS, "<|im_end|>"),
    # Phi-3 (mini/medium): as the template in llama.cpp's phi-3 vocabulary, plus the later system turn.
    "phi_3": ChatTemplate("phi_3", _phi(True, False), ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<|end|>"),
    # Phi-3.5: no BOS, an empty system message is left out, EOS closes a conversation.
    "phi_35": ChatTemplate("phi_35", _phi(False, True), ("<|system|>", "<|user|>", "<|assistant|>", "<|end|>"), "<|end|>"),
    "cohere": ChatTemplate(
        "cohere",
        BOS + SYSTEM_SPLIT + "{% if system %}{{ '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>' + system + '<|END_OF_TURN_TOKEN|>' }}{% endif %}"
        "{% for message in turns %}{{ '<|START_OF_TURN_TOKEN|>' + ('<|USER_TOKEN|>' if message['role'] == 'user' else '<|CHATBOT_TOKEN|>') + "
        "message['content'].strip() + '<|END_OF_TURN_TOKEN|>' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}{% endif %}",
        COHERE_TOKENS,
        "<|END_OF_TURN_TOKEN|>",
    ),
    # DeepSeek V2.5 (Axolotl's deepseek_v2): the system text, then <｜User｜> / <｜Assistant｜> turns.
    "deepseek_v2": ChatTemplate(
        "deepseek_v2",
        BOS + "{% for message in messages %}{% if message['role'] == 'system' %}{{ message['content'] + '\\n\\n' }}"
        "{% elif message['role'] == 'user' %}{{ '<｜User｜>' + message['content'] }}"
        "{% elif message['role'] == 'assistant' %}{{ '<｜Assistant｜>' + message['content'] + eos_token }}{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<｜Assistant｜>' }}{% endif %}",
        ("<｜User｜>", "<｜Assistant｜>"),
        None,
    ),
    # Falcon-H1: ChatML after the tokenizer's BOS.
    "falcon_h1": ChatTemplate("falcon_h1", BOS + CHATML_TURNS + CHATML_PROMPT, CHATML_TOKENS, "<|im_end|>"),
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
# Our earlier name for Mistral's format.
TEMPLATES["mistral"] = TEMPLATES["mistral_v1"]

# Names that are not a template of their own: the tokenizer's, one given in the recipe, or the
# tokenizer's with a fallback (`tokenizer_default_fallback_chatml`).
SPECIAL_NAMES = ("tokenizer_default", "jinja")
FALLBACK_PREFIX = "tokenizer_default_fallback_"


def template_names() -> list[str]:
    """Every name `chat_template` accepts, as a user would write it."""
    return [*TEMPLATES, *SPECIAL_NAMES, f"{FALLBACK_PREFIX}<name>"]


def check_template_name(name: str) -> str:
    """`name` if `chat_template` accepts it, else ValueError listing the names."""
    base = name.removeprefix(FALLBACK_PREFIX)
    if name in TEMPLATES or name in SPECIAL_NAMES or (name.startswith(FALLBACK_PREFIX) and base in TEMPLATES):
        return name
    from llmcourse.core.errors import did_you_mean

    raise ValueError(f"unknown chat_template '{name}'{did_you_mean(name, [*TEMPLATES, *SPECIAL_NAMES])}: "
                     f"use one of {', '.join(template_names())}")
