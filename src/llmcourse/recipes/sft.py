"""Recipe for `llmcourse sft`: nested sections, with Axolotl's flat key names accepted as aliases."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from llmcourse.core.chat_formats import check_template_name
from llmcourse.core.errors import did_you_mean
from llmcourse.recipes.axolotl_keys import refuse_and_map
from llmcourse.recipes.base import CommandRecipe, Recipe
from llmcourse.recipes.common import ChatDatasetSource, TrainSection
from llmcourse.recipes.trackers import TrackerKeys

SPECIAL_TOKEN_ROLES = ("bos", "eos", "unk", "pad", "sep", "cls", "mask")

# Axolotl keys that we read but do not act on: accepted, listed once in a warning.
AXOLOTL_IGNORED = {
    "strict", "hf_use_auth_token", "low_cpu_mem_usage",
    "local_rank", "debug", "dataset_prepared_path", "pad_to_sequence_len", "is_llama_derived_model", "is_mistral_derived_model",
    "is_qwen_derived_model", "model_type", "tokenizer_type", "eval_sample_packing",
    "loss_watchdog_patience", "eval_table_size", "eval_max_new_tokens", "save_safetensors", "logging_dir",
    "dataset_processes", "ddp_timeout", "eval_causal_lm_metrics", "profiler_steps", "trust_remote_code_tokenizer",
    "micro_batch_eval_size", "lora_fan_in_fan_out",  # PEFT sets fan_in_fan_out from each layer's type
    "tokenizer_use_fast", "tokenizer_legacy",  # transformers 5 has one tokenizer implementation: nothing to choose
}


SFT_TYPES = ("alpaca", "sharegpt", "messages", "chat_template", "completion", "text")


class SftDataset(ChatDatasetSource):
    """A dataset with its format (`type`) and Axolotl-style field mappings."""

    type: Literal["alpaca", "sharegpt", "messages", "chat_template", "completion", "text"] | None = None
    field: str = "text"
    field_messages: str | None = None
    field_instruction: str = "instruction"
    field_input: str = "input"
    field_output: str = "output"
    field_system: str = "system"
    drop_system_message: bool = False
    field_thinking: str | None = None  # a message's reasoning trace, handed to the template as...
    template_thinking_key: str = "reasoning_content"  # ...this key (Qwen 3 renders it; other templates drop it)
    shards: int | None = Field(default=None, gt=0)  # keep one shard of this many (Axolotl's shards / shards_idx)
    shards_idx: int = Field(default=0, ge=0)

    @field_validator("type", mode="before")
    @classmethod
    def _axolotl_type(cls, value: Any) -> Any:
        """Axolotl's `alpaca:chat`, `alpaca_chat`, `chat_template.xyz`: the layout before the strategy.

        Every layout is rendered with the recipe's chat template, which is what `:chat` asks for.
        """
        if not isinstance(value, str) or value in SFT_TYPES:
            return value
        base = re.split(r"[:.]", value, maxsplit=1)[0].removesuffix("_chat")
        if base not in SFT_TYPES:
            raise ValueError(f"unknown dataset type '{value}'{did_you_mean(base, list(SFT_TYPES))}; supported: "
                             f"{', '.join(SFT_TYPES)} (with Axolotl's suffixes, e.g. alpaca:chat)")
        return base


class LoraSection(Recipe):
    """LoRA hyper-parameters (Axolotl: lora_r, lora_alpha, ...)."""

    r: int = Field(default=16, gt=0)
    alpha: int = Field(default=32, gt=0)
    dropout: float = Field(default=0.05, ge=0, lt=1)
    target_modules: list[str] | str | None = None  # a string is a regular expression (PEFT's full match)
    target_linear: bool = True
    modules_to_save: list[str] | None = None
    use_rslora: bool = False  # Axolotl: peft_use_rslora
    use_dora: bool = False  # Axolotl: peft_use_dora

    @field_validator("target_modules", mode="before")
    @classmethod
    def _names_or_regex(cls, value: Any) -> Any:
        if value is None or isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return value
        raise ValueError(f"expected a list of module names or one regular expression, got {value!r}")


class SftTrainSection(TrainSection):
    """The training loop plus SFT's checkpointing and evaluation cadence."""

    learning_rate: float = Field(default=2e-4, gt=0, lt=1)
    save_steps: int | None = Field(default=None, gt=0)
    saves_per_epoch: int | None = Field(default=None, gt=0)
    evals_per_epoch: int | None = Field(default=None, ge=0)  # 0: no evaluation during training
    tf32: Literal["auto", True, False] = "auto"
    save_total_limit: int | None = Field(default=None, gt=0)
    save_strategy: Literal["steps", "epoch", "no"] | None = None  # checkpoints for --resume; the output is written at the end
    early_stopping_patience: int | None = Field(default=None, gt=0)  # evaluations without a better eval loss
    ddp_find_unused_parameters: bool | None = None
    accelerator_config: dict[str, Any] | None = None
    gradient_checkpointing_kwargs: dict[str, Any] | None = None
    remove_unused_columns: Literal[False] | None = None  # our collators need their columns: only `false` is honoured

    @field_validator("save_strategy", mode="before")
    @classmethod
    def _yaml_no(cls, value: Any) -> Any:
        return "no" if value is False else value  # YAML reads an unquoted `no` as false


