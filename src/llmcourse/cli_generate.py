"""`llmcourse generate`: decode with any registered strategy, compare strategies side by side, and
draw the course's pictures of decoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llmcourse.cli_options import AllowPickle, Debug, Json, Overwrite
from llmcourse.cli_support import guarded


def generate(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, LoRA adapter folder or .gguf file.", show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="The user message (or raw text with --raw).")],
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="greedy, beam, top-k, top-p, min-p, temperature, contrastive, speculative.")] = "greedy",
    compare: Annotated[Optional[str], typer.Option("--compare", help="Several strategies, comma-separated, side by side.")] = None,
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 32,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", min=0)] = 50,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 0.9,
    min_p: Annotated[float, typer.Option("--min-p", min=0.0, max=1.0)] = 0.1,
    num_beams: Annotated[int, typer.Option("--num-beams", min=1)] = 4,
    length_penalty: Annotated[float, typer.Option("--length-penalty")] = 1.0,
    draft_model: Annotated[Optional[str], typer.Option("--draft-model", help="Small model for speculative decoding (HF).")] = None,
    prompt_lookup: Annotated[int, typer.Option("--prompt-lookup", min=1, help="Tokens drafted by prompt lookup (speculative).")] = 3,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the sampling strategies.")] = 0,
    raw: Annotated[bool, typer.Option("--raw", help="Skip the chat template.")] = False,
    system: Annotated[Optional[str], typer.Option("--system", help="System message.")] = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Write the beam-search tree PNG here (and NAME-topk.png).")] = None,
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Generate text with a decoding strategy, or --compare several (transformers or llama.cpp)."""

    def action() -> None:
        from llmcourse.generation.engines import open_engine
        from llmcourse.generation.strategies import DecodeOptions, get_strategy

        names = [n.strip() for n in (compare or strategy).split(",") if n.strip()]
        strategies = [get_strategy(name) for name in names]
        options = DecodeOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
                                num_beams=num_beams, length_penalty=length_penalty, draft_model=draft_model,
                                prompt_lookup_tokens=prompt_lookup)
        if plot is not None and model.endswith(".gguf"):
            from llmcourse.errors import UserError

            raise UserError("--plot needs an HF model (it reads every candidate's probability)", hint="pass the HF folder")
        engine = open_engine(model, allow_pickle, draft_model if "speculative" in names else None)
        ids = engine.prompt_ids(prompt, raw=raw, system=system)
        results = [engine.generate(ids, s, options, seed) for s in strategies]
        from llmcourse.generation.plots import decoding_pictures

        pictures = decoding_pictures(engine, ids, num_beams, plot) if plot is not None else {}
        _show(results, json_out, pictures)

    guarded(debug, action)


def _show(results: list[Any], as_json: bool, pictures: dict[str, str]) -> None:
    from llmcourse.console import err, out, stdout

    if as_json:
        rows = [{"strategy": r.strategy, "text": r.text, "token_ids": r.token_ids, "tokens": len(r.token_ids), "prompt_tokens": r.prompt_tokens,
                 "seq_logprob": r.seq_logprob, "tokens_per_second": r.tokens_per_second} for r in results]
        stdout().write(json.dumps({"results": rows, **pictures}, indent=2) + "\n")
        return
    if len(results) == 1:
        stdout().write(results[0].text + "\n")
        r = results[0]
        err.print(f"[dim]{r.strategy}: {len(r.token_ids)} tokens, log-prob {r.seq_logprob:.2f}, {r.tokens_per_second:.0f} tok/s[/]")
    else:
        from rich.table import Table

        table = Table(title="decoding strategies compared", header_style="bold", show_lines=True)
        for column in ("strategy", "output", "log-prob", "tokens", "tok/s"):
            table.add_column(column, justify="left" if column in ("strategy", "output") else "right")
        for r in results:
            table.add_row(r.strategy, r.text, f"{r.seq_logprob:.2f}", str(len(r.token_ids)), f"{r.tokens_per_second:.0f}")
        out.print(table)
    for name, path in pictures.items():
        err.print(f"{name.replace('_', ' ')}: {path}")


