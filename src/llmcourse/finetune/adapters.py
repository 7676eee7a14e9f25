"""Loading the base for fine-tuning (full, 8-bit or 4-bit NF4), attaching LoRA, merging adapters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmcourse.console import err
from llmcourse.errors import UserError
from llmcourse.modelio import check_model_source
from llmcourse.recipes.sft import SftRecipe


def compute_dtype() -> Any:
    """bf16 on a GPU that has it, fp16 on other GPUs, fp32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def attention_implementation(requested: str) -> str:
    """`auto` picks flash-attention 2 on a GPU where it is installed, else PyTorch SDPA."""
    if requested != "auto":
        return requested
    import importlib.util

    import torch

    if torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def quantization_config(recipe: SftRecipe) -> Any:
    """bitsandbytes settings for a 4-bit (NF4, double quant) or 8-bit base, or None."""
    if recipe.quantized is None:
        return None
    try:
        import bitsandbytes  # noqa: F401
        from transformers import BitsAndBytesConfig
    except ImportError as exc:
        raise UserError("adapter: qlora / load_in_*bit need bitsandbytes", hint="pip install 'llmcourse[bnb]'") from exc
    if recipe.quantized == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute_dtype(),
    )


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
            use_safetensors=None if recipe.allow_pickle else True,
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"base_model: cannot load '{recipe.base_model}': {str(exc).splitlines()[0]}") from exc
    import torch

    if quant is None and dtype == "auto" and not torch.cuda.is_available() and model.dtype != torch.float32:
        model = model.float()  # half precision trains poorly and slowly on CPUs
    return model


def attach_lora(model: Any, recipe: SftRecipe, added_tokens: bool) -> Any:
    """Wrap `model` with a LoRA adapter (after k-bit preparation for quantized bases).

    LoRA must be attached before any forward pass on a 4-bit base, or its weights get no gradient.
    """
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

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
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=target,
        modules_to_save=modules_to_save or None, task_type="CAUSAL_LM", bias="none",
    )
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise UserError(f"lora.target_modules: {str(exc).splitlines()[0]}") from exc


def is_adapter_folder(path: str | Path) -> bool:
    """True for a PEFT adapter folder (it has adapter_config.json)."""
    return (Path(path) / "adapter_config.json").exists()


def merge_adapter(adapter_dir: str | Path, base_model: str | None = None, allow_pickle: bool = False,
                  trust_remote_code: bool = False) -> tuple[Any, Any, str]:
    """Reload the base in full precision, apply the adapter and merge it; returns (model, tokenizer, base)."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from llmcourse.modelio import load_tokenizer

    adapter_dir = Path(adapter_dir)
    if not is_adapter_folder(adapter_dir):
        raise UserError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = base_model or config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter_dir}: the adapter does not name its base model", hint="pass --base-model")
    source = check_model_source(base, allow_pickle)
    import torch

    dtype = torch.float32 if not torch.cuda.is_available() else compute_dtype()
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code,
                                                 use_safetensors=None if allow_pickle else True)
    tokenizer = load_tokenizer(str(adapter_dir) if (adapter_dir / "tokenizer_config.json").exists() else source)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return merged, tokenizer, base
