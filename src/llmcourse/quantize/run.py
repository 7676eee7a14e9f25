"""`llmcourse quantize`: check everything, write each format's folder atomically, report, card, push.

Order matters for users: recipe, formats, methods, files and output folders are all checked before
any weight is read; the source is scored once; each format writes into a `.partial` folder that is
renamed only after its outputs are measured and documented.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Callable

import yaml

from llmcourse.core.console import err
from llmcourse.core.errors import UserError
from llmcourse.core.measure import weights_mb
from llmcourse.core.modelio import check_model_source, hub_failure_hint, looks_like_local_path
from llmcourse.core.outputs import atomic_output, check_output_free, read_card_metadata, write_json, write_model_card, write_run_record
from llmcourse.quantize.base import QuantFormat, QuantOutput, SourceModel
from llmcourse.quantize.registry import get_format

HUB_PATTERNS = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.md", "*.jinja"]


def resolve_source(name: str) -> SourceModel:
    """A local HF folder as is; a hub id downloaded (safetensors only) into the HF cache."""
    if looks_like_local_path(name):
        local = Path(check_model_source(name))
        short = local.resolve().name
    else:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        check_model_source(name)  # with no network: the local cache, or a clear error at once
        try:
            local = Path(snapshot_download(name, allow_patterns=HUB_PATTERNS))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise UserError(f"cannot fetch '{name}' from the hub: {str(exc).splitlines()[0]}", hint=hub_failure_hint(name)) from exc
        check_model_source(str(local))
        short = name.split("/")[-1]
    return SourceModel(name=name, local_dir=local, short_name=short, card=read_card_metadata(local))


def count_parameters(folder: Path) -> int:
    """Parameters in a folder's safetensors files, read from their headers only."""
    from safetensors import safe_open

    total = 0
    for file in sorted(folder.glob("*.safetensors")):
        with safe_open(str(file), "pt") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    return total


def calibration_hub(recipe: Any) -> Any:
    """Where a hub calibration dataset keeps its text (split, column, configuration)."""
    from llmcourse.quantize.texts import HubText

    return HubText(split=recipe.calibration_split, field=recipe.calibration_field, config=recipe.calibration_config)


def formats_of(recipe: Any) -> list[QuantFormat]:
    """The recipe's formats, each with its engine installed and its methods valid (no model needed)."""
    formats = [get_format(name) for name in recipe.formats]
    for fmt in formats:
        fmt.check_installed()
        fmt.check_methods(fmt.section(recipe).methods)
    return formats


def preflight(recipe: Any, overwrite: bool) -> tuple[SourceModel, list[QuantFormat], dict[str, Path]]:
    """Every check that needs no weights: formats, engines, methods, text files, output folders."""
    from llmcourse.quantize.texts import check_text_source

    formats = formats_of(recipe)
    check_text_source("calibration", recipe.calibration, calibration_hub(recipe))
    check_text_source("eval_text", recipe.eval_text)
    source = resolve_source(recipe.model)
    for fmt in formats:
        fmt.preflight(recipe, source)
    output_dir = Path(recipe.output_dir or "outputs")
    folders = {fmt.name: check_output_free(fmt.folder(recipe, source, output_dir), overwrite) for fmt in formats}
    return source, formats, folders


def run(recipe: Any, overwrite: bool = False) -> dict[str, Any]:
    """Quantize `recipe.model` to every format, measure each output, write cards; the summary."""
    from llmcourse.core.modelio import load_tokenizer
    from llmcourse.quantize import report, texts
    from llmcourse.core.libraries import quiet_libraries

    quiet_libraries(with_datasets=False)
    source, formats, folders = preflight(recipe, overwrite)
    tokenizer = load_tokenizer(str(source.local_dir))
    parameters = count_parameters(source.local_dir)
    source_mb = weights_mb(source.local_dir)
    block = recipe.eval_block_size

    def calibration() -> Any:
        size = block or (texts.LAB_BLOCK if recipe.calibration in texts.LAB_NAMES else texts.USER_BLOCK)
        return texts.token_blocks(tokenizer, recipe.calibration, "train", size, recipe.calibration_samples * size, calibration_hub(recipe)).ids

    rows: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="llmcourse-quantize-") as work:
        reference = None
        if recipe.report:
            blocks = texts.token_blocks(tokenizer, recipe.eval_text, "heldout", block, recipe.eval_tokens)
            err.print(f"scoring the source on {blocks.description}")
            reference = report.build_reference(str(source.local_dir), blocks, Path(work), source_mb, parameters)
            rows.append(reference.row)
        for fmt in formats:
            made, fmt_rows = _one_format(fmt, recipe, source, folders[fmt.name], overwrite, calibration, reference, parameters)
            outputs += made
            rows += fmt_rows
    if rows:
        report.print_table(rows, f"{source.short_name}: quantized outputs against the source")
    pushed = push(recipe, folders) if recipe.push_to_hub else []
    return {"model": source.name, "outputs": outputs, "report": rows, "folders": {k: str(v) for k, v in folders.items()}, "pushed": pushed}


