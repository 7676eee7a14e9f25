"""bitsandbytes: NF4 / FP4 (4-bit, optional double quantization) and LLM.int8, quantized while
transformers loads the model and saved as HF folders whose config carries the quantization, so
`from_pretrained` reloads them quantized (CPU or CUDA)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from llmcourse.core.console import err
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel, register_format

METHODS = ("nf4", "fp4", "int8")


def bnb_config(method: str, double_quant: bool) -> Any:
    """transformers' BitsAndBytesConfig for one method (4-bit layers compute in float32 on CPU)."""
    import torch
    from transformers import BitsAndBytesConfig

    if method == "int8":
        return BitsAndBytesConfig(load_in_8bit=True)
    compute = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type=method, bnb_4bit_use_double_quant=double_quant,
                              bnb_4bit_compute_dtype=compute)


@register_format
class BnbFormat(QuantFormat):
    """bitsandbytes 4-bit (nf4, fp4) and 8-bit (int8) HF folders."""

    name = "bnb"
    module = "bitsandbytes"
    extra = "bnb"
    tags = ("bitsandbytes",)

    def methods(self) -> list[str]:
        """nf4, fp4 and int8."""
        return list(METHODS)

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """`name-bnb-nf4` (AutoQuant's name), or `name-bnb-nf4-int8` for several methods."""
        return output_dir / f"{source.short_name}-bnb-{'-'.join(recipe.bnb.methods)}"

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """One HF sub-folder per method, quantized on load and saved with its quantization config."""
        import torch
        from transformers import AutoModelForCausalLM

        from llmcourse.core.modelio import load_tokenizer, pick_device

        tokenizer = load_tokenizer(str(source.local_dir))
        outputs = []
        for method in recipe.bnb.methods:
            model = AutoModelForCausalLM.from_pretrained(
                str(source.local_dir), quantization_config=bnb_config(method, recipe.bnb.double_quant), device_map=pick_device(),
                dtype=torch.float32, use_safetensors=True)
            target = folder / method
            model.save_pretrained(target, safe_serialization=True)
            tokenizer.save_pretrained(target)
            footprint = model.get_memory_footprint() / 1e6
            err.print(f"  bitsandbytes {method}" + (" (double quant)" if method != "int8" and recipe.bnb.double_quant else "")
                      + f": in-memory footprint {footprint:.1f} MB")
            outputs.append(QuantOutput("bnb", method, target, "hf", {"footprint_mb": round(footprint, 2),
                                                                     "double_quant": recipe.bnb.double_quant and method != "int8"}))
            del model
        return outputs

    def usage(self, output: QuantOutput, repo: str) -> str:
        """transformers reloads the folder quantized (bitsandbytes installed)."""
        return (f"```python\n# pip install bitsandbytes\nfrom transformers import AutoModelForCausalLM\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{repo}", subfolder="{output.method}", device_map="auto")\n```')
