"""Axolotl keys that are refused with a reason, and Axolotl's plugin keys (Liger) mapped to ours."""

from __future__ import annotations

from typing import Any

PARALLEL = "multi-dimensional parallelism is not offered: run data-parallel with `accelerate launch` (README, Hub models and GPUs)"
# key -> why it is refused; refused only when set to something other than off / 1
REFUSED = {
    "tensor_parallel_size": PARALLEL, "context_parallel_size": PARALLEL, "dp_shard_size": PARALLEL, "dp_replicate_size": PARALLEL,
    "sequence_parallel_degree": PARALLEL,
    "use_scattermoe": "needs CUDA kernels llmcourse does not ship; remove it",
    "use_sonicmoe": "needs CUDA kernels llmcourse does not ship; remove it",
    "lora_mlp_kernel": "Axolotl's own Triton LoRA kernels are not offered; remove it",
    "lora_qkv_kernel": "Axolotl's own Triton LoRA kernels are not offered; remove it",
    "lora_o_kernel": "Axolotl's own Triton LoRA kernels are not offered; remove it",
    "lora_model_dir": "continuing a saved adapter is not offered: merge it (llmcourse merge-adapter) and fine-tune the result",
    "lr_quadratic_warmup": "a quadratic warmup is not offered; remove it (warmup is linear)",
    "gptq": "training on a GPTQ-quantized base is not offered; use adapter: qlora on the original model",
    "loss_watchdog_threshold": "the loss watchdog is not offered; remove it",
    "auto_resume_from_checkpoints": "resuming is explicit: rerun the command with --resume",
    "peft": "LoftQ initialisation (peft: loftq_config) is not offered; remove the block (LoRA starts from zero)",
    "max_packed_sequence_len": "replaced by sample_packing with sequence_len in Axolotl too; remove it",
}
LIGER_PLUGIN = "axolotl.integrations.liger.LigerPlugin"
LIGER_KEYS = ("liger_rope", "liger_rms_norm", "liger_glu_activation", "liger_layer_norm", "liger_fused_linear_cross_entropy",
              "liger_cross_entropy", "liger_swiglu")


def refuse_and_map(data: dict[str, Any]) -> dict[str, Any]:
    """Raise ValueError for a refused key or plugin; Liger's plugin keys become `liger: true`."""
    for key, why in REFUSED.items():
        value = data.get(key)
        if why == PARALLEL and isinstance(value, int) and not isinstance(value, bool) and value <= 1:
            continue  # a size of 1 asks for nothing
        if value not in (None, False, ""):
            raise ValueError(f"{key}: {why}")
    if data.get("shuffle_merged_datasets") is False:
        raise ValueError("shuffle_merged_datasets: false is not offered: the datasets are always shuffled together (seed: sets the order)")
    data.pop("shuffle_merged_datasets", None)
    plugins = data.pop("plugins", None) or []
    others = [p for p in plugins if p != LIGER_PLUGIN]
    if others:
        raise ValueError(f"plugins: {', '.join(others)} not offered (only {LIGER_PLUGIN}); remove them")
    asked = [key for key in LIGER_KEYS if data.pop(key, False)]
    if asked and "liger" not in data:
        data["liger"] = True  # TRL's use_liger_kernel patches every kernel Liger has for the architecture
    return data