def _one_format(fmt: QuantFormat, recipe: Any, source: SourceModel, final: Path, overwrite: bool, calibration: Callable[[], Any],
                reference: Any, parameters: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    from llmcourse.quantize import report

    err.print(f"[bold]quantize[/] {source.name} → {final} ({fmt.name}: {', '.join(fmt.section(recipe).methods)})")
    with atomic_output(final, overwrite) as folder:
        made = fmt.produce(recipe, source, folder, calibration)
        rows = [report.measure(output, reference, parameters) for output in made] if reference is not None else []
        for row in rows:
            row["path"] = row["path"].replace(str(folder), str(final))
        summary_rows = ([reference.row] + rows) if reference is not None else []
        write_json(folder / "report.json", {"source": source.name, "eval_text": recipe.eval_text,
                                            "eval": reference.blocks.description if reference else None, "rows": summary_rows})
        title = f"{final.name}: quality against {source.name}"
        table = report.markdown(summary_rows, title, reference.blocks.description) if reference is not None else ""
        if table:
            (folder / "report.md").write_text(table, encoding="utf-8")
        write_run_record(folder, "quantize", recipe.model_dump(mode="json"), {"outputs": [o.method for o in made]})
        _card(fmt, recipe, source, folder, made, table)
    made_paths = [{"format": o.format, "method": o.method, "path": str(o.path).replace(str(folder), str(final)), **o.notes} for o in made]
    return made_paths, rows


def _card(fmt: QuantFormat, recipe: Any, source: SourceModel, folder: Path, made: list[QuantOutput], table: str) -> None:
    """The output's card: base_model = the source, quantization tags, the report, the source's own card."""
    listed = "\n".join(f"* `{o.path.relative_to(folder)}` ({o.method})" for o in made)
    original = ""
    source_card = source.local_dir / "README.md"
    if source_card.is_file():
        body = source_card.read_text(encoding="utf-8")
        if body.startswith("---"):
            body = body.split("\n---", 1)[-1].lstrip("-\n")
        original = "## Original model card\n\n" + "\n".join(("#" + line) if line.startswith("#") else line for line in body.splitlines())
    quality = ("\n\n## Quality against the source\n\n" + table.split("\n", 2)[2]) if table else ""
    write_model_card(
        folder, title=f"{source.short_name} — {fmt.name.upper()} quantization",
        description=f"Quantized from [{source.name}]({_link(source.name)}) with `llmcourse quantize` ({fmt.name}):\n\n{listed}{quality}",
        recipe_yaml=yaml.safe_dump(recipe.model_dump(mode="json"), sort_keys=False), command="quantize",
        base_model=source.name, tags=["quantized", *fmt.tags], license=recipe.license or source.card.get("license"),
        library_name=fmt.library_name, usage=fmt.usage(made[0], folder.name.removesuffix(".partial")) if made else None,
        appendix=original or None,
    )


def _link(name: str) -> str:
    return name if looks_like_local_path(name) else f"https://huggingface.co/{name}"


def push(recipe: Any, folders: dict[str, Path]) -> list[str]:
    """Upload each output folder to the hub (`REPO`, or `REPO-<FORMAT>` when there are several)."""
    from llmcourse.core.hub import push_folder

    pushed = []
    for name, folder in folders.items():
        repo = recipe.push_to_hub if len(folders) == 1 else f"{recipe.push_to_hub}-{name.upper()}"
        err.print(f"pushed {folder} → {push_folder(folder, repo, recipe.private, f'llmcourse quantize ({name})')}")
        pushed.append(repo)
    return pushed
