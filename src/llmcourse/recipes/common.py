"""Recipe sections shared by several commands: datasets and the training loop."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from llmcourse.recipes.base import Recipe

Precision = Literal["auto", True, False]


def legacy_message_fields(data: Any) -> Any:
    """Axolotl's older `message_field_role` / `message_field_content` as `message_property_mappings`."""
    if isinstance(data, dict) and ("message_field_role" in data or "message_field_content" in data):
        data = dict(data)
        mappings = dict(data.get("message_property_mappings") or {})
        for old, key in (("message_field_role", "role"), ("message_field_content", "content")):
            if old in data:
                mappings.setdefault(key, data.pop(old))
        data["message_property_mappings"] = mappings
    return data


class DatasetSource(Recipe):
    """One dataset: a local file or folder, a hub id, or `lab://NAME`."""

    path: str = Field(min_length=1)
    type: str | None = None
    split: str = "train"
    name: str | None = None
    data_files: str | list[str] | None = None
    field: str = "text"
    num_samples: int | None = Field(default=None, gt=0)


class TrainSection(Recipe):
    """The optimisation loop, with Axolotl's key names."""

    max_steps: int = Field(default=-1, description="stop after this many optimizer steps (-1: use num_epochs)")
    num_epochs: float = Field(default=1.0, gt=0)
    micro_batch_size: int = Field(default=8, gt=0)
    gradient_accumulation_steps: int = Field(default=1, gt=0)
    learning_rate: float = Field(default=3e-4, gt=0, lt=1)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup", "cosine_with_restarts", "polynomial", "inverse_sqrt"] = "cosine"
    warmup_steps: int = Field(default=0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0, lt=1)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0)
    optimizer: str = "adamw_torch"
    adam_beta1: float = Field(default=0.9, ge=0, lt=1)
    adam_beta2: float = Field(default=0.999, ge=0, lt=1)
    adam_epsilon: float = Field(default=1e-8, gt=0)
    group_by_length: bool = False
    torch_compile: bool = False
    logging_steps: int = Field(default=10, gt=0)
    eval_steps: int | None = Field(default=None, gt=0)
    bf16: Precision = "auto"
    fp16: Precision = False
    gradient_checkpointing: bool = False
    seed: int = 0


class ChatDatasetSource(DatasetSource):
    """A dataset of chat messages: how its messages name their role and content (Axolotl's keys)."""

    message_property_mappings: dict[str, str] = Field(default_factory=dict)
    roles: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _legacy_fields(cls, data: Any) -> Any:
        return legacy_message_fields(data)
