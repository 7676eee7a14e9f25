"""What every quantization format is: `QuantFormat`, its inputs and outputs, and the registry it joins.

A format names its engine's methods, checks its recipe section before any weight is loaded
(`preflight`), and writes its outputs into one folder (`produce`); the quality report, the card and
the atomic folder are the same for every format (`llmcourse.quantize.run`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llmcourse.core.errors import UserError, did_you_mean
from llmcourse.core.libraries import installed, pip_line

FORMATS: dict[str, "QuantFormat"] = {}


@dataclass(frozen=True)
class SourceModel:
    """The model being quantized: what the user named, and the local folder it resolved to."""

    name: str
    local_dir: Path
    short_name: str
    card: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantOutput:
    """One quantized artefact: a `.gguf` file or an HF folder, with what it costs and how it scores."""

    format: str
    method: str
    path: Path
    loader: str  # "gguf" (llama.cpp), "hf" (transformers), "gptq" (transformers + GPTQModel) or "hqq" (the hqq package)
    notes: dict[str, Any] = field(default_factory=dict)


class QuantFormat:
    """Base of every format; subclasses set the names and implement `methods` and `produce`."""

    name: str = ""
    module: str = ""  # the engine's import name, checked before anything else
    extra: str = ""  # pip extra that installs it
    library_name: str = "transformers"
    tags: tuple[str, ...] = ()

    def methods(self) -> list[str]:
        """Every method name this format's engine offers."""
        raise NotImplementedError

    def section(self, recipe: Any) -> Any:
        """This format's recipe section."""
        return getattr(recipe, self.name)

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """The output folder this format writes (AutoQuant's names)."""
        return output_dir / f"{source.short_name}-{self.name.upper()}"

    def offers(self, method: str) -> bool:
        """Whether `method` (as typed on the command line) is one of this format's."""
        return method in self.methods() or method.upper() in self.methods()

    def check_installed(self) -> None:
        """A one-line error naming the pip install when the engine is missing."""
        if self.module and not installed(self.module):
            raise UserError(f"format '{self.name}' needs {self.module}, which is not installed", hint=pip_line(self.extra))

    def check_methods(self, methods: list[str]) -> None:
        """Every requested method must be one the engine offers; the error lists them."""
        valid = self.methods()
        for method in methods:
            if method not in valid:
                raise UserError(f"{self.name}.methods: unknown method '{method}'{did_you_mean(method, valid)}",
                                hint=f"{self.name} methods: {', '.join(valid)}")
        if not methods:
            raise UserError(f"{self.name}.methods: give at least one method", hint=f"{self.name} methods: {', '.join(valid)}")

    def preflight(self, recipe: Any, source: SourceModel) -> None:
        """Checks that need no weights: engine installed, methods and options valid, files present."""
        self.check_installed()
        self.check_methods(self.section(recipe).methods)

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """Write the quantized outputs into `folder` (a partial folder); `calibration()` gives token blocks."""
        raise NotImplementedError

    def usage(self, output: QuantOutput, repo: str) -> str:
        """A markdown usage snippet for the card."""
        return (f"```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{repo}")\ntokenizer = AutoTokenizer.from_pretrained("{repo}")\n```')


def method_bits(method: str) -> int:
    """The bit width a `4bit`-style method names: `4bit` → 4 (hqq, gptq, awq)."""
    return int(method.lower().removesuffix("bit"))


def check_group_size(field: str, group_size: int, source: SourceModel) -> None:
    """A quantization group must divide every linear layer's input (the hidden and MLP sizes);
    the hint names the largest power of two up to `group_size` that does (-1: no groups)."""
    config = json.loads((source.local_dir / "config.json").read_text(encoding="utf-8"))
    for key in ("hidden_size", "intermediate_size"):
        size = config.get(key)
        if group_size > 0 and isinstance(size, int) and size % group_size:
            group = 1
            while size % (group * 2) == 0 and group * 2 <= group_size:
                group *= 2
            raise UserError(f"{field}: {group_size} does not divide the model's {key} ({size})", hint=f"use a divisor of {size}, e.g. {group}")


def register_format(cls: type[QuantFormat]) -> type[QuantFormat]:
    """Class decorator: add one instance of the format to `FORMATS`."""
    FORMATS[cls.name] = cls()
    return cls
