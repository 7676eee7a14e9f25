"""ExLlamaV2 (EXL2): mixed-precision quantization at a target bits per weight. CUDA only —
exllamav2 compiles CUDA kernels on import and converts on cuda:0 — so on a machine without a GPU
the format stops in preflight, before any weight is read. The conversion runs exllamav2's own
converter in a work folder that survives an interruption (run again to resume); only the compiled
model is kept in the output (the course's upload carried the converter's intermediate files)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from llmcourse.core.errors import UserError
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel, register_format


def _bpw(value: str) -> float:
    try:
        bits = float(value)
    except ValueError:
        raise UserError(f"exl2.methods: '{value}' is not a number of bits per weight", hint="e.g. 4.0, 5.0, 6.5") from None
    if not 2.0 <= bits <= 8.0:
        raise UserError(f"exl2.methods: {value} bits per weight is outside ExLlamaV2's range 2.0–8.0")
    return bits


@register_format
class Exl2Format(QuantFormat):
    """ExLlamaV2 at one or more bits-per-weight targets."""

    name = "exl2"
    module = "exllamav2"
    extra = "exl2"
    tags = ("exl2",)
    library_name = "exllamav2"

    def methods(self) -> list[str]:
        """Bits per weight are numbers, not names: any value from 2.0 to 8.0."""
        return ["2.0 … 8.0 (bits per weight)"]

    def check_methods(self, methods: list[str]) -> None:
        """Every method is a bits-per-weight number in range."""
        if not methods:
            raise UserError("exl2.methods: give at least one bits-per-weight value", hint="e.g. 4.0")
        for method in methods:
            _bpw(method)

    def offers(self, method: str) -> bool:
        """Any bits-per-weight number."""
        try:
            float(method)
        except ValueError:
            return False
        return True

    def check_installed(self) -> None:
        """A CUDA device first (the reason this format cannot run elsewhere), then the engine."""
        import torch

        if not torch.cuda.is_available():
            raise UserError("format 'exl2' needs a CUDA GPU: ExLlamaV2 compiles CUDA kernels and converts on cuda:0",
                            hint="run it on a GPU machine, or pick gguf, bnb or int8 here")
        super().check_installed()

    def preflight(self, recipe: Any, source: SourceModel) -> None:
        """CUDA, the engine, the bits-per-weight values; the report cannot score EXL2 yet."""
        super().preflight(recipe, source)
        if recipe.report:
            raise UserError("the quality report cannot score exl2 yet (it needs exllamav2's runtime)", hint="pass --no-report")

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """`name-4.0bpw-exl2` (AutoQuant's name; one folder per run, one sub-folder per extra target)."""
        return output_dir / f"{source.short_name}-{_bpw(recipe.exl2.methods[0]):.1f}bpw-exl2"

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """Run exllamav2's converter per target into a resumable work folder; keep only the compiled model."""
        outputs = []
        for index, method in enumerate(recipe.exl2.methods):
            bits = _bpw(method)
            target = folder if index == 0 else folder / f"{bits:.1f}bpw"
            work = Path(recipe.exl2.work_dir or folder.parent / f".{folder.name.removesuffix('.partial')}-work") / f"{bits:.1f}"
            work.mkdir(parents=True, exist_ok=True)
            compiled = work / "compiled"
            command = [sys.executable, "-m", "exllamav2.conversion.convert_exl2", "-i", str(source.local_dir), "-o", str(work),
                       "-cf", str(compiled), "-b", f"{bits}", "-hb", str(recipe.exl2.head_bits)]
            if subprocess.call(command) != 0:
                raise RuntimeError(f"exllamav2's converter failed at {bits} bpw (its work folder {work} resumes the job)")
            target.mkdir(parents=True, exist_ok=True)
            for item in compiled.iterdir():
                shutil.move(str(item), target / item.name)
            shutil.rmtree(work, ignore_errors=True)
            outputs.append(QuantOutput("exl2", f"{bits:.1f}bpw", target, "exl2", {"head_bits": recipe.exl2.head_bits}))
        return outputs
