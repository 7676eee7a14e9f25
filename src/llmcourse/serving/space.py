"""`llmcourse space`: a Hugging Face Space (Gradio chat) for a model, written locally, optionally
launched here and pushed to the hub.

The Space is three files: `app.py` (serving/space_app.py with its settings filled in), a
`requirements.txt` with the model's runtime, and a README whose front matter is what the hub reads
(title, emoji, colours, sdk and its version, app_file, license, the model it serves).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.core.errors import UserError, choose

SPACE_COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
SETTINGS = re.compile(r"# --- settings \(written by llmcourse space\) ---\n.*?# --- end settings ---\n", re.S)
DEFAULT_GRADIO = "6.31.0"  # the sdk_version written when gradio is not installed here


@dataclass
class SpaceModel:
    """What the app loads: where from (local path or hub id), with which runtime."""

    source: str  # as the app will load it
    kind: str  # transformers | peft | gguf
    gguf_file: str = ""
    local: bool = False
    name: str = ""


def resolve_model(model: str, model_id: str | None, gguf_file: str | None, allow_pickle: bool) -> SpaceModel:
    """Classify MODEL without loading it: a .gguf file, an adapter folder, an HF folder or a hub id.

    `model_id` names the hub repo the Space should load instead of a local path (a Space cannot read
    this machine's files); `gguf_file` picks the file in a hub GGUF repo.
    """
    from llmcourse.core.modelio import check_model_source, looks_like_local_path

    path = Path(model).expanduser()
    if model.endswith(".gguf"):
        if not path.is_file():
            raise UserError(f"GGUF file not found: {model}")
        return SpaceModel(model_id or str(path.resolve()), "gguf", gguf_file or path.name, model_id is None, path.stem)
    if looks_like_local_path(model):
        if path.is_dir() and (path / "adapter_config.json").is_file():
            kind = "peft"
        else:
            check_model_source(model, allow_pickle)
            kind = "transformers"
        if kind == "peft" and not allow_pickle and not list(path.glob("*.safetensors")):
            raise UserError(f"{model}: the adapter has no safetensors weights", hint="save it with safe_serialization=True")
        return SpaceModel(model_id or str(path.resolve()), kind, "", model_id is None, path.name)
    if gguf_file:
        return SpaceModel(model, "gguf", gguf_file, False, model.split("/")[-1])
    return SpaceModel(model, "transformers", "", False, model.split("/")[-1])


def check_front_matter(emoji: str, color_from: str, color_to: str, title: str) -> None:
    """The hub rejects a Space whose colours are not its named ones, or whose title is empty."""
    choose("Space colour (--color-from)", color_from, SPACE_COLORS)
    choose("Space colour (--color-to)", color_to, SPACE_COLORS)
    if not emoji.strip():
        raise UserError("--emoji is empty", hint="pass one emoji, e.g. --emoji 🦙")
    if not title.strip():
        raise UserError("--title is empty")


def app_source(model: SpaceModel, title: str, description: str, system_prompt: str, max_new_tokens: int) -> str:
    """The template app with its settings block filled in."""
    template = (Path(__file__).parent / "space_app.py").read_text(encoding="utf-8")
    settings = "\n".join([
        "# --- settings (written by llmcourse space) ---",
        f"MODEL = {model.source!r}",
        f"KIND = {model.kind!r}  # transformers | peft | gguf",
        f"GGUF_FILE = {model.gguf_file!r}",
        f"TITLE = {title!r}",
        f"DESCRIPTION = {description!r}",
        f"SYSTEM_PROMPT = {system_prompt!r}",
        f"MAX_NEW_TOKENS = {max_new_tokens}",
        "# --- end settings ---",
        "",
    ])
    filled, count = SETTINGS.subn(lambda _: settings, template)
    if count != 1:
        raise RuntimeError("space_app.py lost its settings block")
    return filled


def requirements(kind: str) -> list[str]:
    """The Space's pip requirements (gradio itself comes from the README's sdk_version)."""
    if kind == "gguf":
        return ["llama-cpp-python>=0.3", "huggingface_hub"]
    return ["torch", "transformers>=4.56", "accelerate"] + (["peft"] if kind == "peft" else [])


def readme(model: SpaceModel, title: str, emoji: str, color_from: str, color_to: str, license_name: str | None,
           description: str) -> str:
    """README.md: the hub's front matter, then what the Space is and how to run it locally."""
    import yaml

    try:
        from importlib.metadata import version

        sdk_version = version("gradio")
    except Exception:  # noqa: BLE001 - gradio is not needed to write the Space
        sdk_version = DEFAULT_GRADIO
    meta: dict[str, Any] = {"title": title, "emoji": emoji, "colorFrom": color_from, "colorTo": color_to, "sdk": "gradio",
                            "sdk_version": sdk_version, "app_file": "app.py", "pinned": False}
    if license_name:
        meta["license"] = license_name
    if not model.local:
        meta["models"] = [model.source]
    meta["short_description"] = (description or f"Chat with {model.name}")[:60]
    meta["tags"] = ["llmcourse", "chat"] + (["gguf"] if model.kind == "gguf" else [])
    front = yaml.safe_dump(meta, sort_keys=False, allow_unicode=True)
    link = model.source if model.local else f"[{model.source}](https://huggingface.co/{model.source})"
    return (f"---\n{front}---\n\n# {title}\n\n{description or f'A chat with {model.name}.'}\n\n"
            f"Model: {link}" + (f" (file `{model.gguf_file}`)" if model.kind == "gguf" else "") + f", runtime: {model.kind}.\n\n"
            "Run it locally:\n\n```bash\npip install gradio -r requirements.txt\npython app.py\n```\n\n"
            "Written by `llmcourse space`.\n")


def card_license(model: str) -> str | None:
    """The license in a local model's card front matter, if any."""
    from llmcourse.core.outputs import read_card_metadata

    folder = Path(model).expanduser()
    folder = folder.parent if folder.is_file() else folder
    if not folder.is_dir():
        return None
    value = read_card_metadata(folder).get("license")
    return str(value) if value else None


def write_space(folder: Path, model: SpaceModel, title: str, emoji: str, color_from: str, color_to: str,
                license_name: str | None, description: str, system_prompt: str, max_new_tokens: int) -> dict[str, Any]:
    """Write app.py, requirements.txt, README.md and space.json into `folder`."""
    (folder / "app.py").write_text(app_source(model, title, description, system_prompt, max_new_tokens), encoding="utf-8")
    (folder / "requirements.txt").write_text("\n".join(requirements(model.kind)) + "\n", encoding="utf-8")
    (folder / "README.md").write_text(readme(model, title, emoji, color_from, color_to, license_name, description), encoding="utf-8")
    summary = {"model": model.source, "kind": model.kind, "gguf_file": model.gguf_file, "title": title, "license": license_name}
    (folder / "space.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def push_space(folder: Path, repo: str, private: bool) -> str:
    """Create the Space (gradio sdk) if needed and upload the folder; returns its URL."""
    from llmcourse.core.hub import push_folder

    return push_folder(folder, repo, private, "Space written by llmcourse", space_sdk="gradio")


def launch(folder: Path, host: str, port: int) -> None:
    """Become the Space's app (exec, so that stopping this process stops the server), bound to `host:port`."""
    import os
    import sys

    from llmcourse.serving.gguf import become

    env = {**os.environ, "GRADIO_SERVER_NAME": host, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    become([sys.executable, "app.py"], env, folder)
