"""Config-only compatibility checks before a merge: architectures, depth vs layer ranges, hidden
and vocab sizes, tokenizers. Only `config.json` files are read (one small download per hub model),
so a mismatch is found in seconds instead of after downloading and loading every model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmcourse.core.errors import UserError
from llmcourse.core.modelio import check_model_source, hub_offline, looks_like_local_path


@dataclass
class ModelFacts:
    """What a model's config.json says about its shape."""

    name: str
    architecture: str
    layers: int | None
    hidden_size: int | None
    vocab_size: int | None
    license: str | None = None


def read_config(name: str, allow_pickle: bool) -> dict[str, Any]:
    """A model's config.json, from its folder or (config only) from the hub."""
    if looks_like_local_path(name):
        check_model_source(name, allow_pickle)
        return json.loads((Path(name).expanduser() / "config.json").read_text(encoding="utf-8"))
    check_model_source(name, allow_pickle)  # with no network: the local cache, or a clear error at once
    try:
        from huggingface_hub import hf_hub_download

        path = hf_hub_download(name, "config.json")
    except Exception as exc:  # offline, gated, missing: all end the same way for the user
        raise UserError(f"model '{name}': cannot read its config.json from the hub ({type(exc).__name__})",
                        hint="check the id and log in for gated models" + (", or unset HF_HUB_OFFLINE" if hub_offline() else "")) from exc
    return json.loads(Path(path).read_text(encoding="utf-8"))


def facts_of(name: str, allow_pickle: bool) -> ModelFacts:
    """The shape facts of one model."""
    config = read_config(name, allow_pickle)
    text = config.get("text_config") or config
    return ModelFacts(
        name=name,
        architecture=(config.get("architectures") or [config.get("model_type", "?")])[0],
        layers=text.get("num_hidden_layers") or text.get("n_layer"),
        hidden_size=text.get("hidden_size") or text.get("n_embd"),
        vocab_size=text.get("vocab_size"),
    )


def _model_name(reference: Any) -> str:
    return str(reference.model.path) if hasattr(reference, "model") else str(reference)


def layer_ranges(config: Any) -> list[tuple[str, str, tuple[int, int]]]:
    """(where, model, layer_range) for every slice source of a mergekit config."""
    found = []
    for index, output_slice in enumerate(config.slices or []):
        for source_index, source in enumerate(output_slice.sources):
            found.append((f"slices.{index}.sources.{source_index}", _model_name(source.model), tuple(source.layer_range)))
    return found


def check_merge(config: Any, allow_crimes: bool, allow_pickle: bool) -> dict[str, ModelFacts]:
    """Raise a one-line UserError for the first incompatibility; returns every model's facts."""
    names = sorted({_model_name(ref) for ref in config.referenced_models()})
    return check_shapes(names, layer_ranges(config), bool(config.tokenizer_source or config.tokenizer), allow_crimes, allow_pickle)


def check_shapes(names: list[str], ranges: list[tuple[str, str, tuple[int, int]]], tokenizer_named: bool, allow_crimes: bool,
                 allow_pickle: bool) -> dict[str, ModelFacts]:
    """Architectures, hidden sizes, layer ranges against depth, vocab sizes; returns every model's facts."""
    facts = {name: facts_of(name, allow_pickle) for name in names}
    first = facts[names[0]]
    for fact in facts.values():
        if fact.architecture != first.architecture and not allow_crimes:
            raise UserError(f"'{fact.name}' is a {fact.architecture} but '{first.name}' is a {first.architecture}",
                            hint="mixing architectures needs --allow-crimes (and usually fails)")
        if fact.hidden_size != first.hidden_size:
            raise UserError(f"hidden sizes differ: '{fact.name}' has {fact.hidden_size}, '{first.name}' has {first.hidden_size}",
                            hint="only models of the same shape can be merged tensor by tensor")
    for where, name, (start, end) in ranges:
        depth = facts[name].layers
        if start < 0 or end <= start:
            raise UserError(f"{where}.layer_range: [{start}, {end}] is empty or negative")
        if depth is not None and end > depth:
            raise UserError(f"{where}.layer_range: [{start}, {end}] goes past '{name}', which has {depth} layers",
                            hint=f"layer_range is [first, last + 1]; the largest end for this model is {depth}")
    vocab = {name: fact.vocab_size for name, fact in facts.items()}
    if len(set(vocab.values())) > 1 and not tokenizer_named:
        listed = ", ".join(f"'{name}' {size}" for name, size in vocab.items())
        raise UserError(f"vocab sizes differ ({listed}) and the config names no tokenizer source",
                        hint="add tokenizer_source: base | union | MODEL (or a tokenizer: section)")
    return facts


