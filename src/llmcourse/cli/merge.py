"""`llmcourse merge` (mergekit and mergekit-moe configs) on the command line."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from llmcourse.cli.options import AllowPickle, Debug, DryRun, Json, OutputDir, Overwrite
from llmcourse.cli.support import emit_summary, guarded


def merge(
    config: Annotated[Path, typer.Argument(help="mergekit YAML (mergekit-moe YAML with --moe), used unchanged.", show_default=False)],
    output_dir: OutputDir = None,
    overwrite: Overwrite = False,
    moe: Annotated[bool, typer.Option("--moe", help="The config is a mergekit-moe config: build a Mixtral-style MoE.")] = False,
    cuda: Annotated[bool, typer.Option("--cuda", help="Do the tensor math on the GPU.")] = False,
    lazy_unpickle: Annotated[bool, typer.Option("--lazy-unpickle", help="mergekit's lazy loader for pickle checkpoints.")] = False,
    low_cpu_memory: Annotated[bool, typer.Option("--low-cpu-memory", help="Keep results on the accelerator (less RAM).")] = False,
    out_shard_size: Annotated[str, typer.Option("--out-shard-size", help="Largest output shard, e.g. 5B or 500M parameters.")] = "5B",
    copy_tokenizer: Annotated[bool, typer.Option("--copy-tokenizer/--no-copy-tokenizer", help="Copy the base model's tokenizer.")] = True,
    allow_crimes: Annotated[bool, typer.Option("--allow-crimes", help="Allow mixing architectures.")] = False,
    trust_remote_code: Annotated[bool, typer.Option("--trust-remote-code", help="Run model code from the hub (off by default).")] = False,
    random_seed: Annotated[Optional[int], typer.Option("--random-seed", help="Seed for the random methods (dare_*, della).")] = None,
    license: Annotated[Optional[str], typer.Option("--license", help="License for the card (default: the sources' common one).")] = None,
    allow_pickle: AllowPickle = False,
    dry_run: DryRun = False,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Merge models with mergekit (linear, slerp, ties, dare_ties, passthrough, ... and --moe), checked first."""

    def action() -> None:
        from llmcourse.merge.merge import MergeSettings, run

        settings = MergeSettings(
            cuda=cuda, lazy_unpickle=lazy_unpickle, low_cpu_memory=low_cpu_memory, out_shard_size=out_shard_size,
            copy_tokenizer=copy_tokenizer, allow_crimes=allow_crimes, trust_remote_code=trust_remote_code,
            allow_pickle=allow_pickle, random_seed=random_seed, license=license,
        )
        summary = run(config, output_dir, overwrite, moe, settings, dry_run=dry_run)
        if not dry_run or json_out:
            emit_summary("merge", summary, json_out)

    guarded(debug, action)


def tree(
    model: Annotated[str, typer.Argument(help="Model folder or hub id.", show_default=False)],
    output_dir: OutputDir = None,
    overwrite: Overwrite = False,
    max_depth: Annotated[int, typer.Option("--max-depth", help="Generations to walk up.")] = 20,
    debug: Debug = False,
    json_out: Json = False,
) -> None:
    """Draw a model's family tree from the cards (base_model, tags, merge configs): PNG, Mermaid, JSON."""

    def action() -> None:
        from llmcourse.merge.tree import run

        summary = run(model, output_dir, overwrite, max_depth)
        if not json_out:
            from llmcourse.core.console import err

            err.print(f"{summary['models']} models over {summary['generations']} generations → {summary['png'] or summary['output_dir'] + '/tree.md'}")
        emit_summary("tree", summary, json_out)

    guarded(debug, action)


def register(app: typer.Typer) -> None:
    """Add the merge commands to the main app."""
    app.command(rich_help_panel="Merge")(merge)
    app.command(rich_help_panel="Merge")(tree)
