"""HQQ (half-quadratic quantization): calibration-free 1/2/3/4/8-bit weights through the `hqq`
package's own API (`AutoHQQHFModel.quantize_model` / `save_quantized` / `from_quantized`).

transformers 5 cannot load HQQ folders (its HQQ path raises NotImplementedError), so the folders
are written and read with hqq itself. One change to hqq's own layout: the weights go to
`qmodel.safetensors` (hqq's safetensors encoding of every layer, metadata included) instead of a
pickled `qmodel.pt`, so nothing we write needs unpickling. `load_quantized` reads them back.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel, check_group_size, method_bits, register_format

BITS = (8, 4, 3, 2, 1)
WEIGHTS_FILE = "qmodel.safetensors"


def _storage_class() -> Any:
    """hqq's HF model class, storing its (already tensor-encoded) layer state in safetensors."""
    from hqq.core.quantize import HQQLinear
    from hqq.models.hf.base import AutoHQQHFModel
    from safetensors.torch import load_file, save_file

    class SafetensorsHQQModel(AutoHQQHFModel):
        @classmethod
        def patch_model(cls, model: Any, patch_nonlinear_fct: Any, patch_linear_fct: Any, patch_params: dict, verbose: bool = False) -> None:
            super().patch_model(model, patch_nonlinear_fct, patch_linear_fct, patch_params, verbose=False)  # no tqdm bars per layer

        @classmethod
        def get_weight_file(cls, save_dir: str) -> str:
            return str(Path(save_dir) / WEIGHTS_FILE)

        @classmethod
        def serialize_weights(cls, model: Any, verbose: bool = False) -> dict:
            ignored = set(cls.get_ignore_layers(model))
            weights = {}
            for name, module in model.named_modules():
                if name in ignored:
                    continue
                # HQQLinear encodes its metadata (bits, shape, dtype...) as tensors when asked to.
                module.encoded_state_dict = isinstance(module, HQQLinear)
                state = module.state_dict()
                if state:
                    weights[name] = dict(state)
            return weights

        @classmethod
        def save_weights(cls, weights: dict, save_dir: str) -> None:
            flat = {f"{module}.{key}": value.detach().contiguous().clone() for module, state in weights.items() for key, value in state.items()}
            save_file(flat, cls.get_weight_file(save_dir), metadata={"format": "pt", "quantizer": "hqq"})

        @classmethod
        def load_weights(cls, save_dir: str, map_location: Any = None) -> dict:
            weights: dict[str, dict[str, Any]] = {}
            for name, tensor in load_file(cls.get_weight_file(save_dir), device=str(map_location or "cpu")).items():
                module, key = name.rsplit(".", 1)
                weights.setdefault(module, {})[key] = tensor
            return weights

    return SafetensorsHQQModel


def load_quantized(path: str | Path, device: str | None = None) -> Any:
    """An HQQ folder written by `llmcourse quantize --format hqq`, as a transformers model (eval mode)."""
    import torch
    from hqq.core.quantize import HQQBackend, HQQLinear

    from llmcourse.core.modelio import pick_device

    folder = Path(path)
    if not (folder / WEIGHTS_FILE).is_file():
        raise UserError(f"'{folder}' is not an HQQ folder: {WEIGHTS_FILE} is missing", hint="quantize with `llmcourse quantize MODEL --format hqq`")
    device = device or pick_device()
    HQQLinear.set_backend(HQQBackend.PYTORCH)  # plain torch: no compiled kernels needed, CPU or GPU
    compute = torch.float32 if device == "cpu" else torch.float16
    model = _storage_class().from_quantized(str(folder), compute_dtype=compute, device=device)
    model.eval()
    return model


@register_format
class HqqFormat(QuantFormat):
    """HQQ folders: one sub-folder per bit width, written and reloaded with the hqq package."""

    name = "hqq"
    module = "hqq"
    extra = "hqq"
    library_name = "hqq"
    tags = ("hqq",)

    def methods(self) -> list[str]:
        """8bit, 4bit, 3bit, 2bit, 1bit."""
        return [f"{bits}bit" for bits in BITS]

    def offers(self, method: str) -> bool:
        """`4bit` or `4bit`-like spellings (`4BIT`)."""
        return method.lower() in self.methods()

    def check_installed(self) -> None:
        """hqq compiles CUDA kernels at install unless told not to: say so in the hint."""
        import importlib.util

        if importlib.util.find_spec("hqq") is None:
            raise UserError("format 'hqq' needs hqq, which is not installed",
                            hint="DISABLE_CUDA=1 pip install 'llmcourse[hqq]' (drop DISABLE_CUDA=1 on a CUDA machine for its kernels)")

    def preflight(self, recipe: Any, source: SourceModel) -> None:
        """Bits valid; the group size must divide every linear layer's input (hidden and MLP sizes)."""
        super().preflight(recipe, source)
        check_group_size("hqq.group_size", recipe.hqq.group_size, source)

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """`name-4bit-HQQ` (AutoQuant's name), or `name-4bit-2bit-HQQ` for several bit widths."""
        return output_dir / f"{source.short_name}-{'-'.join(recipe.hqq.methods)}-HQQ"

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """Quantize a fresh copy of the source per bit width, save it with hqq, check it reloads."""
        import torch
        from hqq.core.quantize import BaseQuantizeConfig, HQQBackend, HQQLinear
        from transformers import AutoModelForCausalLM

        from llmcourse.core.modelio import load_tokenizer, pick_device

        section = recipe.hqq
        device = pick_device()
        HQQLinear.set_backend(HQQBackend.PYTORCH)
        storage = _storage_class()
        tokenizer = load_tokenizer(str(source.local_dir))
        outputs = []
        for method in section.methods:
            bits = method_bits(method)
            model = AutoModelForCausalLM.from_pretrained(str(source.local_dir), dtype=torch.float32, use_safetensors=True)
            quant_config = BaseQuantizeConfig(nbits=bits, group_size=section.group_size, axis=section.axis)
            storage.quantize_model(model, quant_config=quant_config, compute_dtype=torch.float32 if device == "cpu" else torch.float16,
                                   device=device)
            target = folder / method
            target.mkdir(parents=True)
            storage.save_quantized(model, str(target))
            tokenizer.save_pretrained(target)
            if model.generation_config is not None:
                model.generation_config.save_pretrained(target)
            quantized = sum(1 for module in model.modules() if isinstance(module, HQQLinear))
            err.print(f"  hqq {bits}-bit, group size {section.group_size}, axis {section.axis}: {quantized} linear layers quantized")
            outputs.append(QuantOutput("hqq", method, target, "hqq", {"nbits": bits, "group_size": section.group_size, "axis": section.axis,
                                                                      "quantized_layers": quantized}))
            del model
        return outputs

    def usage(self, output: QuantOutput, repo: str) -> str:
        """hqq reloads the folder (weights in `qmodel.safetensors`, read as below)."""
        return (f"```python\n# DISABLE_CUDA=1 pip install 'llmcourse[hqq]'\nfrom llmcourse.quantize.formats.hqq import load_quantized\n\n"
                f'model = load_quantized("{repo}/{output.method}", device="cpu")\n```\n\n'
                f"The folder is hqq's own layout (config.json + the layer states), with the weights in `{WEIGHTS_FILE}` "
                "(hqq's tensor encoding of each layer) instead of a pickled `qmodel.pt`. transformers 5 does not load HQQ folders.")

