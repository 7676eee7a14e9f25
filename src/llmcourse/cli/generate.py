"""`llmcourse generate`: decode with any registered strategy, compare strategies side by side, and
draw the course's pictures of decoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from llmcourse.cli.options import AllowPickle, Debug, Json
from llmcourse.cli.support import guarded


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
            from llmcourse.core.errors import UserError

            raise UserError("--plot needs an HF model (it reads every candidate's probability)", hint="pass the HF folder")
        from llmcourse.core.libraries import installed, pip_line

        if plot is not None and not installed("matplotlib"):
            from llmcourse.core.errors import UserError

            raise UserError("--plot needs matplotlib, which is not installed", hint=f"{pip_line('plot')}, or leave out --plot")
        engine = open_engine(model, allow_pickle, draft_model if "speculative" in names else None)
        ids = engine.prompt_ids(prompt, raw=raw, system=system)
        results = [engine.generate(ids, s, options, seed) for s in strategies]
        from llmcourse.generation.plots import decoding_pictures

        pictures = decoding_pictures(engine, ids, num_beams, plot) if plot is not None else {}
        _show(results, json_out, pictures)

    guarded(debug, action)


def _show(results: list[Any], as_json: bool, pictures: dict[str, str]) -> None:
    from llmcourse.core.console import err, out, stdout

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
