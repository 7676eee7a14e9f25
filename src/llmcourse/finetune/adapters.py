"""Loading the base for fine-tuning (full, 8-bit or 4-bit NF4) and attaching LoRA."""

from __future__ import annotations

import functools
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.core.modelio import check_model_source, compute_dtype
from llmcourse.recipes.sft import SftRecipe


@functools.lru_cache(maxsize=None)  # asked by the loader and by the packing choice: one warning
def attention_implementation(requested: str) -> str | None:
    """The attention kernel to load the model with.

    `auto` picks flash-attention 2 on a GPU where it is installed, else None: transformers' own
    choice for the architecture (SDPA where the model supports it, eager where not, e.g. Gemma 2).
    `flash_attention_2` where it cannot run (no CUDA device or no flash-attn package: an Axolotl
    config's `flash_attention: true` on a laptop), and `flex_attention` on a CPU (it cannot train
    there), fall back to that choice, with a warning.
    """
    import importlib.util

    import torch

    flash_ready = torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None
    if requested == "flex_attention" and not torch.cuda.is_available():
        err.print("[yellow]warning:[/] attn_implementation: flex_attention has no backward pass on CPUs in torch; "
                  "using the architecture's default attention instead")
        return None
    if requested == "flash_attention_2" and not flash_ready:
        missing = "a CUDA device" if not torch.cuda.is_available() else "the flash-attn package (pip install flash-attn)"
        err.print(f"[yellow]warning:[/] flash_attention / attn_implementation: flash_attention_2 needs {missing}; "
                  "using the architecture's default attention instead")
        return None
    if requested != "auto":
        return requested
    return "flash_attention_2" if flash_ready else None


def quantization_config(recipe: SftRecipe) -> Any:
    """bitsandbytes settings for a 4-bit (NF4, double quant) or 8-bit base, Axolotl's
    `model_quantization_config` (any transformers quantization config by class name), or None."""
    if recipe.model_quantization_config:
        return named_quantization_config(recipe.model_quantization_config, recipe.model_quantization_config_kwargs)
    if recipe.quantized is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise UserError("adapter: qlora / load_in_*bit need bitsandbytes", hint="pip install 'llmcourse[bnb]'") from exc
    if recipe.quantized == "8bit":
        return BitsAndBytesConfig(**{"load_in_8bit": True, **recipe.bnb_config_kwargs})
    defaults = {"bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True, "bnb_4bit_compute_dtype": compute_dtype()}
    try:  # Axolotl's bnb_config_kwargs override our defaults
        return BitsAndBytesConfig(load_in_4bit=True, **{**defaults, **recipe.bnb_config_kwargs})
    except (TypeError, ValueError) as exc:
        raise UserError(f"bnb_config_kwargs: {exc}") from exc


def named_quantization_config(name: str, kwargs: dict[str, Any]) -> Any:
    """`transformers.<name>(**kwargs)`, checked to be one of transformers' quantization configs."""
    import transformers
    from transformers.utils.quantization_config import QuantizationConfigMixin

    cls = getattr(transformers, name, None)
    if not (isinstance(cls, type) and issubclass(cls, QuantizationConfigMixin)):
        known = sorted(n for n in dir(transformers) if n.endswith("Config") and isinstance(getattr(transformers, n, None), type)
                       and issubclass(getattr(transformers, n), QuantizationConfigMixin))
        raise UserError(f"model_quantization_config: '{name}' is not a transformers quantization config",
                        hint=f"one of: {', '.join(known)}")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise UserError(f"model_quantization_config_kwargs: {exc}") from exc


def config_overrides(recipe: SftRecipe, source: str) -> dict[str, Any]:
    """`config=` with Axolotl's `model_config` applied, checked key by key against the model's config."""
    if not recipe.config_overrides:
        return {}
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(source, trust_remote_code=recipe.trust_remote_code)
    unknown = [key for key in recipe.config_overrides if not hasattr(config, key)]
    if unknown:
        raise UserError(f"model_config: {', '.join(unknown)} not in {type(config).__name__}",
                        hint="model_config changes existing config.json fields only")
    for key, value in recipe.config_overrides.items():
        setattr(config, key, value)
    return {"config": config}


def load_base(recipe: SftRecipe) -> Any:
    """The base model, quantized when the recipe asks, ready for `attach_lora` or full training."""
    from transformers import AutoModelForCausalLM

    source = check_model_source(recipe.base_model, recipe.allow_pickle)
    quant = quantization_config(recipe)
    dtype = compute_dtype() if quant is not None or recipe.adapter != "none" else "auto"
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source, dtype=dtype, quantization_config=quant, trust_remote_code=recipe.trust_remote_code,
            attn_implementation=attention_implementation(recipe.attn_implementation),
            use_safetensors=None if recipe.allow_pickle else True, **config_overrides(recipe, source),
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"base_model: cannot load '{recipe.base_model}': {str(exc).splitlines()[0]}") from exc
    import torch

    if quant is None and dtype == "auto" and not torch.cuda.is_available() and model.dtype != torch.float32:
        model = model.float()  # half precision trains poorly and slowly on CPUs
    if recipe.quantized == "4bit":
        from llmcourse.finetune.bnb_compat import keep_4bit_layers_trainable

        keep_4bit_layers_trainable(model)
    return model


def attach_lora(model: Any, recipe: SftRecipe, added_tokens: bool) -> Any:
    """Wrap `model` with a LoRA adapter (after k-bit preparation for quantized bases), its initial
    weights drawn from the recipe's seed.

    LoRA must be attached before any forward pass on a 4-bit base, or its weights get no gradient.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training
    from transformers import set_seed

    if recipe.quantized:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=recipe.train.gradient_checkpointing)
    lora = recipe.lora
    modules_to_save = list(lora.modules_to_save or [])
    if added_tokens:
        for name in ("embed_tokens", "lm_head"):
            if name not in modules_to_save:
                modules_to_save.append(name)
        err.print("[yellow]note:[/] new chat tokens were added, so embed_tokens and lm_head are trained and saved with the adapter")
    target = lora.target_modules or ("all-linear" if lora.target_linear else None)
    if target is None:
        raise UserError("lora.target_modules is empty and lora.target_linear is false: LoRA would touch nothing")
    config = LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=target, use_rslora=lora.use_rslora, use_dora=lora.use_dora,
        modules_to_save=modules_to_save or None, task_type="CAUSAL_LM", bias="none",
    )
    # torch seeds its generator differently in every process and the Trainer seeds it only after the
    # adapter exists: unseeded, two runs of one recipe started from different adapters.
    set_seed(recipe.train.seed)
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        message = str(exc).splitlines()[0]
        if "ParamWrapper" in message:  # PEFT adapts fused MoE expert weights as parameters
            raise UserError(f"lora_dropout: {message}", hint="this model's experts are fused weights, which PEFT adapts only "
                            "without dropout: set lora_dropout: 0, or list lora_target_modules (e.g. [q_proj, v_proj])") from exc
        raise UserError(f"lora.target_modules: {message}") from exc
