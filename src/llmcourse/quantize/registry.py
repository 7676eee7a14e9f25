"""The quantization formats by name: the built-in format modules register themselves in
`llmcourse.quantize.base.FORMATS` when imported; this module imports them and looks names up."""

from __future__ import annotations

from llmcourse.core.errors import UserError, did_you_mean
from llmcourse.quantize.base import FORMATS, QuantFormat


def get_format(name: str) -> QuantFormat:
    """The registered format called `name`; the error lists the valid names."""
    _load_builtin_formats()
    if name not in FORMATS:
        valid = sorted(FORMATS)
        raise UserError(f"formats: unknown format '{name}'{did_you_mean(name, valid)}", hint=f"valid formats: {', '.join(valid)}")
    return FORMATS[name]


def _load_builtin_formats() -> None:
    # The format modules import their engines lazily, so importing them here is cheap.
    import llmcourse.quantize.formats.bnb  # noqa: F401
    import llmcourse.quantize.formats.exl2  # noqa: F401
    import llmcourse.quantize.formats.gguf  # noqa: F401
    import llmcourse.quantize.formats.gptq  # noqa: F401
    import llmcourse.quantize.formats.hqq  # noqa: F401
    import llmcourse.quantize.formats.int8  # noqa: F401
