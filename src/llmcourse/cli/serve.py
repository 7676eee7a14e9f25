"""`llmcourse serve | space`: an OpenAI-style HTTP API on this machine, and a Gradio Space folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcourse.cli.options import AllowPickle, Debug, Overwrite
from llmcourse.cli.support import guarded


def serve(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, LoRA adapter folder or .gguf file.", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="LLMCOURSE_API_KEY", help="Require `Authorization: Bearer KEY`.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model id the API reports (default: the folder or file name).")] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", min=1, help="Requests decoded together in one generate call.")] = 32,
    max_queue: Annotated[int, typer.Option("--max-queue", min=0, help="Requests the server holds at once (waiting, and with --continuous-batching also those being decoded); beyond this, 503.")] = 256,
    continuous_batching: Annotated[bool, typer.Option("--continuous-batching", help="Decode with transformers' continuous batching "
                                                      "(paged attention; CUDA only; greedy).")] = False,
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (llama.cpp's server for GGUF)."""

    def action() -> None:
        from llmcourse.core.console import err

        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]warning:[/] binding {host}: the API is reachable from other machines" + ("" if api_key else " and has no --api-key"))
        model_id = name or Path(model.rstrip("/")).name
        if continuous_batching:
            check_continuous_batching(model)
        if model.endswith(".gguf"):
            from llmcourse.serving.gguf import serve_gguf

            serve_gguf(model, host, port, api_key, model_id)
        import uvicorn

        from llmcourse.generation.engines import open_engine
        from llmcourse.serving.app import create_app

        engine = open_engine(model, allow_pickle)
        err.print(f"serving {model} as '{model_id}' on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
        app = create_app(engine, model_id, api_key, max_batch=max_batch, queue=max_queue, continuous_batching=continuous_batching)
        uvicorn.run(app, host=host, port=port, log_level="warning")

    guarded(debug, action)


def check_continuous_batching(model: str) -> None:
    """--continuous-batching needs a transformers model on a CUDA device: refuse anything else before loading."""
    from llmcourse.core.errors import UserError

    if model.endswith(".gguf"):
        raise UserError("--continuous-batching is for transformers models", hint="llama.cpp's server batches GGUF requests itself: drop the flag")
    import torch

    if not torch.cuda.is_available():
        raise UserError("--continuous-batching needs a CUDA GPU (transformers' paged-attention manager is far slower on a CPU "
                        "than serve's own batching)", hint="drop the flag: without it, serve batches waiting requests together")


def space(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, LoRA adapter folder or .gguf file.", show_default=False)],
    output_dir: Annotated[Optional[Path], typer.Option("--output-dir", "-o", help="Where to write the Space (default: NAME-space beside a local model).")] = None,
    model_id: Annotated[Optional[str], typer.Option("--model-id", help="Hub id the Space loads instead of a local path (needed with --push).")] = None,
    gguf_file: Annotated[Optional[str], typer.Option("--gguf-file", help="File to load from a hub GGUF repo.")] = None,
    title: Annotated[Optional[str], typer.Option("--title", help="Space title (default: the model's name).")] = None,
    emoji: Annotated[str, typer.Option("--emoji")] = "💬",
    color_from: Annotated[str, typer.Option("--color-from", help="red, yellow, green, blue, indigo, purple, pink, gray.")] = "indigo",
    color_to: Annotated[str, typer.Option("--color-to")] = "blue",
    license_name: Annotated[Optional[str], typer.Option("--license", help="Default: the model card's license.")] = None,
    description: Annotated[str, typer.Option("--description")] = "",
    system: Annotated[str, typer.Option("--system", help="Default system prompt.")] = "",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 256,
    launch: Annotated[bool, typer.Option("--launch", help="Run the app here after writing it.")] = False,
    host: Annotated[str, typer.Option("--host", help="Address --launch binds.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 7860,
    push: Annotated[Optional[str], typer.Option("--push", help="Create (or update) this hub Space, e.g. you/my-chat.")] = None,
    private: Annotated[bool, typer.Option("--private", help="Make the pushed Space private.")] = False,
    overwrite: Overwrite = False,
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
) -> None:
    """Write a Gradio chat Space for a model (app.py, requirements.txt, README front matter); --launch, --push."""

    def action() -> None:
        from llmcourse.core.console import err
        from llmcourse.core.errors import UserError
        from llmcourse.core.libraries import installed, pip_line
        from llmcourse.core.outputs import atomic_output, check_output_free
        from llmcourse.serving import space as spaces

        resolved = spaces.resolve_model(model, model_id, gguf_file, allow_pickle)
        name = title or resolved.name
        spaces.check_front_matter(emoji, color_from, color_to, name)
        if push and resolved.local:
            raise UserError(f"a Space cannot read {model} from this machine",
                            hint="upload the model first and pass its hub id with --model-id")
        if launch and not installed("gradio"):
            raise UserError("--launch needs gradio", hint=pip_line("space"))
        local = Path(model).expanduser()
        target = output_dir or ((local.parent if local.exists() else Path.cwd()) / f"{resolved.name}-space")
        check_output_free(target, overwrite)
        license_value = license_name or spaces.card_license(model)
        with atomic_output(target, overwrite) as folder:
            spaces.write_space(folder, resolved, name, emoji, color_from, color_to, license_value, description, system, max_new_tokens)
        err.print(f"Space written to {target} (app.py, requirements.txt, README.md)")
        if push:
            err.print(f"pushed: {spaces.push_space(target, push, private)}")
        if launch:
            err.print(f"launching on http://{host}:{port} (Ctrl-C stops it)")
            spaces.launch(target, host, port)

    guarded(debug, action)



def register(app: typer.Typer) -> None:
    """Add the serving commands to the main app."""
    app.command(rich_help_panel="Generate and serve")(serve)
    app.command(rich_help_panel="Generate and serve")(space)