def _raw_model(value: Any) -> str | None:
    """A model reference as the YAML writes it (`org/name` or `org/name+lora`), None for other forms."""
    return value.split("+")[0] if isinstance(value, str) and value else None


def check_raw(raw: dict[str, Any], moe: bool, allow_crimes: bool, allow_pickle: bool) -> None:
    """The shape checks on the YAML as written, before mergekit (and torch) are imported, so that a
    wrong path, depth or vocab is reported in a second. Forms this does not read are left to the
    full check on mergekit's parsed config."""
    if moe:
        references = [raw.get("base_model")] + [e.get("source_model") if isinstance(e, dict) else None for e in raw.get("experts") or []]
        names = [_raw_model(r) for r in references]
        if names and all(names):
            check_shapes(list(dict.fromkeys(names)), [], True, allow_crimes, allow_pickle)  # type: ignore[arg-type]
        return
    references: list[Any] = [m.get("model") if isinstance(m, dict) else None for m in raw.get("models") or []]
    references += [raw["base_model"]] if raw.get("base_model") else []
    ranges = []
    for index, output_slice in enumerate(raw.get("slices") or []):
        for source_index, source in enumerate((output_slice or {}).get("sources") or [] if isinstance(output_slice, dict) else []):
            name = _raw_model(source.get("model")) if isinstance(source, dict) else None
            references.append(name)
            span = source.get("layer_range") if isinstance(source, dict) else None
            if name and isinstance(span, list) and len(span) == 2 and all(isinstance(v, int) for v in span):
                ranges.append((f"slices.{index}.sources.{source_index}", name, (span[0], span[1])))
    names = [_raw_model(r) for r in references]
    if names and all(names):
        tokenizer_named = bool(raw.get("tokenizer_source") or raw.get("tokenizer"))
        check_shapes(sorted(set(names)), ranges, tokenizer_named, allow_crimes, allow_pickle)  # type: ignore[arg-type]


def check_moe(config: Any, allow_pickle: bool) -> dict[str, ModelFacts]:
    """The same checks for a mergekit-moe config: every expert must match the base's shape."""
    names = [_model_name(config.base_model)] + [_model_name(e.source_model) for e in config.experts]
    facts = {name: facts_of(name, allow_pickle) for name in dict.fromkeys(names)}
    base = facts[names[0]]
    for fact in facts.values():
        for field in ("architecture", "layers", "hidden_size", "vocab_size"):
            if getattr(fact, field) != getattr(base, field):
                raise UserError(f"expert '{fact.name}' has {field} {getattr(fact, field)}, the base '{base.name}' has "
                                f"{getattr(base, field)}", hint="experts must share the base model's architecture and shape")
    if config.experts_per_token < 1 or config.experts_per_token > len(config.experts):
        raise UserError(f"experts_per_token: {config.experts_per_token} must be between 1 and the number of experts "
                        f"({len(config.experts)})")
    if config.gate_mode not in ("hidden", "cheap_embed", "random", "uniform_random"):
        raise UserError(f"gate_mode: unknown '{config.gate_mode}'", hint="hidden | cheap_embed | random | uniform_random")
    if config.gate_mode in ("hidden", "cheap_embed"):
        for index, expert in enumerate(config.experts):
            if not expert.positive_prompts:
                raise UserError(f"experts.{index}.positive_prompts: gate_mode {config.gate_mode} needs prompts for every expert")
    return facts
