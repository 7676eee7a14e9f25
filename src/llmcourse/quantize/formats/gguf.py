"""GGUF through llama.cpp: its own converter to F32/F16/BF16, then `llama_model_quantize` per type.

Every type llama.cpp offers is a method (read from llama-cpp-python's `LLAMA_FTYPE_*` constants);
files are named like AutoQuant's, `name.Q4_K_M.gguf`. Types that llama.cpp refuses without an
importance matrix get one computed from the calibration text (`llmcourse.quantize.llamacpp.imatrix`).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel, register_format

# llama.cpp's quantize tool refuses these without an importance matrix.
IMATRIX_REQUIRED = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "Q2_K_S")
FLOAT_TYPES = {"F32": "f32", "F16": "f16", "BF16": "bf16"}
SOURCE_DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16"}


def quant_types() -> dict[str, int]:
    """llama.cpp's file types by name (`Q4_K_M` → its `llama_ftype` code)."""
    import llama_cpp

    types = {"F32": llama_cpp.LLAMA_FTYPE_ALL_F32}
    for key, value in vars(llama_cpp).items():
        if key.startswith("LLAMA_FTYPE_MOSTLY_") and isinstance(value, int):
            types[key.removeprefix("LLAMA_FTYPE_MOSTLY_")] = value
    return types


def intermediate_type(model_dir: Path) -> str:
    """The lossless GGUF type to convert to first: the source's own precision (F16 if unknown)."""
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float16").removeprefix("torch.")
    return SOURCE_DTYPES.get(dtype, "F16")


def imatrix_plan(methods: list[str], imatrix: str | None) -> str:
    """Where the importance matrix comes from: `file`, `auto` (asked), `needed` (a type requires one), or `none`."""
    if imatrix not in (None, "auto"):
        return "file"
    if imatrix == "auto":
        return "auto"
    return "needed" if any(m in IMATRIX_REQUIRED for m in methods) else "none"


def gguf_file_name(short_name: str, method: str) -> str:
    """llama.cpp's naming: `name.Q4_K_M.gguf`."""
    return f"{short_name}.{method}.gguf"


def convert(model_dir: Path, out_file: Path, outtype: str, pre_tokenizer: str | None) -> None:
    """Run llama.cpp's converter (in a subprocess, with its vendored gguf-py) on an HF folder."""
    from llmcourse.quantize.llamacpp.source import converter_dir

    command = [sys.executable, "-m", "llmcourse.quantize.llamacpp.convert_entry", str(converter_dir()), pre_tokenizer or "auto", "--",
               str(model_dir), "--outfile", str(out_file), "--outtype", FLOAT_TYPES[outtype]]
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "NO_LOCAL_GGUF": "1"})
    if result.returncode != 0 or not out_file.is_file():
        lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
        last = lines[-1] if lines else f"exit code {result.returncode}"
        hint = None
        if "pre-tokenizer was not recognized" in result.stderr:
            hint = "name llama.cpp's pre-tokenizer for this tokenizer with gguf.pre_tokenizer (e.g. gpt-2, llama-bpe, qwen2)"
        elif "not supported" in last:
            hint = "llama.cpp cannot convert this architecture (see its convert_hf_to_gguf.py --print-supported-models)"
        raise UserError(f"llama.cpp's converter failed on {model_dir}: {last}", hint=hint)


_LOG_CALLBACK: Any = None  # kept alive for as long as llama.cpp may call it


def quiet_llama_cpp_log() -> None:
    """Route llama.cpp's log through `llama_log_set` (its public C API): errors only, everything
    with `LLMCOURSE_DEBUG=1`."""
    global _LOG_CALLBACK
    import llama_cpp

    if _LOG_CALLBACK is None:
        verbose = os.environ.get("LLMCOURSE_DEBUG") == "1"

        @llama_cpp.llama_log_callback
        def forward(level: int, text: bytes, user_data: Any) -> None:
            if verbose or level == 3:  # GGML_LOG_LEVEL_ERROR
                sys.stderr.write(text.decode("utf-8", errors="replace"))

        _LOG_CALLBACK = forward
    llama_cpp.llama_log_set(_LOG_CALLBACK, ctypes.c_void_p(0))


