"""Recipe for `llmcourse pretrain`: a causal LM trained from scratch."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from llmcourse.recipes.base import CommandRecipe, Recipe
from llmcourse.recipes.common import DatasetSource, TrainSection


class TokenizerSection(Recipe):
    """Either train a byte-level BPE on the corpus, or reuse an existing tokenizer."""

    path: str | None = Field(default=None, description="an existing tokenizer (folder or hub id); unset: train one")
    vocab_size: int = Field(default=512, ge=260, description="vocabulary size of a trained tokenizer")


class ModelSection(Recipe):
    """Architecture and dimensions of the model to initialise."""

    architecture: Literal["llama"] = "llama"
    hidden_size: int = Field(default=256, gt=0)
    intermediate_size: int = Field(default=512, gt=0)
    num_hidden_layers: int = Field(default=4, gt=0)
    num_attention_heads: int = Field(default=4, gt=0)
    num_key_value_heads: int = Field(default=2, gt=0)
    max_position_embeddings: int = Field(default=512, gt=0)
    rope_theta: float = Field(default=10000.0, gt=0)
    tie_word_embeddings: bool = False

    @model_validator(mode="after")
    def _heads_divide(self) -> "ModelSection":
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(f"hidden_size ({self.hidden_size}) must be divisible by num_attention_heads ({self.num_attention_heads})")
        if self.num_attention_heads % self.num_key_value_heads:
            raise ValueError(f"num_attention_heads ({self.num_attention_heads}) must be divisible by num_key_value_heads ({self.num_key_value_heads})")
        return self


class DataSection(Recipe):
    """Pretraining text: `lab://corpus`, text/jsonl/csv/parquet files or folders, hub datasets."""

    datasets: list[DatasetSource] = Field(min_length=1)
    sequence_len: int = Field(default=128, ge=8)
    val_set_size: float = Field(default=0.02, ge=0, lt=1, description="fraction of documents held out (user data)")
    eval_documents: int = Field(default=1000, gt=0, description="held-out documents for lab://corpus")


class PretrainRecipe(CommandRecipe):
    """`llmcourse pretrain RECIPE.yaml`."""

    output_dir: str | None = "outputs/pretrain"
    license: str = "apache-2.0"
    tokenizer: TokenizerSection = TokenizerSection()
    model: ModelSection = ModelSection()
    data: DataSection
    train: TrainSection = TrainSection()

    @model_validator(mode="after")
    def _positions_fit(self) -> "PretrainRecipe":
        if self.data.sequence_len > self.model.max_position_embeddings:
            raise ValueError(
                f"data.sequence_len ({self.data.sequence_len}) exceeds model.max_position_embeddings "
                f"({self.model.max_position_embeddings})"
            )
        return self
