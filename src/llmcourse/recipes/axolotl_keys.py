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
    plugins = data.pop("plugins", None) or []
    others = [p for p in plugins if p != LIGER_PLUGIN]
    if others:
        raise ValueError(f"plugins: {', '.join(others)} not offered (only {LIGER_PLUGIN}); remove them")
    asked = [key for key in LIGER_KEYS if data.pop(key, False)]
    if asked and "liger" not in data:
        data["liger"] = True  # TRL's use_liger_kernel patches every kernel Liger has for the architecture
    return data
