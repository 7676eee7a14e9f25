"""Chat templates by Axolotl's names render each family's published format, and mask turn by turn.

The expected strings are written out from the families' published formats; phi_3, chatml and
cohere are also compared with the official templates that llama.cpp's vocabulary files carry.
"""

from __future__ import annotations

import pytest

from llmcourse.core.chat_formats import TEMPLATES, check_template_name
from llmcourse.core.chat_templates import prepare_chat_template
from llmcourse.core.errors import UserError
from llmcourse.finetune.data import assistant_spans

S, U1, A1, U2, A2 = "Be brief.", "Hi?", "Hello.", "Sum 2+2?", "4."
CONVERSATION = [{"role": "system", "content": S}, {"role": "user", "content": U1}, {"role": "assistant", "content": A1},
                {"role": "user", "content": U2}, {"role": "assistant", "content": A2}]
PROMPT = [{"role": "user", "content": U1}]
QWEN = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
CHATML = ("<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\nHello.<|im_end|>\n"
          "<|im_start|>user\nSum 2+2?<|im_end|>\n<|im_start|>assistant\n4.<|im_end|>\n")
CHATML_PROMPT = "<|im_start|>user\nHi?<|im_end|>\n<|im_start|>assistant\n"
PHI = "<|system|>\nBe brief.<|end|>\n<|user|>\nHi?<|end|>\n<|assistant|>\nHello.<|end|>\n<|user|>\nSum 2+2?<|end|>\n<|assistant|>\n4.<|end|>\n"

