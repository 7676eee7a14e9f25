"""Preference layouts normalised to conversational pairs, and the recipe's preference keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from llmcourse.core.errors import UserError
from llmcourse.finetune.preference_data import detect_type, to_pair
from llmcourse.recipes.dpo import DpoRecipe, PreferenceDataset

USER = {"role": "user", "content": "Is 7 odd?"}
YES = [{"role": "assistant", "content": "yes"}]
NO = [{"role": "assistant", "content": "no"}]


def pair_of(row: dict, **source: object) -> dict:
    spec = PreferenceDataset(path="data.jsonl", **source)
    return to_pair(row, spec, detect_type(spec, list(row)), "datasets.0")


def test_prompt_chosen_rejected_strings() -> None:
    assert pair_of({"prompt": "Is 7 odd?", "chosen": "yes", "rejected": "no"}) == {"prompt": [USER], "chosen": YES, "rejected": NO}


def test_chat_lists_that_repeat_the_prompt_keep_only_the_answer() -> None:
    row = {"prompt": "Is 7 odd?", "chosen": [USER, *YES], "rejected": [USER, *NO]}
    assert pair_of(row) == {"prompt": [USER], "chosen": YES, "rejected": NO}


def test_ultrafeedback_layout_without_a_prompt_column_uses_the_shared_turns() -> None:
    row = {"chosen": [USER, *YES], "rejected": [USER, *NO]}
    assert pair_of(row, type="ultra") == {"prompt": [USER], "chosen": YES, "rejected": NO}


def test_intel_orca_dpo_pairs_layout_with_system() -> None:
    row = {"system": "Be brief.", "question": "Is 7 odd?", "chosen": "yes", "rejected": "no"}
    pair = pair_of(row, type="chatml.intel")
    assert pair["prompt"] == [{"role": "system", "content": "Be brief."}, USER]
    assert pair["chosen"] == YES and pair["rejected"] == NO
    assert detect_type(PreferenceDataset(path="x.jsonl"), list(row)) == "intel"


def test_axolotl_chat_template_default_with_role_mapping() -> None:
    row = {"conversation": [{"from": "human", "value": "Is 7 odd?"}],
           "chosen": {"from": "gpt", "value": "yes"}, "rejected": {"from": "gpt", "value": "no"}}
    pair = pair_of(row, type="chat_template.default", field_messages="conversation",
                   message_property_mappings={"role": "from", "content": "value"})
    assert pair == {"prompt": [USER], "chosen": YES, "rejected": NO}


def test_column_mapping() -> None:
    row = {"q": "Is 7 odd?", "good": "yes", "bad": "no"}
    assert pair_of(row, field_prompt="q", field_chosen="good", field_rejected="bad")["rejected"] == NO


def test_missing_rejected_names_the_field() -> None:
    with pytest.raises(UserError, match="no field 'rejected'"):
        pair_of({"prompt": "Is 7 odd?", "chosen": "yes"})


def test_unknown_axolotl_type_is_rejected_with_a_suggestion() -> None:
    with pytest.raises(ValidationError, match="did you mean 'intel'"):
        PreferenceDataset(path="x.jsonl", type="chatml.intle")


def test_axolotl_rl_keys_are_aliases() -> None:
    recipe = DpoRecipe.model_validate({"base_model": "m", "datasets": [{"path": "lab://parity"}], "rl": "dpo",
                                       "rl_beta": 0.3, "dpo_label_smoothing": 0.1, "rpo_alpha": 0.5, "max_prompt_len": 64})
    assert (recipe.beta, recipe.label_smoothing, recipe.max_prompt_length) == (0.3, 0.1, 64)
    assert recipe.dpo_losses == (["sigmoid", "sft"], [1.0, 0.5])
    assert DpoRecipe.model_validate({"base_model": "m", "datasets": [{"path": "lab://parity"}], "rl": "ipo"}).dpo_losses == (["ipo"], None)


@pytest.mark.parametrize("bad, message", [
    ({"beta": 0}, "greater than 0"),
    ({"loss_type": ["sigmod"]}, "did you mean 'sigmoid'"),
    ({"rl": "orpo", "ref_model": "m"}, "reference-free"),
    ({"sample_packing": True}, "not packed"),
    ({"loss_type": ["sigmoid", "hinge"], "loss_weights": [1.0]}, "one weight per loss type"),
])
def test_inconsistent_preference_keys(bad: dict, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        DpoRecipe.model_validate({"base_model": "m", "datasets": [{"path": "lab://parity"}], **bad})
