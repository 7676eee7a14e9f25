"""GPTQ and AWQ through GPTQModel (auto-gptq does not import with transformers 5; AutoAWQ is
deprecated): calibrated 2/3/4/8-bit GPTQ and 4-bit AWQ, saved as HF folders that transformers
(with `gptqmodel` and `optimum` installed) and GPTQModel both reload quantized, on CPU or CUDA.

GPTQModel 7.6 is the newest release that runs with torch < 2.14 (7.7 requires 2.14.1).
"""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel, check_group_size, method_bits, register_format

GPTQ_BITS = (8, 4, 3, 2)
AWQ_BITS = (4,)
GPTQ_GROUP_SIZES = (-1, 16, 32, 64, 128, 256, 512, 1024)
AWQ_GROUP_SIZES = (-1, 16, 32, 64, 128)
INSTALL_HINT = "pip install 'llmcourse[gptq]' (GPTQModel and optimum; GPTQ and AWQ share it)"


@contextlib.contextmanager
def _environment(name: str, value: str) -> Iterator[None]:
    """`name=value` in the environment for the block (unless the user set it), then as it was."""
    before = os.environ.get(name)
    os.environ.setdefault(name, value)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _working_directory(path: str) -> Iterator[None]:
    """The process works in `path` for the block (`contextlib.chdir` from Python 3.11 on)."""
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _quiet_logbar() -> None:
    """GPTQModel logs through LogBar, a package of its own (not ours to depend on): warnings only,
    when it is there."""
    try:
        from logbar import LogBar
    except ImportError:
        return
    LogBar.shared().setLevel("WARNING")


@contextlib.contextmanager
def engine_output() -> Iterator[None]:
    """Run GPTQModel with its output held back: it prints a banner, per-layer logs and progress
    bars on stdout (which `--json` keeps for us) and stderr. On failure its last lines are shown.
    It also writes per-run log files under `./logs/`, so it runs in a temporary working directory
    (paths given to it must be absolute), and its worker count is set for the call only."""
    import tempfile

    captured = io.StringIO()
    try:
        # Its default asks for more CPU workers than 2 cores have.
        with tempfile.TemporaryDirectory(prefix="gptqmodel-") as scratch, _working_directory(scratch), \
                _environment("GPTQMODEL_CPU_WORKERS", str(os.cpu_count() or 1)), \
                contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured):
            import gptqmodel  # noqa: F401

            _quiet_logbar()
            yield
    except BaseException:
        tail = [line for line in captured.getvalue().splitlines() if line.strip()][-12:]
        if tail:
            err.print("GPTQModel's last output:", style="dim")
            err.out("\n".join(tail), style="dim", highlight=False)
        raise


def load_quantized(path: str | Path, device: str = "cpu") -> Any:
    """A GPTQ or AWQ folder as a transformers model (GPTQModel picks the kernel for the device)."""
    import torch

    from llmcourse.core.modelio import load_causal_lm

    path = Path(path).resolve()
    with engine_output():
        return load_causal_lm(str(path), dtype=torch.float16 if device == "cuda" else torch.float32, device=device)[0]


def _calibration_rows(blocks: Any) -> list[dict[str, list[int]]]:
    return [{"input_ids": row.tolist(), "attention_mask": [1] * len(row)} for row in blocks]