def chat(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, LoRA adapter folder or .gguf file.", show_default=False)],
    system: Annotated[Optional[str], typer.Option("--system", help="System message.")] = None,
    strategy: Annotated[str, typer.Option("--strategy", "-s", help="Decoding strategy (see generate).")] = "top-p",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", min=1)] = 256,
    temperature: Annotated[float, typer.Option("--temperature", min=0.0)] = 0.7,
    top_p: Annotated[float, typer.Option("--top-p", min=0.0, max=1.0)] = 0.9,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
) -> None:
    """Chat with a model in the terminal: streaming answers, history, /reset, /save FILE, /quit."""

    def action() -> None:
        from llmcourse.generation import chat as chat_loop
        from llmcourse.generation.engines import open_engine
        from llmcourse.generation.strategies import DecodeOptions, get_strategy

        chosen = get_strategy(strategy)
        engine = open_engine(model, allow_pickle)
        options = DecodeOptions(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p)
        chat_loop.run(engine, chosen, options, system, seed)

    guarded(debug, action)


def register(app: typer.Typer) -> None:
    """Add the generation commands to the main app."""
    app.command(rich_help_panel="Generate and serve")(generate)
    app.command(rich_help_panel="Generate and serve")(chat)


def serve(
    model: Annotated[str, typer.Argument(help="HF folder, hub id, LoRA adapter folder or .gguf file.", show_default=False)],
    host: Annotated[str, typer.Option("--host", help="Address to bind (127.0.0.1: this machine only).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    api_key: Annotated[Optional[str], typer.Option("--api-key", envvar="LLMCOURSE_API_KEY", help="Require `Authorization: Bearer KEY`.")] = None,
    name: Annotated[Optional[str], typer.Option("--name", help="Model id the API reports (default: the folder or file name).")] = None,
    max_queue: Annotated[int, typer.Option("--max-queue", min=0, help="Requests that may wait; beyond this, 503.")] = 16,
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (llama.cpp's server for GGUF)."""

    def action() -> None:
        from llmcourse.console import err

        if host not in ("127.0.0.1", "localhost", "::1"):
            err.print(f"[yellow]warning:[/] binding {host}: the API is reachable from other machines" + ("" if api_key else " and has no --api-key"))
        model_id = name or Path(model.rstrip("/")).name
        if model.endswith(".gguf"):
            from llmcourse.serving.gguf import serve_gguf

            serve_gguf(model, host, port, api_key, model_id)
        import uvicorn

        from llmcourse.generation.engines import open_engine
        from llmcourse.serving.app import create_app

        engine = open_engine(model, allow_pickle)
        err.print(f"serving {model} as '{model_id}' on http://{host}:{port}/v1" + (" (API key required)" if api_key else ""))
        uvicorn.run(create_app(engine, model_id, api_key, workers=1, queue=max_queue), host=host, port=port, log_level="warning")

    guarded(debug, action)


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
        import importlib.util

        from llmcourse.console import err
        from llmcourse.errors import UserError
        from llmcourse.outputs import atomic_output, check_output_free
        from llmcourse.serving import space as spaces

        resolved = spaces.resolve_model(model, model_id, gguf_file, allow_pickle)
        name = title or resolved.name
        spaces.check_front_matter(emoji, color_from, color_to, name)
        if push and resolved.local:
            raise UserError(f"a Space cannot read {model} from this machine",
                            hint="upload the model first and pass its hub id with --model-id")
        if launch and importlib.util.find_spec("gradio") is None:
            raise UserError("--launch needs gradio", hint="pip install 'llmcourse[space]'")
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


def register_serving(app: typer.Typer) -> None:
    """Add the serving commands to the main app."""
    app.command(rich_help_panel="Generate and serve")(serve)
    app.command(rich_help_panel="Generate and serve")(space)
