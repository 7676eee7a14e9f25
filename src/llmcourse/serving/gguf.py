"""GGUF files are served by llama-cpp-python's own OpenAI-compatible server (llama.cpp's batching,
chat templates and streaming), started with our defaults: loopback only, optional API key."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from llmcourse.core.errors import UserError


def server_command(path: str, host: str, port: int, api_key: str | None, model_id: str) -> list[str]:
    """The `python -m llama_cpp.server` command line."""
    command = [sys.executable, "-m", "llama_cpp.server", "--model", path, "--model_alias", model_id, "--host", host, "--port", str(port),
               "--n_ctx", "0"]
    return command + (["--api_key", api_key] if api_key else [])


def become(command: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> None:
    """Replace this process by `command` (exec): stopping the command line stops the server, no orphan is left."""
    from llmcourse.core.console import stdout

    stdout().flush()
    sys.stdout.flush()
    sys.stderr.flush()
    if cwd is not None:
        os.chdir(cwd)
    os.execve(command[0], command, env if env is not None else dict(os.environ))


def serve_gguf(path: str, host: str, port: int, api_key: str | None, model_id: str) -> None:
    """Become llama.cpp's server, in the foreground."""
    if not Path(path).is_file():
        raise UserError(f"GGUF file not found: {path}")
    if importlib.util.find_spec("llama_cpp") is None or importlib.util.find_spec("uvicorn") is None or importlib.util.find_spec("sse_starlette") is None:
        raise UserError("serving GGUF needs llama-cpp-python with its server extra", hint="pip install 'llmcourse[gguf,serve]'")
    become(server_command(path, host, port, api_key, model_id))
