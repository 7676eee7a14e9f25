"""Recipe for `llmcourse dpo` / `llmcourse orpo`: the SFT recipe plus preference-tuning keys.

Axolotl's RL keys are accepted as aliases (`rl_beta`, `dpo_label_smoothing`, `orpo_alpha`,
`rpo_alpha`, `max_prompt_len`, `dpo_use_weighting`), and so are its preference dataset types
(`chat_template.default`, `chatml.intel`, `chatml.prompt_pairs`, `chatml.argilla`, `chatml.ultra`).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llmcourse.core.errors import did_you_mean
from llmcourse.recipes.common import ChatDatasetSource
from llmcourse.recipes.sft import SftRecipe, normalize_axolotl

# rl -> which TRL trainer runs it; dpo and ipo share DPOTrainer, simpo is CPOTrainer's loss.
# The loss types TRL's DPOTrainer offers (DPOConfig.loss_type); `rl: dpo` may combine several.
DPO_LOSS_TYPES = ("sigmoid", "hinge", "ipo", "exo_pair", "nca_pair", "robust", "bco_pair", "sppo_hard", "aot",
                  "aot_unpaired", "apo_zero", "apo_down", "discopop", "sft", "sigmoid_norm")
PREFERENCE_TYPES = ("preference", "chat_template", "intel", "argilla", "ultra")
AXOLOTL_TYPE_SUFFIXES = {"default": "chat_template", "intel": "intel", "prompt_pairs": "preference",
                         "argilla": "argilla", "ultra": "ultra", "icr": "preference", "user_defined": "preference"}
AXOLOTL_RL_ALIASES = {"rl_beta": "beta", "dpo_beta": "beta", "orpo_alpha": "beta", "dpo_label_smoothing": "label_smoothing",
                      "max_prompt_len": "max_prompt_length", "dpo_use_weighting": "use_weighting", "rpo_alpha": "sft_weight",
                      "cpo_alpha": "sft_weight", "simpo_gamma": "simpo_gamma"}


class PreferenceDataset(ChatDatasetSource):
    """A preference dataset: which columns hold the prompt, the chosen and the rejected answer."""

    type: Literal["preference", "chat_template", "intel", "argilla", "ultra"] | None = None
    field_prompt: str = "prompt"
    field_system: str = "system"
    field_messages: str | None = None
    field_chosen: str = "chosen"
    field_rejected: str = "rejected"

    @field_validator("type", mode="before")
    @classmethod
    def _axolotl_type(cls, value: Any) -> Any:
        """Axolotl spells types `TEMPLATE.STRATEGY` (`chatml.intel`): the template part is the recipe's."""
        if isinstance(value, str) and "." in value:
            suffix = value.rsplit(".", 1)[1]
            if suffix not in AXOLOTL_TYPE_SUFFIXES:
                raise ValueError(f"unknown preference type '{value}'{did_you_mean(suffix, list(AXOLOTL_TYPE_SUFFIXES))}; "
                                 f"supported: {', '.join(PREFERENCE_TYPES)} or Axolotl's *.{{{','.join(AXOLOTL_TYPE_SUFFIXES)}}}")
            return AXOLOTL_TYPE_SUFFIXES[suffix]
        return value


class DpoRecipe(SftRecipe):
    """`llmcourse dpo RECIPE.yaml` (and `llmcourse orpo`, which sets `rl: orpo`)."""

    output_dir: str | None = "outputs/dpo"
    datasets: list[PreferenceDataset] = Field(min_length=1)  # type: ignore[assignment]
    rl: Literal["dpo", "ipo", "orpo", "simpo"] = "dpo"
    loss_type: list[str] | None = Field(default=None, description="DPO loss types (TRL names); default from rl")
    loss_weights: list[float] | None = None
    beta: float = Field(default=0.1, gt=0, description="DPO/IPO: distance to the reference; ORPO: weight of the odds-ratio term")
    label_smoothing: float = Field(default=0.0, ge=0, lt=0.5)
    sft_weight: float = Field(default=0.0, ge=0, description="adds TRL's 'sft' loss with this weight (RPO); 0 = off")
    simpo_gamma: float = Field(default=0.5, ge=0)
    use_weighting: bool = False
    max_length: int | None = Field(default=None, ge=8, description="prompt + answer tokens (default: sequence_len)")
    max_prompt_length: int | None = Field(default=None, ge=1, description="pairs with longer prompts are dropped")
    ref_model: str | None = Field(default=None, description="explicit reference model; default: the implicit one")
    precompute_ref_log_probs: bool = False
    eval_pairs: int = Field(default=50, ge=0, description="held-out lab pairs per skill for the end-of-run table")

    @model_validator(mode="before")
    @classmethod
    def _axolotl_rl_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for alias, key in AXOLOTL_RL_ALIASES.items():
                if alias in data and key not in data:
                    data[key] = data.pop(alias)
        return normalize_axolotl(data, cls)

    @field_validator("loss_type", mode="before")
    @classmethod
    def _loss_types(cls, value: Any) -> Any:
        names = [value] if isinstance(value, str) else value
        for name in names or []:
            if name not in DPO_LOSS_TYPES:
                raise ValueError(f"unknown loss type '{name}'{did_you_mean(str(name), list(DPO_LOSS_TYPES))}; "
                                 f"TRL's DPOTrainer offers: {', '.join(DPO_LOSS_TYPES)}")
        return names

    @model_validator(mode="after")
    def _preference_consistent(self) -> "DpoRecipe":
        if self.sample_packing:
            raise ValueError("sample_packing: preference pairs are not packed; remove it")
        if self.loss_type and self.rl not in ("dpo", "ipo"):
            raise ValueError(f"loss_type applies to rl: dpo; rl: {self.rl} has its own loss")
        if self.loss_weights is not None and len(self.loss_weights) != len(self._chosen_loss_types):
            raise ValueError(f"loss_weights needs one weight per loss type ({', '.join(self._chosen_loss_types)})")
        if self.ref_model and self.rl in ("orpo", "simpo"):
            raise ValueError(f"ref_model: rl: {self.rl} is reference-free; remove ref_model")
        if self.max_prompt_length and self.max_length and self.max_prompt_length >= self.max_length:
            raise ValueError(f"max_prompt_length ({self.max_prompt_length}) must be below max_length ({self.max_length})")
        return self

    @property
    def _chosen_loss_types(self) -> list[str]:
        return self.loss_type or (["ipo"] if self.rl == "ipo" else ["sigmoid"])

    @property
    def dpo_losses(self) -> tuple[list[str], list[float] | None]:
        """TRL's `loss_type` and `loss_weights` for DPO/IPO, with the `sft` term added for `sft_weight`."""
        types = list(self._chosen_loss_types)
        weights = list(self.loss_weights) if self.loss_weights is not None else None
        if self.sft_weight and "sft" not in types:
            weights = (weights or [1.0] * len(types)) + [self.sft_weight]
            types.append("sft")
        return types, weights

    @property
    def sequence_limit(self) -> int:
        """Prompt + answer tokens per sequence."""
        return self.max_length or self.sequence_len