class SftRecipe(CommandRecipe, TrackerKeys):
    """`llmcourse sft RECIPE.yaml`."""

    output_dir: str | None = "outputs/sft"
    base_model: str = Field(min_length=1)
    tokenizer: str | None = None
    trust_remote_code: bool = False
    allow_pickle: bool = False
    license: str | None = None
    datasets: list[SftDataset] = Field(min_length=1)
    val_set_size: float = Field(default=0.0, ge=0)
    chat_template: str | None = None  # a name of core.chat_formats, jinja, tokenizer_default(_fallback_NAME)
    chat_template_jinja: str | None = None
    special_tokens: dict[str, str] = Field(default_factory=dict)  # role (`pad` or Axolotl's `pad_token`) -> token
    tokens: list[str] = Field(default_factory=list)  # added to the vocabulary, each one token with its own embedding
    resize_token_embeddings_to_32x: bool = False
    # Axolotl's regexes (matched from the start of each parameter name): only these weights train
    unfrozen_parameters: list[str] | None = None
    train_on_inputs: bool = False
    sequence_len: int = Field(default=2048, ge=8)
    sample_packing: bool = False
    # Axolotl's packing knobs: next-fit in the shuffled order (instead of first fit among a few open
    # rows), and the most examples one packed row may hold
    sample_packing_sequentially: bool = False
    sample_packing_bin_size: int = Field(default=200, ge=1)
    adapter: Literal["lora", "qlora", "none"] = "none"
    load_in_4bit: bool = False
    load_in_8bit: bool = False
    lora: LoraSection = LoraSection()
    train: SftTrainSection = SftTrainSection()
    attn_implementation: Literal["auto", "eager", "sdpa", "flash_attention_2", "flex_attention"] = "auto"
    liger: bool = False
    merge_adapter: bool = False
    resume_from_checkpoint: str | None = None
    hub_model_id: str | None = None  # pushed, with its card, once the output is complete
    hub_private_repo: bool | None = None
    hub_strategy: Literal["end"] | None = None  # Axolotl's checkpoint pushes during training are not offered
    deepspeed: str | None = None
    fsdp: str | list[str] | None = None  # transformers' FSDP options, as a string or Axolotl's list
    fsdp_config: dict[str, Any] | None = None  # passed to transformers' fsdp_config (accelerate's FSDP plugin)
    config_overrides: dict[str, Any] = Field(default_factory=dict)  # Axolotl's model_config: changes to config.json
    bnb_config_kwargs: dict[str, Any] = Field(default_factory=dict)  # extra BitsAndBytesConfig arguments
    model_quantization_config: str | None = None  # a transformers quantization config class by name (Mxfp4Config)...
    model_quantization_config_kwargs: dict[str, Any] = Field(default_factory=dict)  # ...and its arguments
    eot_tokens: list[str] = Field(default_factory=list)  # tokens that end a turn (besides the template's)
    train_on_eos: Literal["turn", "all", "last", "none"] = "turn"
    dataset_exact_deduplication: bool = False
    eval_lab_count: int = Field(default=100, ge=0, description="held-out questions per lab skill scored at the end")

    @model_validator(mode="before")
    @classmethod
    def _axolotl_keys(cls, data: Any) -> Any:
        return normalize_axolotl(data, cls)

    @field_validator("attn_implementation", mode="before")
    @classmethod
    def _attention_names(cls, value: Any) -> Any:
        return {"flex": "flex_attention", "flash": "flash_attention_2", "fa2": "flash_attention_2"}.get(value, value)

    @field_validator("chat_template")
    @classmethod
    def _template_name(cls, value: str | None) -> str | None:
        return None if value is None else check_template_name(value)

    @field_validator("special_tokens", mode="before")
    @classmethod
    def _special_token_roles(cls, value: Any) -> Any:
        # Axolotl writes `pad_token: ...`; transformers' roles are `pad`, `eos`, ... (+ `_token`)
        if not isinstance(value, dict):
            return value
        roles: dict[str, Any] = {}
        for key, token in value.items():
            role = str(key).removesuffix("_token")
            if role not in SPECIAL_TOKEN_ROLES:
                raise ValueError(f"unknown special token '{key}': use {', '.join(f'{r}_token' for r in SPECIAL_TOKEN_ROLES)}")
            roles[role] = token
        return roles

    @classmethod
    def split_ignored(cls, data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Remove the Axolotl keys we accept without acting on them; returns (rest, their names)."""
        return ignored_axolotl_keys(data)

    @classmethod
    def written_keys(cls, data: Any) -> dict[tuple[str, ...], str]:
        """Axolotl's flat keys in `data` by the nested path they validate under (for error messages)."""
        if not isinstance(data, dict):
            return {}
        written: dict[tuple[str, ...], str] = {}
        for key in data:
            if key in cls.model_fields:
                continue
            if key in SftTrainSection.model_fields:
                written[("train", key)] = key
            elif key.startswith("lora_") and key[5:] in LoraSection.model_fields:
                written[("lora", key[5:])] = key
        return written

    @classmethod
    def flat_key_names(cls) -> list[str]:
        """Axolotl's flat spellings of our nested keys, offered in "did you mean" suggestions."""
        return [*SftTrainSection.model_fields, *(f"lora_{k}" for k in LoraSection.model_fields)]

    @model_validator(mode="after")
    def _consistent(self) -> "SftRecipe":
        if self.adapter == "qlora" and self.load_in_8bit:
            raise ValueError("adapter: qlora loads the base in 4 bits; remove load_in_8bit")
        if self.load_in_4bit and self.load_in_8bit:
            raise ValueError("load_in_4bit and load_in_8bit are exclusive")
        if (self.load_in_4bit or self.load_in_8bit) and self.adapter == "none":
            raise ValueError("a quantized base cannot be fully fine-tuned; set adapter: lora (or qlora)")
        if self.model_quantization_config and self.quantized:
            raise ValueError("model_quantization_config and load_in_4bit/8bit (or adapter: qlora) both quantize the base; keep one")
        if self.merge_adapter and self.adapter == "none":
            raise ValueError("merge_adapter needs adapter: lora or qlora")
        if self.unfrozen_parameters is not None and self.adapter != "none":
            raise ValueError("unfrozen_parameters selects weights for full fine-tuning; with a LoRA adapter use lora_target_modules")
        for pattern in self.unfrozen_parameters or []:
            name, rows = split_row_range(pattern)
            try:
                re.compile(name)
            except re.error as exc:
                raise ValueError(f"unfrozen_parameters: '{pattern}' is not a regular expression ({exc})") from exc
            if rows and rows[1] is not None and rows[0] >= rows[1]:
                raise ValueError(f"unfrozen_parameters: '{pattern}': the range's end must be greater than its start")
        if self.train.early_stopping_patience and not (self.train.evals_per_epoch or self.train.eval_steps):
            raise ValueError("early_stopping_patience needs evaluations to compare: set evals_per_epoch or eval_steps")
        if self.val_set_size >= 1 and self.val_set_size != int(self.val_set_size):
            raise ValueError(f"val_set_size is a fraction (< 1) or a whole number of rows, got {self.val_set_size}")
        return self

    @property
    def quantized(self) -> Literal["4bit", "8bit"] | None:
        """How the base weights are loaded: 4-bit for QLoRA or load_in_4bit, 8-bit, or None."""
        if self.adapter == "qlora" or self.load_in_4bit:
            return "4bit"
        return "8bit" if self.load_in_8bit else None


def split_row_range(pattern: str) -> tuple[str, tuple[int, int | None] | None]:
    """An `unfrozen_parameters` entry as Axolotl writes it: a regex, optionally followed by a range
    of rows (first dimension) to train, `[start:end]`, `[:end]`, `[start:]` or `[index]`
    (`^model.embed_tokens.weight$[:32000]`); the regex and (start, end or None), or None."""
    match = re.match(r"^(.+)\[([0-9]*)(?::([0-9]*))?\]$", pattern)
    if not match or (match.group(3) is None and not match.group(2)):
        return pattern, None
    name, start, end = match.groups()
    if end is None:  # [index]
        return name, (int(start), int(start) + 1)
    return name, (int(start) if start else 0, int(end) if end else None)


def normalize_axolotl(data: Any, model: type[CommandRecipe]) -> Any:
    """Move Axolotl's flat keys into our sections; collect the ones we ignore under `_ignored`."""
    if not isinstance(data, dict):
        return data
    data = refuse_and_map({k: v for k, v in data.items() if v is not None})  # Axolotl writes `key:` (null) for "unset"
    for legacy, key in (("adam_eps", "adam_epsilon"), ("bfloat16", "bf16"), ("float16", "fp16"), ("tokenizer_config", "tokenizer"),
                        ("peft_use_rslora", "lora_use_rslora"), ("peft_use_dora", "lora_use_dora"),
                        ("model_config", "config_overrides")):  # pydantic reserves the name model_config
        if legacy in data and key not in data:  # Axolotl's other spellings
            data[key] = data.pop(legacy)
    if "fsdp_version" in data:
        data["fsdp_config"] = {**(data.get("fsdp_config") or {}), "version": data.pop("fsdp_version")}
    if data.get("gradient_checkpointing") == "offload":
        raise ValueError("gradient_checkpointing: offload (activations moved to the CPU) is Axolotl's own; use gradient_checkpointing: true")
    legacy_switches = (("flash_attention", "flash_attention_2"), ("sdp_attention", "sdpa"), ("xformers_attention", "sdpa"),
                       ("eager_attention", "eager"), ("flex_attention", "flex_attention"))
    for legacy, implementation in legacy_switches:
        if data.pop(legacy, False) and "attn_implementation" not in data:  # Axolotl's older switches
            data["attn_implementation"] = implementation
    train_fields = set(SftTrainSection.model_fields)
    lora_fields = set(LoraSection.model_fields)
    train = dict(data.get("train") or {})
    lora = dict(data.get("lora") or {})
    for key in list(data):
        if key in model.model_fields:
            continue
        if key in train_fields:
            train[key] = data.pop(key)
        elif key.startswith("lora_") and key[5:] in lora_fields:
            lora[key[5:]] = data.pop(key)
        elif key == "rl":
            raise ValueError("rl: preference tuning is `llmcourse dpo RECIPE`, not sft")
    if data.get("adapter") in (None, "", False):
        data["adapter"] = "none" if "adapter" in data or not lora else "lora"
    if train or "train" in data:
        data["train"] = train
    if lora or "lora" in data:
        data["lora"] = lora
    return data


def ignored_axolotl_keys(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Split off the Axolotl keys we accept but do not act on (warned about once, never an error).

    Keys left empty (`wandb_project:`) are dropped without a warning: they ask for nothing.
    """
    kept = {k: v for k, v in data.items() if k not in AXOLOTL_IGNORED}
    return kept, sorted(k for k, v in data.items() if k in AXOLOTL_IGNORED and v not in (None, "", False))