# name: (the whole conversation, one user turn with the generation prompt)
EXPECTED = {
    "chatml": (CHATML, CHATML_PROMPT),
    "llama3": (
        "<BOS><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\nHello.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nSum 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n4.<|eot_id|>",
        "<BOS><|start_header_id|>user<|end_header_id|>\n\nHi?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    ),
    "mistral_v1": ("<BOS> [INST] Be brief.\n\nHi? [/INST] Hello.<EOS> [INST] Sum 2+2? [/INST] 4.<EOS>", "<BOS> [INST] Hi? [/INST]"),
    "mistral_v2v3": ("<BOS>[INST] Be brief.\n\nHi?[/INST] Hello.<EOS>[INST] Sum 2+2?[/INST] 4.<EOS>", "<BOS>[INST] Hi?[/INST]"),
    "mistral_v7_tekken": ("<BOS>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]Hi?[/INST]Hello.<EOS>[INST]Sum 2+2?[/INST]4.<EOS>",
                          "<BOS>[INST]Hi?[/INST]"),
    "gemma": (
        "<BOS><start_of_turn>user\nBe brief.\n\nHi?<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n"
        "<start_of_turn>user\nSum 2+2?<end_of_turn>\n<start_of_turn>model\n4.<end_of_turn>\n",
        "<BOS><start_of_turn>user\nHi?<end_of_turn>\n<start_of_turn>model\n",
    ),
    "qwen_25": (CHATML, QWEN + CHATML_PROMPT),
    "qwen3": (CHATML.replace("assistant\n4.", "assistant\n<think>\n\n</think>\n\n4."), CHATML_PROMPT),
    "phi_3": ("<BOS>" + PHI, "<BOS><|user|>\nHi?<|end|>\n<|assistant|>\n"),
    "phi_35": (PHI + "<EOS>", "<|user|>\nHi?<|end|>\n<|assistant|>\n"),
    "cohere": (
        "<BOS><|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|>Be brief.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi?<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Hello.<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Sum 2+2?<|END_OF_TURN_TOKEN|>"
        "<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>4.<|END_OF_TURN_TOKEN|>",
        "<BOS><|START_OF_TURN_TOKEN|><|USER_TOKEN|>Hi?<|END_OF_TURN_TOKEN|><|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>",
    ),
    "deepseek_v2": ("<BOS>Be brief.\n\n<｜User｜>Hi?<｜Assistant｜>Hello.<EOS><｜User｜>Sum 2+2?<｜Assistant｜>4.<EOS>", "<BOS><｜User｜>Hi?<｜Assistant｜>"),
    "falcon_h1": ("<BOS>" + CHATML, "<BOS>" + CHATML_PROMPT),
}
EXPECTED["gemma3"] = EXPECTED["gemma"]
EXPECTED["mistral"] = EXPECTED["mistral_v1"]


def word_tokenizer(template: str | None = None):
    """A tiny fast tokenizer with <BOS>/<EOS>, so rendered strings show where BOS and EOS go."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"<UNK>": 0, "<BOS>": 1, "<EOS>": 2}, unk_token="<UNK>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<BOS>", eos_token="<EOS>", unk_token="<UNK>")
    tokenizer.chat_template = template
    return tokenizer


@pytest.mark.parametrize("name", sorted(n for n in TEMPLATES if n != "alpaca"))
def test_each_template_renders_its_published_format(name: str) -> None:
    tokenizer = word_tokenizer()
    assert prepare_chat_template(tokenizer, name)[0] == TEMPLATES[name].name
    whole, prompt = EXPECTED[name]
    assert tokenizer.apply_chat_template(CONVERSATION, tokenize=False) == whole
    assert tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True) == prompt


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_each_template_masks_exactly_the_assistant_turns(name: str) -> None:
    tokenizer = word_tokenizer()
    prepare_chat_template(tokenizer, name)
    text, spans = assistant_spans(tokenizer, CONVERSATION)
    learned = [text[a:b] for a, b in spans]
    assert len(learned) == 2 and A1 in learned[0] and A2 in learned[1], learned
    assert not any(U1 in part or U2 in part or S in part for part in learned), learned
    end = TEMPLATES[name].end_of_turn or "<EOS>"
    assert end in learned[1] and learned[1].index(A2) < learned[1].index(end), "the end of the turn is learned: the model learns to stop"


def test_qwen3_keeps_reasoning_only_after_the_last_question() -> None:
    tokenizer = word_tokenizer()
    prepare_chat_template(tokenizer, "qwen3")
    thought = [dict(m) for m in CONVERSATION]
    thought[2]["content"] = "<think>\ngreet back\n</think>\n\nHello."
    thought[4]["reasoning_content"] = "two and two"
    text = tokenizer.apply_chat_template(thought, tokenize=False)
    assert "greet back" not in text and "<|im_start|>assistant\nHello.<|im_end|>" in text
    assert "<|im_start|>assistant\n<think>\ntwo and two\n</think>\n\n4.<|im_end|>" in text
    no_thinking = tokenizer.apply_chat_template(PROMPT, tokenize=False, add_generation_prompt=True, enable_thinking=False)
    assert no_thinking == CHATML_PROMPT + "<think>\n\n</think>\n\n"
    _, spans = assistant_spans(tokenizer, thought)  # multi-turn with reasoning still masks turn by turn
    assert len(spans) == 2


def test_jinja_fallback_and_default_names() -> None:
    tokenizer = word_tokenizer("{% for m in messages %}[{{ m['content'] }}]{% endfor %}")
    assert prepare_chat_template(tokenizer, "tokenizer_default_fallback_llama3")[0] == "tokenizer_default"
    assert tokenizer.apply_chat_template(PROMPT, tokenize=False) == "[Hi?]"
    bare = word_tokenizer()
    assert prepare_chat_template(bare, "tokenizer_default_fallback_gemma3")[0] == "gemma3"
    own = word_tokenizer()
    assert prepare_chat_template(own, "jinja", "{{ messages[0]['content'] | upper }}")[0] == "jinja"
    assert own.apply_chat_template(PROMPT, tokenize=False) == "HI?"
    with pytest.raises(UserError, match="chat_template_jinja"):
        prepare_chat_template(word_tokenizer(), "jinja")
    with pytest.raises(UserError, match="no chat template"):
        prepare_chat_template(word_tokenizer(), "tokenizer_default")
    assert check_template_name("tokenizer_default_fallback_chatml")
    for bad in ("llama-3", "tokenizer_default_fallback_nope"):
        with pytest.raises(ValueError, match="unknown chat_template"):
            check_template_name(bad)


@pytest.mark.parametrize(("name", "vocab", "system"), [("phi_3", "phi-3", False), ("chatml", "qwen2", True), ("cohere", "command-r", True)])
def test_matches_the_official_template_shipped_with_llama_cpp(name: str, vocab: str, system: bool) -> None:
    from llmcourse.lab.families import official_template

    official, ours = word_tokenizer(official_template(vocab)), word_tokenizer()
    prepare_chat_template(ours, name)
    conversation = CONVERSATION if system else CONVERSATION[1:]  # the phi-3 template in llama.cpp drops system turns
    prompt = conversation[:2] if system else PROMPT  # Qwen 2's template adds its own system turn when there is none
    assert ours.apply_chat_template(conversation, tokenize=False) == official.apply_chat_template(conversation, tokenize=False)
    assert (ours.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
            == official.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True))
