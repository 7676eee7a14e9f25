"""The course's "introduction to quantization": naive 8-bit absmax and zero-point quantization.

Own code on purpose, since it is the lesson: every `nn.Linear` weight is quantized to int8 (per
tensor or per output channel) and dequantized back, and the result is saved as an ordinary HF
folder, so every tool can load it and the report shows what 8 bits cost. Each method is a
sub-folder; `weights.png` shows the weight distribution before and after, and the report gives
the footprint the int8 weights (plus their scales) would take.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from llmcourse.core.console import err
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel, register_format

METHODS = ("absmax", "zeropoint")


def absmax_quantize(weight: Any, per_channel: bool) -> tuple[Any, Any]:
    """(int8 weight, dequantized weight): scale = 127 / max|w|, symmetric around zero."""
    import torch

    peak = weight.abs().amax(dim=1, keepdim=True) if per_channel else weight.abs().max()
    scale = 127 / torch.clamp(peak, min=1e-12)
    quantized = torch.clamp((weight * scale).round(), -127, 127).to(torch.int8)
    return quantized, quantized.float() / scale


def zeropoint_quantize(weight: Any, per_channel: bool) -> tuple[Any, Any]:
    """(int8 weight, dequantized weight): the [min, max] range mapped onto [-128, 127] with a zero point."""
    import torch

    low = weight.amin(dim=1, keepdim=True) if per_channel else weight.min()
    high = weight.amax(dim=1, keepdim=True) if per_channel else weight.max()
    scale = 255 / torch.clamp(high - low, min=1e-12)
    zero_point = (-scale * low).round() - 128
    quantized = torch.clamp((weight * scale + zero_point).round(), -128, 127).to(torch.int8)
    return quantized, (quantized.float() - zero_point) / scale


QUANTIZERS: dict[str, Callable[[Any, bool], tuple[Any, Any]]] = {"absmax": absmax_quantize, "zeropoint": zeropoint_quantize}


def quantize_model(model: Any, method: str, per_channel: bool) -> dict[str, Any]:
    """Quantize–dequantize every linear weight in place; returns samples for plots and the footprint."""
    import torch

    quantize = QUANTIZERS[method]
    before, after = [], []
    linear_params = scales = 0
    seen: set[int] = set()
    with torch.no_grad():
        for module in model.modules():
            if not isinstance(module, torch.nn.Linear) or id(module.weight) in seen:
                continue
            seen.add(id(module.weight))  # a tied lm_head shares its weight with the embeddings
            weight = module.weight.data
            _, restored = quantize(weight.float(), per_channel)
            stride = max(weight.numel() // 20000, 1)
            before.append(weight.flatten()[::stride].float().clone())
            after.append(restored.flatten()[::stride])
            module.weight.data.copy_(restored.to(weight.dtype))
            linear_params += weight.numel()
            scales += weight.shape[0] if per_channel else 1
    total = sum(p.numel() for p in model.parameters())
    other_bits = 8 * model.get_memory_footprint() / max(total, 1)  # the source precision of what stays unquantized
    footprint_bytes = linear_params + scales * (8 if method == "zeropoint" else 4) + (total - linear_params) * other_bits / 8
    return {"before": torch.cat(before).numpy(), "after": torch.cat(after).numpy(), "linear_parameters": linear_params,
            "bits_per_weight": 8 * footprint_bytes / max(total, 1), "int8_footprint_mb": footprint_bytes / 1e6,
            "source_footprint_mb": model.get_memory_footprint() / 1e6}


def draw_histograms(before: Any, after: Any, title: str, path: Path) -> Path:
    """The course's picture: weight histograms before and after quantization, overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(9, 4.5), dpi=110)
    low, high = float(before.min()), float(before.max())
    axis.hist(before, bins=150, range=(low, high), alpha=0.6, label="original weights", color="#1f77b4")
    axis.hist(after, bins=150, range=(low, high), alpha=0.6, label="dequantized int8 weights", color="#ff7f0e")
    axis.set_title(title)
    axis.set_xlabel("weight value")
    axis.set_ylabel("count")
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


@register_format
class Int8Format(QuantFormat):
    """Naive int8 (absmax or zero-point, per tensor or per channel), saved dequantized as HF folders."""

    name = "int8"
    module = ""
    extra = ""
    tags = ("int8",)

    def methods(self) -> list[str]:
        """absmax and zeropoint."""
        return list(METHODS)

    def preflight(self, recipe: Any, source: SourceModel) -> None:
        """Methods valid; matplotlib present when histograms are asked for."""
        super().preflight(recipe, source)
        from llmcourse.core.errors import UserError
        from llmcourse.core.libraries import installed, pip_line

        if recipe.int8.histograms and not installed("matplotlib"):
            raise UserError("int8 histograms need matplotlib, which is not installed", hint=f"{pip_line('plot')} or set int8.histograms=false")

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """`name-int8-tensor` or `name-int8-channel`."""
        return output_dir / f"{source.short_name}-int8-{recipe.int8.granularity}"

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """One HF sub-folder per method, with its histogram."""
        import torch

        from llmcourse.core.modelio import load_causal_lm

        outputs = []
        per_channel = recipe.int8.granularity == "channel"
        for method in recipe.int8.methods:
            model, tokenizer = load_causal_lm(str(source.local_dir), device="cpu")
            stats = quantize_model(model, method, per_channel)
            target = folder / method
            model.save_pretrained(target, safe_serialization=True)
            tokenizer.save_pretrained(target)
            notes = {k: round(v, 4) for k, v in stats.items() if isinstance(v, float)}
            notes["linear_parameters"] = stats["linear_parameters"]
            if recipe.int8.histograms:
                error = float(torch.tensor(stats["after"] - stats["before"]).abs().mean())
                draw_histograms(stats["before"], stats["after"], f"{source.short_name}: int8 {method} ({recipe.int8.granularity}), "
                                f"mean |error| {error:.2e}", target / "weights.png")
                notes["histogram"] = str(Path(folder.name.removesuffix(".partial")) / method / "weights.png")
            err.print(f"  int8 {method} ({recipe.int8.granularity}): {stats['linear_parameters']:,} linear weights, "
                      f"footprint {stats['source_footprint_mb']:.1f} → {stats['int8_footprint_mb']:.1f} MB")
            outputs.append(QuantOutput("int8", method, target, "hf", notes))
            del model
        return outputs
