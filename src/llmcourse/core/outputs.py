"""Output folders that never look complete unless they are, and the files every output carries.

`atomic_output` writes into `<out>.partial/` and renames it into place at the end; an existing
output is refused without `overwrite`. Every folder gets a model card (`README.md` with Hugging Face
front matter), `llmcourse.yaml` (the resolved recipe and library versions) and, for training,
`metrics.jsonl`.
"""

from __future__ import annotations

import contextlib
import json
import platform
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import yaml

from llmcourse import __version__
from llmcourse.core.errors import UserError

ENGINES = (
    "torch", "transformers", "tokenizers", "accelerate", "peft", "trl", "datasets", "safetensors",
    "bitsandbytes", "mergekit", "llama_cpp_python", "gguf", "lm_eval", "gptqmodel", "hqq", "exllamav2",
)
PARTIAL_SUFFIX = ".partial"


def library_versions(names: tuple[str, ...] = ENGINES) -> dict[str, str]:
    """Installed versions of the engines (without importing them); absent ones are omitted."""
    versions = {"llmcourse": __version__, "python": platform.python_version()}
    for name in names:
        try:
            versions[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            continue
    return versions


def check_output_free(path: str | Path, overwrite: bool) -> Path:
    """Refuse an existing output unless `overwrite`; returns the path. Call before heavy work."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise UserError(f"output already exists: {path}", hint="pass --overwrite to replace it, or choose another --output-dir")
    if path.exists() and not path.is_dir():
        raise UserError(f"output path is a file, not a folder: {path}")
    return path


def partial_path(path: str | Path) -> Path:
    """The `.partial` sibling an output is written into before it is complete."""
    final = Path(path)
    return final.with_name(final.name + PARTIAL_SUFFIX)


@contextlib.contextmanager
def atomic_output(path: str | Path, overwrite: bool = False, resume: bool = False, main_process: bool = True) -> Iterator[Path]:
    """Yield a `.partial` folder to write into; rename it to `path` only if the block succeeds.

    On a user error the partial folder is removed; on any other failure (or an interruption) it is
    kept, since its name says it is incomplete and it may hold checkpoints to `resume` from. In a
    multi-process run only the main process creates and renames; the others just write into it.
    """
    final = check_output_free(path, overwrite)
    partial = partial_path(final)
    if not main_process:
        yield partial
        return
    if resume and not partial.exists():
        raise UserError(f"nothing to resume: {partial} does not exist", hint="start the run without --resume")
    if partial.exists() and not resume:
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    try:
        yield partial
    except UserError:
        if not resume:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    if final.exists():
        previous = final.with_name(final.name + ".previous")
        shutil.rmtree(previous, ignore_errors=True)
        final.rename(previous)
        partial.rename(final)
        shutil.rmtree(previous, ignore_errors=True)
    else:
        partial.rename(final)


def write_run_record(folder: Path, command: str, recipe: dict[str, Any], summary: dict[str, Any] | None = None) -> Path:
    """Write `llmcourse.yaml`: the command, the resolved recipe, library versions and a summary."""
    record = {
        "command": command,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": library_versions(),
        "recipe": recipe,
    }
    if summary:
        record["summary"] = summary
    target = folder / "llmcourse.yaml"
    target.write_text(yaml.safe_dump(record, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return target


def replace_text(path: Path, text: str) -> Path:
    """Write `text` to `path` through a temporary file renamed over it, so that another process
    reading the file at the same moment (two runs sharing a cache) sees a whole file, never half."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, data: Any) -> Path:
    """Write `data` as indented JSON."""
    path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def write_model_card(
    folder: Path,
    *,
    title: str,
    description: str,
    recipe_yaml: str,
    command: str,
    base_model: str | list[str] | None = None,
    tags: list[str] | None = None,
    license: str | None = None,
    datasets: list[str] | None = None,
    pipeline_tag: str = "text-generation",
    library_name: str = "transformers",
    results: dict[str, Any] | None = None,
    usage: str | None = None,
    appendix: str | None = None,
) -> Path:
    """Write a Hugging Face model card: YAML front matter, description, results, recipe, usage.

    `usage` (markdown) replaces the transformers snippet; `appendix` (markdown) goes at the end.
    """
    front: dict[str, Any] = {}
    if base_model:
        front["base_model"] = base_model
    front["tags"] = sorted({"llmcourse", *(tags or [])})
    front["license"] = license or "other"
    front["library_name"] = library_name
    if datasets:
        front["datasets"] = datasets
    front["pipeline_tag"] = pipeline_tag
    parts = [
        "---",
        yaml.safe_dump(front, sort_keys=False, allow_unicode=True).rstrip(),
        "---",
        "",
        f"# {title}",
        "",
        description.strip(),
        "",
    ]
    if results:
        parts += ["## Results", "", "| metric | value |", "| --- | --- |"]
        parts += [f"| {key} | {_fmt(value)} |" for key, value in results.items()]
        parts.append("")
    parts += [
        "## Recipe",
        "",
        f"Made with `llmcourse {command}` from this recipe:",
        "",
        "```yaml",
        recipe_yaml.rstrip(),
        "```",
        "",
        "## Usage",
        "",
    ]
    if usage:
        parts += [usage.strip(), ""] + ([appendix.strip(), ""] if appendix else [])
        return _write_card(folder, parts)
    parts += [
        "```python",
        "from transformers import AutoModelForCausalLM, AutoTokenizer",
        "",
        f'tokenizer = AutoTokenizer.from_pretrained("{folder_name_for_usage(folder)}")',
        f'model = AutoModelForCausalLM.from_pretrained("{folder_name_for_usage(folder)}")',
        'inputs = tokenizer("Q: Is 12 even or odd?\\nA:\\n", return_tensors="pt")',
        "print(tokenizer.decode(model.generate(**inputs, max_new_tokens=8)[0]))",
        "```",
        "",
        f"Or from the command line: `llmcourse generate {folder_name_for_usage(folder)} --prompt \"...\"`.",
        "",
    ]
    return _write_card(folder, parts + ([appendix.strip(), ""] if appendix else []))


def _write_card(folder: Path, parts: list[str]) -> Path:
    target = folder / "README.md"
    target.write_text("\n".join(parts), encoding="utf-8")
    return target


def folder_name_for_usage(folder: Path) -> str:
    """The name a user would pass to `from_pretrained`: the final folder, not the `.partial` one."""
    name = folder.name
    return name[: -len(PARTIAL_SUFFIX)] if name.endswith(PARTIAL_SUFFIX) else name


def read_card_metadata(folder: str | Path) -> dict[str, Any]:
    """The YAML front matter of a folder's `README.md` (empty if there is none)."""
    card = Path(folder) / "README.md"
    if not card.exists():
        return {}
    text = card.read_text(encoding="utf-8")
    if not text.startswith("---"):
        return {}
    _, _, rest = text.partition("---")
    front, sep, _ = rest.partition("\n---")
    if not sep:
        return {}
    loaded = yaml.safe_load(front)
    return loaded if isinstance(loaded, dict) else {}


class MetricsLog:
    """Append-only `metrics.jsonl`, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.touch()

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=float) + "\n")


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
