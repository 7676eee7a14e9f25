"""`llmcourse merge`: mergekit (and mergekit-moe) configs, unchanged, through mergekit's library API.

Before anything heavy, the config is parsed by mergekit's own models and checked against the
models' config.json files (`compat`); then mergekit runs into a partial folder with a rich progress
bar over its tensor tasks, and the result gets a card that lists every source and keeps the YAML.
"""

from __future__ import annotations

import importlib.util
import re
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.core.console import err
from llmcourse.core.errors import UserError, did_you_mean
from llmcourse.merge import checks
from llmcourse.merge.compat import rich_progress
from llmcourse.core.measure import weights_mb
from llmcourse.core.modelio import looks_like_local_path
from llmcourse.core.outputs import atomic_output, check_output_free, read_card_metadata, write_json, write_model_card, write_run_record


@dataclass(frozen=True)
class MergeSettings:
    """The mergekit options the command line exposes (mergekit's own flag names)."""

    cuda: bool = False
    lazy_unpickle: bool = False
    low_cpu_memory: bool = False
    out_shard_size: str = "5B"
    copy_tokenizer: bool = True
    allow_crimes: bool = False
    trust_remote_code: bool = False
    allow_pickle: bool = False
    random_seed: int | None = None
    license: str | None = None


# mergekit 0.1.5's methods, for instant checks; a name not listed here is looked up in mergekit itself.
KNOWN_METHODS = ("arcee_fusion", "breadcrumbs", "breadcrumbs_ties", "dare_linear", "dare_ties", "della", "della_linear",
                 "karcher", "linear", "model_stock", "multislerp", "nearswap", "nuslerp", "passthrough", "ram", "ramplus_tl", "sce",
                 "slerp", "task_arithmetic", "ties")


def method_names() -> list[str]:
    """Every merge method this mergekit registers."""
    from mergekit.merge_methods.registry import registered_methods

    return sorted(method.spec.name for method in registered_methods())


def read_raw(path: Path) -> tuple[dict[str, Any], str]:
    """The YAML as a mapping, and its text unchanged."""
    import yaml

    if not path.is_file():
        raise UserError(f"merge config not found: {path}")
    text = path.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: malformed YAML: {str(exc).splitlines()[0]}") from exc
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of mergekit keys")
    return raw, text


def load_config(path: Path, raw: dict[str, Any], text: str, moe: bool) -> tuple[Any, str]:
    """Parse a mergekit (or mergekit-moe) YAML with mergekit's models; (config, its text unchanged)."""
    from pydantic import ValidationError

    if moe:
        from mergekit.moe.config import MoEMergeConfig as Model
    else:
        from mergekit.config import MergeConfiguration as Model
        if "merge_method" in raw and raw["merge_method"] not in KNOWN_METHODS and raw["merge_method"] not in method_names():
            names = method_names()
            raise UserError(f"merge_method: unknown method '{raw['merge_method']}'{did_you_mean(str(raw['merge_method']), names)}",
                            hint=f"mergekit offers: {', '.join(names)}")
        if "experts" in raw:
            raise UserError(f"{path}: this is a mergekit-moe config (it has experts)", hint="run it with llmcourse merge --moe")
    try:
        return Model.model_validate(raw), text
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()]
        raise UserError(f"{path}: " + "; ".join(problems)) from exc
    except (RuntimeError, ValueError) as exc:  # mergekit's own validators raise these
        raise UserError(f"{path}: {exc}") from exc


def mergekit_options(settings: MergeSettings) -> Any:
    """mergekit's MergeOptions from ours (no card from mergekit: we write a complete one)."""
    from mergekit.options import MergeOptions, parse_kmb

    return MergeOptions(
        cuda=settings.cuda, lazy_unpickle=settings.lazy_unpickle, low_cpu_memory=settings.low_cpu_memory,
        out_shard_size=parse_kmb(settings.out_shard_size), copy_tokenizer=settings.copy_tokenizer, allow_crimes=settings.allow_crimes,
        trust_remote_code=settings.trust_remote_code, random_seed=settings.random_seed, write_model_card=False,
        safe_serialization=True, quiet=False,
    )


def inherited_license(names: list[str]) -> str | None:
    """The license every local source's card agrees on, if they all name the same one."""
    licenses = {read_card_metadata(name).get("license") if Path(name).is_dir() else None for name in names}
    return licenses.pop() if len(licenses) == 1 else None


