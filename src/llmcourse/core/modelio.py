"""Loading models and tokenizers safely: local folders or hub ids, safetensors only by default."""

from __future__ import annotations

import os
import re
import socket
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse
from typing import Any

from llmcourse.core.errors import UserError

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.\-]*/[\w.\-]+$")
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
LAB_BASE = "lab://base"  # the lab's pretrained base, resolved by the command line (built on first use)


def looks_like_local_path(name: str) -> bool:
    """True for names that can only be paths (`./x`, `/x`, `~/x`, `x.ext`, three or more parts)."""
    if name.startswith((".", "/", "~")) or Path(name).exists():
        return True
    return not HUB_ID.match(name)


def hub_offline() -> bool:
    """Whether the user asked for no hub access (`HF_HUB_OFFLINE=1`)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@lru_cache(maxsize=1)
def hub_reachable(timeout: float = 1.5) -> bool:
    """Whether the hub's host accepts a connection (`HF_ENDPOINT`, default huggingface.co); asked
    once per process, so that no network costs seconds, not the libraries' retries."""
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or (80 if endpoint.scheme == "http" else 443)),
                                 timeout=timeout).close()
        return True
    except OSError:
        return False


def in_hub_cache(repo_id: str) -> bool:
    """Whether a hub model has a snapshot in the local Hugging Face cache (read without importing it)."""
    hub = os.environ.get("HF_HUB_CACHE") or os.path.join(os.environ.get("HF_HOME") or os.path.expanduser("~/.cache/huggingface"), "hub")
    return any((Path(hub) / f"models--{repo_id.replace('/', '--')}" / "snapshots").glob("*/config.json"))


def check_hub_access(repo_id: str) -> None:
    """Before anything reads `repo_id` from the hub: with no network, use the local cache (and say
    so) or fail at once with the reason, instead of the hub client's minute of retries."""
    if hub_offline() or hub_reachable():
        return
    if in_hub_cache(repo_id):
        os.environ["HF_HUB_OFFLINE"] = "1"  # read before the hub client is imported: cache only
        from llmcourse.core.console import err

        err.print(f"[yellow]note:[/] the Hugging Face Hub is not reachable; using {repo_id} from the local cache")
        return
    raise UserError(f"model '{repo_id}': the Hugging Face Hub is not reachable from this machine, and the model is not in the local cache",
                    hint="connect to the network, or pass a local model folder")


def check_model_source(name: str, allow_pickle: bool = False) -> str:
    """Validate a model reference before loading it; returns a local path or the hub id.

    Local folders must exist, hold a `config.json`, and hold safetensors weights unless
    `allow_pickle` (pickle files can run code when loaded). A hub id needs the hub or the cache.
    """
    if name == LAB_BASE:
        return name
    if not looks_like_local_path(name):
        check_hub_access(name)
        return name
    path = Path(name).expanduser()
    if not path.exists():
        raise UserError(f"model not found: {name}", hint="pass an existing model folder or a hub id such as Qwen/Qwen2.5-0.5B")
    if not path.is_dir():
        raise UserError(f"model path is a file, not a model folder: {name}")
    if not (path / "config.json").exists():
        raise UserError(f"{name}: no config.json, so this is not a Hugging Face model folder")
    safetensors = list(path.glob("*.safetensors"))
    pickles = [p for p in path.iterdir() if p.suffix in PICKLE_SUFFIXES]
    if not safetensors and pickles and not allow_pickle:
        raise UserError(
            f"{name}: only pickle weights ({pickles[0].name}); refusing to load them because pickle files can run code",
            hint="convert the checkpoint to safetensors, or pass --allow-pickle if you trust its source",
        )
    if not safetensors and not pickles:
        raise UserError(f"{name}: no weights found (expected *.safetensors)")
    return str(path)


def load_tokenizer(name: str, trust_remote_code: bool = False) -> Any:
    """A tokenizer from a folder or hub id, with hub failures turned into a UserError."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load tokenizer '{name}': {_first_line(exc)}", hint=hub_failure_hint(name)) from exc


def load_causal_lm(
    name: str,
    *,
    allow_pickle: bool = False,
    trust_remote_code: bool = False,
    device: str | None = None,
    dtype: Any = None,
) -> tuple[Any, Any]:
    """Load `(model, tokenizer)` from a folder or hub id, safely, in eval mode."""
    from transformers import AutoModelForCausalLM

    source = check_model_source(name, allow_pickle)
    tokenizer = load_tokenizer(source, trust_remote_code)
    try:
        model = AutoModelForCausalLM.from_pretrained(
            source,
            use_safetensors=None if allow_pickle else True,
            trust_remote_code=trust_remote_code,
            dtype=dtype if dtype is not None else "auto",
        )
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot load model '{name}': {_first_line(exc)}", hint=hub_failure_hint(name)) from exc
    model.to(device or pick_device())
    model.eval()
    return model, tokenizer


def pick_device() -> str:
    """`cuda` when a GPU is present, else `cpu`."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def hub_failure_hint(name: str) -> str | None:
    """What to do when reading hub id `name` failed, given whether HF_HUB_OFFLINE is set."""
    if looks_like_local_path(name):
        return None
    if hub_offline():
        return "HF_HUB_OFFLINE is set, so hub ids are read from the local Hugging Face cache only: unset it to download"
    return "check the id (and log in for gated models); with no network, a hub id must be in the local Hugging Face cache"


def compute_dtype() -> Any:
    """bf16 on a GPU that has it, fp16 on other GPUs, fp32 on the CPU."""
    import torch

    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def is_adapter_folder(path: str | Path) -> bool:
    """True for a PEFT adapter folder (it has adapter_config.json)."""
    return (Path(path) / "adapter_config.json").exists()


def merge_adapter(adapter_dir: str | Path, base_model: str | None = None, allow_pickle: bool = False,
                  trust_remote_code: bool = False) -> tuple[Any, Any, str]:
    """Reload the base in full precision, apply the adapter and merge it; returns (model, tokenizer, base)."""
    import json

    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    adapter_dir = Path(adapter_dir)
    if not is_adapter_folder(adapter_dir):
        raise UserError(f"{adapter_dir}: not a LoRA adapter folder (no adapter_config.json)")
    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    base = base_model or config.get("base_model_name_or_path")
    if not base:
        raise UserError(f"{adapter_dir}: the adapter does not name its base model", hint="pass --base-model")
    source = check_model_source(base, allow_pickle)
    import torch

    dtype = torch.float32 if not torch.cuda.is_available() else compute_dtype()
    model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype, trust_remote_code=trust_remote_code,
                                                 use_safetensors=None if allow_pickle else True)
    tokenizer = load_tokenizer(str(adapter_dir) if (adapter_dir / "tokenizer_config.json").exists() else source)
    if len(tokenizer) > model.get_input_embeddings().weight.shape[0]:
        model.resize_token_embeddings(len(tokenizer))
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return merged, tokenizer, base
