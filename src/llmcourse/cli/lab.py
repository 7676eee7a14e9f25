"""`llmcourse lab build | export | score`, `llmcourse demo` and `llmcourse env`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcourse.cli.options import AllowPickle, Debug, Json, Overrides, Overwrite
from llmcourse.cli.support import emit_summary, guarded


def env(json_out: Json = False) -> None:
    """Versions of every engine, the torch device, CUDA and CPU threads."""
    from llmcourse.core.envinfo import collect

    emit_summary("environment", collect(), json_out)


def lab_build(
    overrides: Overrides = None,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even if the cached base exists.")] = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Pretrain the lab base once into $LLMCOURSE_HOME and reuse it afterwards."""

    def action() -> None:
        from llmcourse.finetune.pretrain import build_lab as build

        emit_summary("lab base", build(overrides or [], force), json_out)

    guarded(debug, action)


def lab_export(
    dest: Annotated[Path, typer.Argument(help="Folder to write the skills and corpus into.", show_default=False)],
    count: Annotated[int, typer.Option(help="Training examples per skill.")] = 2000,
    overwrite: Overwrite = False,
    debug: Debug = False,
) -> None:
    """Write the lab skills (chat, alpaca, preference, text; train and held-out) as jsonl."""

    def action() -> None:
        from llmcourse.lab.export import export

        export(dest, count, overwrite)

    guarded(debug, action)


def lab_score(
    model: Annotated[str, typer.Argument(help="Model folder or hub id.", show_default=False)],
    skills: Annotated[str, typer.Option(help="Skills to score, `all` or e.g. parity+add.")] = "all",
    count: Annotated[int, typer.Option(help="Held-out questions per skill.")] = 100,
    prompt_format: Annotated[str, typer.Option(help="auto (chat template if any), chat or plain.")] = "auto",
    allow_pickle: AllowPickle = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Held-out exact match per skill and perplexity on held-out lab text."""

    def action() -> None:
        from llmcourse.lab.scoring import score_model as score

        emit_summary(f"lab score: {model}", score(model, skills, count, prompt_format, allow_pickle), json_out)

    guarded(debug, action)


def demo(
    force: Annotated[bool, typer.Option("--force", help="Rebuild the lab base even if cached.")] = False,
    skip: Annotated[Optional[list[str]], typer.Option("--skip", help="Leave out a stage: gguf, gptq, specialists (the merging experiment), generate.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of every training stage (pretraining, SFT, DPO, specialists).")] = 0,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Run every stage on the embedded lab model and print what each measured."""

    def action() -> None:
        from llmcourse.demo.run import run
        from llmcourse.core.errors import choose

        for stage in skip or []:
            choose("demo stage", stage, ("gguf", "gptq", "specialists", "generate"))
        run(force=force, as_json=json_out, skip=tuple(skip or ()), seed=seed)

    guarded(debug, action)



def register(app: typer.Typer) -> None:
    """Add the `lab` group, `demo` and `env` to the main app."""
    lab_app = typer.Typer(help="The embedded lab: tiny model, tokenizer and synthetic skills, made locally.", no_args_is_help=True)
    lab_app.command("build")(lab_build)
    lab_app.command("export")(lab_export)
    lab_app.command("score")(lab_score)
    app.add_typer(lab_app, name="lab", rich_help_panel="Lab")
    app.command(rich_help_panel="Lab")(demo)
    app.command(rich_help_panel="Info")(env)