def quantize_file(src: Path, dst: Path, method: str, imatrix: dict[str, Any] | None) -> None:
    """`llama_model_quantize` from `src` to `dst` as `method`, with an optional importance matrix."""
    import llama_cpp

    quiet_llama_cpp_log()  # llama.cpp logs every tensor otherwise
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = quant_types()[method]
    params.nthread = os.cpu_count() or 1
    keep_alive = []
    if imatrix:
        entries = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()  # NULL-terminated
        for index, (name, values) in enumerate(imatrix.items()):
            import numpy as np

            array = np.ascontiguousarray(values, dtype=np.float32)
            keep_alive.append(array)
            entries[index].name = name.encode()
            entries[index].data = array.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entries[index].size = array.size
        params.imatrix = ctypes.cast(entries, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    code = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    if code != 0 or not dst.is_file():
        raise UserError(f"llama.cpp could not quantize to {method} (code {code})",
                        hint="IQ types at 1-2 bits need gguf.imatrix (auto or a file)" if method.startswith("IQ") else None)


def gguf_architecture(path: Path) -> tuple[str, int]:
    """(`general.architecture`, block count) of a GGUF file, read without loading tensors."""
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    arch = _field_value(reader, "general.architecture")
    return str(arch), int(_field_value(reader, f"{arch}.block_count"))


def _field_value(reader: Any, key: str) -> Any:
    field = reader.fields[key]
    return field.contents() if hasattr(field, "contents") else field.parts[field.data[0]].tobytes().decode()


@register_format
class GgufFormat(QuantFormat):
    """llama.cpp GGUF files, several quant types in one folder."""

    name = "gguf"
    module = "llama_cpp"
    extra = "gguf"
    library_name = "gguf"
    tags = ("gguf",)

    def methods(self) -> list[str]:
        """Every llama.cpp file type."""
        return list(quant_types())

    def preflight(self, recipe: Any, source: SourceModel) -> None:
        """Engine, converter, types, imatrix file: all checked before any weight is read."""
        super().preflight(recipe, source)
        from llmcourse.quantize.llamacpp.source import converter_dir

        converter_dir()
        section = recipe.gguf
        if section.imatrix not in (None, "auto"):
            path = Path(section.imatrix)
            if not path.is_file():
                raise UserError(f"gguf.imatrix: file not found: {path}", hint="pass an imatrix .gguf file, or `auto` to compute one")
            if path.suffix != ".gguf":
                raise UserError(f"gguf.imatrix: {path} is not a GGUF imatrix", hint="llama-imatrix writes GGUF by default; or use `auto`")

    def folder(self, recipe: Any, source: SourceModel, output_dir: Path) -> Path:
        """`name-GGUF`, like AutoQuant."""
        return output_dir / f"{source.short_name}-GGUF"

    def produce(self, recipe: Any, source: SourceModel, folder: Path, calibration: Callable[[], Any]) -> list[QuantOutput]:
        """Convert once, then quantize to every requested type."""
        section = recipe.gguf
        first = intermediate_type(source.local_dir)
        base_file = folder / gguf_file_name(source.short_name, first)
        err.print(f"converting {source.name} to GGUF {first} with llama.cpp's converter")
        convert(source.local_dir, base_file, first, section.pre_tokenizer)
        parity = self._tokenizer_parity(source, base_file, calibration)
        imatrix = self._imatrix(section, source, base_file, folder, calibration)
        outputs = []
        for method in section.methods:
            target = folder / gguf_file_name(source.short_name, method)
            if target != base_file:
                use = imatrix if imatrix and method not in FLOAT_TYPES else None
                quantize_file(base_file, target, method, use)
            outputs.append(QuantOutput("gguf", method, target, "gguf", {"imatrix": bool(imatrix) and method not in FLOAT_TYPES,
                                                                         "tokenizer_parity": round(parity.share, 4)}))
            err.print(f"  {target.name}: {target.stat().st_size / 1e6:.1f} MB")
        if first not in section.methods and not section.keep_intermediate:
            base_file.unlink()
        return outputs

    def _tokenizer_parity(self, source: SourceModel, base_file: Path, calibration: Callable[[], Any]) -> Any:
        from llmcourse.core.modelio import load_tokenizer
        from llmcourse.quantize.llamacpp import parity as parity_module

        try:
            texts = parity_module.texts_from_blocks(load_tokenizer(str(source.local_dir)), calibration())
        except UserError:  # calibration text out of reach (a hub dataset offline): the tricky strings alone
            texts = []
        parity = parity_module.check(source.local_dir, base_file, texts)
        if parity.same == parity.total:
            err.print(f"tokenizer parity: {parity.same}/{parity.total} strings encode identically in llama.cpp and transformers")
        else:
            err.print(f"[bold red]warning: tokenizer parity {parity.same}/{parity.total}[/]: llama.cpp tokenizes this GGUF differently "
                      f"from transformers (e.g. {parity.differing[0]!r}), so the model would see other tokens than it was trained on. "
                      "The converter's pre-tokenizer is likely wrong for this tokenizer: name the right one with --pre-tokenizer "
                      "(gguf.pre_tokenizer: gpt-2, llama-bpe, qwen2, ...).")
        return parity

    def _imatrix(self, section: Any, source: SourceModel, base_file: Path, folder: Path, calibration: Callable[[], Any]) -> dict[str, Any] | None:
        from llmcourse.quantize.llamacpp import imatrix as imatrix_module

        plan = imatrix_plan(section.methods, section.imatrix)
        if plan == "file":
            return imatrix_module.read(Path(section.imatrix))
        if plan == "none":
            return None
        if plan == "needed":
            needed = ", ".join(m for m in section.methods if m in IMATRIX_REQUIRED)
            err.print(f"{needed} need an importance matrix: computing one from the calibration text")
        arch, blocks = gguf_architecture(base_file)
        names = imatrix_module.gguf_tensor_names(base_file)
        data, counts = imatrix_module.compute(source.local_dir, calibration(), arch, blocks, names)
        imatrix_module.write(folder / "imatrix.gguf", data, counts)
        return {name: data[name] / counts[name] for name in data}

    def usage(self, output: QuantOutput, repo: str) -> str:
        """llama.cpp and llama-cpp-python snippets."""
        file = output.path.name
        return (f"```bash\nllama-cli -m {file} -p \"Hello\"\n```\n\n```python\nfrom llama_cpp import Llama\n\n"
                f'llm = Llama(model_path="{file}")\nprint(llm("Hello", max_tokens=32)["choices"][0]["text"])\n```')