def run(config_path: Path, output: Path | None, overwrite: bool, moe: bool, settings: MergeSettings, dry_run: bool = False) -> dict[str, Any]:
    """Check, merge, document; returns the summary written to report.json. With `dry_run`, every
    check that reads no weights (the config by mergekit's own schema, each model's config.json,
    the output folder), and the summary of what would be merged."""
    if importlib.util.find_spec("mergekit") is None:
        raise UserError("merge needs mergekit, which is not installed", hint="pip install 'llmcourse[merge]'")
    if not re.fullmatch(r"\d+(\.\d+)?[KMB]?", settings.out_shard_size.upper()):
        raise UserError(f"--out-shard-size: '{settings.out_shard_size}' is not a size such as 5B, 500M or 1000000")
    raw, text = read_raw(config_path)
    if not moe and "experts" in raw:
        raise UserError(f"{config_path}: this is a mergekit-moe config (it has experts)", hint="run it with llmcourse merge --moe")
    method = raw.get("merge_method")
    if not moe and isinstance(method, str) and method not in KNOWN_METHODS:
        close = did_you_mean(method, KNOWN_METHODS)
        if close:  # a typo of a method we know: no need to import mergekit to say so
            raise UserError(f"merge_method: unknown method '{method}'{close}", hint=f"mergekit offers: {', '.join(KNOWN_METHODS)}")
    checks.check_raw(raw, moe, settings.allow_crimes, settings.allow_pickle)
    from llmcourse.core.libraries import quiet_libraries

    quiet_libraries(with_datasets=False)
    config, text = load_config(config_path, raw, text, moe)
    facts = checks.check_moe(config, settings.allow_pickle) if moe else checks.check_merge(config, settings.allow_crimes, settings.allow_pickle)
    if settings.cuda:
        import torch

        if not torch.cuda.is_available():
            raise UserError("--cuda: no CUDA device is visible", hint="drop --cuda to merge on the CPU")
    output = output or Path("outputs") / config_path.stem
    check_output_free(output, overwrite)
    started = time.perf_counter()
    sources = list(facts)
    method = "moe" if moe else config.merge_method
    if dry_run:
        err.print(f"[green]ok[/] {config_path}: {method} of {', '.join(sources)} → {output} (dry run: nothing merged)")
        return {"method": method, "models": sources, "layers_in": {n: f.layers for n, f in facts.items()}, "output_dir": str(output),
                "dry_run": True}
    err.print(f"[bold]merge[/] ({method}) {', '.join(sources)} → {output}")
    with atomic_output(output, overwrite) as folder:
        if moe:
            _run_moe(config, folder, settings)
        else:
            from mergekit.merge import run_merge

            with rich_progress(f"{method} tensors"):
                run_merge(config, str(folder), options=mergekit_options(settings), config_source=text)
        (folder / "mergekit_moe_config.yml" if moe else folder / "mergekit_config.yml").write_text(text, encoding="utf-8")
        summary = {
            "method": method, "models": sources, "layers_in": {n: f.layers for n, f in facts.items()},
            "elapsed_s": round(time.perf_counter() - started, 2),
            "peak_memory_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "output_mb": round(weights_mb(folder), 2),
        }
        license = settings.license or inherited_license(sources)
        write_run_record(folder, "merge", {"config": text, "moe": moe, **settings.__dict__}, summary)
        write_json(folder / "report.json", summary)
        _card(folder, config, text, sources, method, license, moe)
    summary["output_dir"] = str(output)
    return summary


def _run_moe(config: Any, folder: Path, settings: MergeSettings) -> None:
    from mergekit.scripts.moe import build

    build(config, str(folder), mergekit_options(settings), device="cuda" if settings.cuda else "cpu")


def _link(name: str) -> str:
    return f"`{name}`" if looks_like_local_path(name) else f"[{name}](https://huggingface.co/{name})"


def _card(folder: Path, config: Any, text: str, sources: list[str], method: str, license: str | None, moe: bool) -> None:
    listed = "\n".join(f"* {_link(name)}" for name in sources)
    kind = "a Mixture of Experts (mergekit-moe, gate mode `" + config.gate_mode + "`)" if moe else f"a `{method}` merge"
    write_model_card(
        folder,
        title=folder.name.removesuffix(".partial"),
        description=f"This model is {kind} of the following models, made with "
                    f"[mergekit](https://github.com/arcee-ai/mergekit) through `llmcourse merge`:\n\n{listed}",
        recipe_yaml=text, command="merge" + (" --moe" if moe else ""), base_model=sources,
        tags=["merge", "mergekit"] + (["moe", "frankenmoe"] if moe else []), license=license,
    )
