"""Recipe for `llmcourse eval`: models, a suite or tasks, and how to run lm-eval on them."""

from __future__ import annotations

from pydantic import Field, field_validator

from llmcourse.recipes.base import CommandRecipe


class EvalRecipe(CommandRecipe):
    """`llmcourse eval`: one or more models scored on the same tasks, one comparison report."""

    models: list[str] = Field(min_length=1, description="HF folders, hub ids, adapter folders or .gguf files")
    suite: str = Field(default="lab", description="lab | nous | openllm | custom")
    tasks: list[str] = Field(default_factory=list, description="lm-eval task names (added to the suite; the whole suite when custom)")
    include_path: list[str] = Field(default_factory=list, description="folders of custom lm-eval task YAMLs")
    limit: float | None = Field(default=None, gt=0, description="examples per task (a fraction when < 1)")
    num_fewshot: int | None = Field(default=None, ge=0, description="override every task's few-shot count")
    batch_size: int | str = Field(default=16, description="an integer or `auto`")
    perplexity: str | None = Field(default=None, description="`lab` or a .txt/.jsonl file: word and byte perplexity per model")
    apply_chat_template: bool | None = Field(default=None, description="default: when the model has a chat template")
    log_samples: bool = False
    bootstrap_iters: int = Field(default=1000, ge=0, description="resamples for the stderr of metrics without a formula")
    device: str | None = Field(default=None, description="cpu, cuda, cuda:1, mps (default: the best available)")
    gist: bool = Field(default=False, description="publish report.md as a GitHub gist (GITHUB_TOKEN)")
    private: bool = Field(default=True, description="a secret gist unless false")

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, value: int | str) -> int | str:
        if isinstance(value, str) and value != "auto" and not value.isdigit():
            raise ValueError("an integer or `auto`")
        return int(value) if isinstance(value, str) and value.isdigit() else value

    @field_validator("limit")
    @classmethod
    def _whole(cls, value: float | None) -> float | int | None:
        return int(value) if value is not None and value >= 1 and float(value).is_integer() else value

    @field_validator("tasks")
    @classmethod
    def _strip(cls, tasks: list[str]) -> list[str]:
        return [t.strip() for t in tasks if t.strip()]
