"""Importance matrices for llama.cpp quantization, computed in Python.

llama.cpp's `llama-imatrix` program is not part of llama-cpp-python, but what it computes is simple:
for every matrix multiplied by activations, the mean of x² per input column over calibration text.
Here forward hooks on every `nn.Linear` of the transformers model collect it, keyed by the GGUF
tensor name (gguf's own name map); it is written in llama.cpp's GGUF imatrix layout
(`<tensor>.in_sum2`, `<tensor>.counts`), so `llama-quantize --imatrix` can reuse it too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.errors import UserError


def gguf_tensor_names(path: Path) -> set[str]:
    """The tensor names in a GGUF file."""
    from gguf import GGUFReader

    return {tensor.name for tensor in GGUFReader(str(path)).tensors}


def name_mapper(arch: str, blocks: int) -> Any:
    """gguf's HF → GGUF tensor name map for a llama.cpp architecture name such as `llama`."""
    import gguf

    matches = [key for key, value in gguf.MODEL_ARCH_NAMES.items() if value == arch]
    if not matches:
        raise UserError(f"imatrix: the gguf package does not know architecture '{arch}'", hint="pass an imatrix file made by llama-imatrix")
    return gguf.get_tensor_name_map(matches[0], blocks)


def compute(model_dir: Path, blocks: Any, arch: str, n_blocks: int, names: set[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Sum of x² per input column and the number of rows seen, for every linear layer in `names`."""
    import numpy as np
    import torch

    from llmcourse.core.modelio import load_causal_lm

    model, _ = load_causal_lm(str(model_dir), dtype=torch.float32, device="cpu")
    mapper = name_mapper(arch, n_blocks)
    sums: dict[str, Any] = {}
    counts: dict[str, int] = {}
    handles = []

    def hook_for(gguf_name: str) -> Any:
        def hook(_module: Any, inputs: tuple[Any, ...]) -> None:
            x = inputs[0].detach().float().reshape(-1, inputs[0].shape[-1])
            squared = (x * x).sum(dim=0).numpy().astype(np.float64)
            sums[gguf_name] = sums.get(gguf_name, 0) + squared
            counts[gguf_name] = counts.get(gguf_name, 0) + x.shape[0]

        return hook

    for module_name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        gguf_name = mapper.get_name(f"{module_name}.weight", try_suffixes=(".weight",))
        if gguf_name in names:
            handles.append(module.register_forward_pre_hook(hook_for(gguf_name)))
    if not handles:
        raise UserError("imatrix: no linear layer of the model matched a GGUF tensor name", hint="pass an imatrix file made by llama-imatrix")
    with torch.no_grad():
        for start in range(0, blocks.shape[0], 8):
            model(input_ids=blocks[start : start + 8])
    for handle in handles:
        handle.remove()
    err.print(f"imatrix: {len(sums)} tensors from {blocks.shape[0]} calibration blocks of {blocks.shape[1]} tokens")
    return {name: value.astype(np.float32) for name, value in sums.items()}, counts


def write(path: Path, sums: dict[str, Any], counts: dict[str, int]) -> Path:
    """Save in llama.cpp's GGUF imatrix layout."""
    import numpy as np
    from gguf import GGUFWriter

    writer = GGUFWriter(str(path), arch="imatrix")
    writer.add_type("imatrix")
    writer.add_array("imatrix.datasets", ["llmcourse calibration text"])
    for name in sorted(sums):
        writer.add_tensor(f"{name}.in_sum2", np.asarray(sums[name], dtype=np.float32).reshape(1, -1))
        writer.add_tensor(f"{name}.counts", np.asarray([[counts[name]]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def read(path: Path) -> dict[str, Any]:
    """Mean of x² per column, by tensor name, from a GGUF imatrix file (ours or llama-imatrix's)."""
    import numpy as np
    from gguf import GGUFReader

    try:
        tensors = {t.name: np.asarray(t.data, dtype=np.float32) for t in GGUFReader(str(path)).tensors}
    except (ValueError, OSError) as exc:
        raise UserError(f"gguf.imatrix: {path} is not a readable GGUF file: {exc}") from exc
    means = {}
    for key, values in tensors.items():
        if key.endswith(".in_sum2") and key.removesuffix(".in_sum2") + ".counts" in tensors:
            name = key.removesuffix(".in_sum2")
            count = tensors[name + ".counts"].reshape(-1, 1)
            means[name] = (values.reshape(count.shape[0], -1) / np.maximum(count, 1)).reshape(-1)
    if not means:
        raise UserError(f"gguf.imatrix: {path} holds no `<tensor>.in_sum2` / `.counts` pairs", hint="make it with llama-imatrix, or use `auto`")
    return means
