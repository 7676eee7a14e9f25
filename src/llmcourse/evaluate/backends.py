"""Eval back-ends: how each kind of model the tool writes reaches lm-eval. A registry: each back-end
says whether it takes a model reference, checks it without loading weights, and builds lm-eval's
model (a registered name plus model_args, or an LM object)."""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from llmcourse.core.errors import UserError


@dataclass
class EvalModel:
    """One model to evaluate, resolved but not loaded."""

    spec: str  # as the user wrote it
    label: str  # short name for tables and folders
    backend: str
    model_args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Backend:
    """How one kind of model is recognized, checked and handed to lm-eval."""

    name: str
    matches: Callable[[str], bool]
    resolve: Callable[[str, bool], EvalModel]
    build: Callable[[EvalModel, Any, str], tuple[Any, dict[str, Any] | None]]  # (model, batch_size, device) -> simple_evaluate's model, model_args


BACKENDS: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add a back-end; the first registered one that matches a model reference is used."""
    BACKENDS[backend.name] = backend
    return backend


def resolve(spec: str, allow_pickle: bool = False) -> EvalModel:
    """The back-end and arguments for a model reference (no weights are read)."""
    for backend in BACKENDS.values():
        if backend.matches(spec):
            return backend.resolve(spec, allow_pickle)
    raise UserError(f"no eval back-end takes {spec}")


def label_for(spec: str) -> str:
    """A short, readable name: the folder or file name, or the hub id's last part. A folder inside
    another output (`name-GPTQ/4bit`, `adapter/merged`: the parent has a card) is `parent/folder`."""
    path = Path(spec.rstrip("/"))
    if path.parent.name and (path.parent / "README.md").is_file() and path.is_dir():
        return f"{path.parent.name}/{path.name}"
    return path.name or spec


def _is_gguf(spec: str) -> bool:
    return spec.endswith(".gguf")


def _resolve_gguf(spec: str, allow_pickle: bool) -> EvalModel:
    if not Path(spec).expanduser().is_file():
        raise UserError(f"GGUF file not found: {spec}")
    if importlib.util.find_spec("llama_cpp") is None:
        raise UserError("evaluating a .gguf file needs llama-cpp-python", hint="pip install 'llmcourse[gguf]' (make install builds it)")
    return EvalModel(spec, label_for(spec), "gguf", {"path": str(Path(spec).expanduser())})


def _build_gguf(model: EvalModel, batch_size: Any, device: str) -> tuple[Any, dict[str, Any] | None]:
    from llmcourse.evaluate.gguf_lm import GgufLM

    return GgufLM(model.model_args["path"]), None


def _is_adapter(spec: str) -> bool:
    return (Path(spec).expanduser() / "adapter_config.json").is_file()


def _resolve_adapter(spec: str, allow_pickle: bool) -> EvalModel:
    folder = Path(spec).expanduser()
    base = json.loads((folder / "adapter_config.json").read_text(encoding="utf-8")).get("base_model_name_or_path")
    if not base:
        raise UserError(f"{spec}: adapter_config.json names no base_model_name_or_path", hint="set it to the base model's folder or hub id")
    from llmcourse.core.modelio import check_model_source

    check_model_source(base, allow_pickle)
    tokenizer = str(folder) if (folder / "tokenizer_config.json").is_file() else base
    return EvalModel(spec, label_for(spec), "hf", {"pretrained": base, "peft": str(folder), "tokenizer": tokenizer})


QUANT_LIBRARIES = {"gptq": ("gptqmodel", "gptq"), "awq": ("gptqmodel", "gptq"), "bitsandbytes": ("bitsandbytes", "bnb"),
                   "hqq": ("hqq", "hqq")}


def _resolve_hf(spec: str, allow_pickle: bool) -> EvalModel:
    from llmcourse.core.modelio import check_model_source

    source = check_model_source(spec, allow_pickle)
    config = Path(source) / "config.json"
    if config.is_file():
        method = (json.loads(config.read_text(encoding="utf-8")).get("quantization_config") or {}).get("quant_method")
        library, extra = QUANT_LIBRARIES.get(str(method), (None, None))
        if library and importlib.util.find_spec(library) is None:
            raise UserError(f"{spec} is a {method} model and needs {library}", hint=f"pip install 'llmcourse[{extra}]'")
    return EvalModel(spec, label_for(spec), "hf", {"pretrained": source})


def _build_hf(model: EvalModel, batch_size: Any, device: str) -> tuple[Any, dict[str, Any] | None]:
    dtype = "float32" if device == "cpu" else "auto"
    return "hf", {**model.model_args, "dtype": dtype}


register_backend(Backend("gguf", _is_gguf, _resolve_gguf, _build_gguf))
register_backend(Backend("peft", _is_adapter, _resolve_adapter, _build_hf))
register_backend(Backend("hf", lambda spec: True, _resolve_hf, _build_hf))