class GptqModelFormat(QuantFormat):
    """What GPTQ and AWQ share: one engine, bit-width methods, one HF sub-folder per method."""

    module = "gptqmodel"
    extra = "gptq"
    bits: tuple[int, ...] = ()
    group_sizes: tuple[int, ...] = ()

    def methods(self) -> list[str]:
        """Bit widths as `4bit`-style names."""
        return [f"{bits}bit" for bits in self.bits]

    def offers(self, method: str) -> bool:
        """`4bit` (any case)."""
        return method.lower() in self.methods()

    def check_installed(self) -> None:
        """GPTQModel for the quantization, optimum for transformers to reload the result."""
        import importlib.util

        missing = [name for name in ("gptqmodel", "optimum") if importlib.util.find_spec(name) is None]
        if missing:
            raise UserError(f"format '{self.name}' needs {' and '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed",
                            hint=INSTALL_HINT)

    def preflight(self, recipe: Any, source: SourceModel) -> None:
        """Bits and group size valid for the engine; the group size must divide every layer's input."""
        super().preflight(recipe, source)
        section = self.section(recipe)
        if section.group_size not in self.group_sizes:
            raise UserError(f"{self.name}.group_size: {section.group_size} is not one GPTQModel's kernels take",
                            hint=f"use one of {', '.join(map(str, self.group_sizes))} (-1: one group per row)")
        check_group_size(f"{self.name}.group_size", section.group_size, source)

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """`name-GPTQ` / `name-AWQ` (AutoQuant's names); each bit width in its own sub-folder."""
        return output_dir / f"{source.short_name}-{self.name.upper()}"

    def quantize_config(self, section: Any, bits: int) -> Any:
        """GPTQModel's config for one bit width."""
        raise NotImplementedError

    def describe(self, section: Any, bits: int) -> str:
        """One line saying what was made."""
        raise NotImplementedError

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """Calibrate and quantize a fresh copy of the source per bit width, save it as an HF folder."""
        from llmcourse.core.modelio import load_tokenizer, pick_device

        section = self.section(recipe)
        device = pick_device()
        tokenizer = load_tokenizer(str(source.local_dir))
        source_dir = str(Path(source.local_dir).resolve())
        rows = _calibration_rows(calibration())
        outputs = []
        for method in section.methods:
            bits = method_bits(method)
            target = folder / method
            absolute = target.resolve()  # resolved here: GPTQModel runs in a scratch working directory
            # The status starts first, so that the engine's output, held back inside, stays out of it.
            with err.status(f"{self.name} {method}: calibrating on {len(rows)} blocks and quantizing layer by layer"), engine_output():
                from gptqmodel import GPTQModel
                from gptqmodel.utils.backend import BACKEND

                # On a CPU, eager attention: torch's SDPA kernel for GPTQModel's half-precision
                # calibration needs AVX-512 (pack_vnni2) and fails on AVX2-only CPUs.
                attention = {"attn_implementation": "eager"} if device == "cpu" else {}
                model = GPTQModel.load(source_dir, self.quantize_config(section, bits), device=device, **attention)
                # AWQ's default packing kernel is CUDA-only; its plain-torch kernel packs the same layout anywhere.
                backend = BACKEND.TORCH if self.name == "awq" and device == "cpu" else BACKEND.AUTO
                model.quantize(rows, batch_size=1, tokenizer=tokenizer, backend=backend)
                model.save(str(absolute))
                tokenizer.save_pretrained(absolute)
                del model
            err.print(f"  {self.describe(section, bits)}, {len(rows)} calibration blocks of {len(rows[0]['input_ids'])} tokens")
            outputs.append(QuantOutput(self.name, method, target, "gptq", {"bits": bits, "group_size": section.group_size}))
        return outputs

    def usage(self, output: QuantOutput, repo: str) -> str:
        """transformers (with gptqmodel + optimum) or GPTQModel itself reloads the folder quantized."""
        return (f"```python\n# pip install gptqmodel optimum\nfrom transformers import AutoModelForCausalLM\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{repo}", subfolder="{output.method}", device_map="auto")\n\n'
                f'# or with GPTQModel itself\nfrom gptqmodel import GPTQModel\nmodel = GPTQModel.load("{repo}/{output.method}")\n```')


@register_format
class GptqFormat(GptqModelFormat):
    """GPTQ: second-order, calibrated weight rounding, 2/3/4/8 bits."""

    name = "gptq"
    tags = ("gptq", "gptqmodel")
    bits = GPTQ_BITS
    group_sizes = GPTQ_GROUP_SIZES

    def quantize_config(self, section: Any, bits: int) -> Any:
        """bits, group size, damping, act-order and symmetry as the recipe says."""
        from gptqmodel import GPTQConfig

        return GPTQConfig(bits=bits, group_size=section.group_size, damp_percent=section.damp_percent, desc_act=section.desc_act,
                          sym=section.sym)

    def describe(self, section: Any, bits: int) -> str:
        """`gptq 4-bit, group size 128, damp 0.05, desc_act off, symmetric`."""
        return (f"gptq {bits}-bit, group size {section.group_size}, damp {section.damp_percent}, "
                f"desc_act {'on' if section.desc_act else 'off'}, {'symmetric' if section.sym else 'asymmetric'}")


@register_format
class AwqFormat(GptqModelFormat):
    """AWQ: activation-aware scaling before rounding, 4-bit, GEMM or GEMV layout."""

    name = "awq"
    tags = ("awq", "gptqmodel")
    bits = AWQ_BITS
    group_sizes = AWQ_GROUP_SIZES

    def quantize_config(self, section: Any, bits: int) -> Any:
        """bits, group size, zero point (asymmetric) and the kernel layout."""
        from gptqmodel import AWQConfig

        return AWQConfig(bits=bits, group_size=section.group_size, sym=not section.zero_point, format=section.kernel)

    def describe(self, section: Any, bits: int) -> str:
        """`awq 4-bit, group size 128, zero point, gemm layout`."""
        return f"awq {bits}-bit, group size {section.group_size}, {'zero point' if section.zero_point else 'symmetric'}, {section.kernel} layout"
