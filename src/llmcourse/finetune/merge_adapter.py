"""`llmcourse merge-adapter ADAPTER -o OUT`: a full model from a LoRA adapter and its base."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmcourse.core.modelio import is_adapter_folder, merge_adapter
from llmcourse.core.errors import UserError
from llmcourse.core.outputs import atomic_output, check_output_free, read_card_metadata, write_model_card, write_run_record


def run(adapter: str, output_dir: Path, base_model: str | None, overwrite: bool, allow_pickle: bool) -> dict[str, Any]:
    """Merge `adapter` into its base and save model, tokenizer and a card with the base_model chain."""
    if not Path(adapter).exists():
        raise UserError(f"adapter folder not found: {adapter}")
    if not is_adapter_folder(adapter):
        raise UserError(f"{adapter}: not a LoRA adapter folder (no adapter_config.json)")
    check_output_free(output_dir, overwrite)
    from llmcourse.core.libraries import quiet_libraries

    quiet_libraries()
    model, tokenizer, base = merge_adapter(adapter, base_model, allow_pickle)
    meta = read_card_metadata(adapter)
    with atomic_output(output_dir, overwrite) as folder:
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        summary = {"adapter": str(adapter), "base_model": base, "parameters": sum(p.numel() for p in model.parameters())}
        write_run_record(folder, "merge-adapter", {"adapter": str(adapter), "base_model": base}, summary)
        write_model_card(
            folder, title=output_dir.name,
            description=f"The LoRA adapter `{adapter}` merged into `{base}` with PEFT's `merge_and_unload`.",
            recipe_yaml=f"adapter: {adapter}\nbase_model: {base}\n", command="merge-adapter",
            base_model=base, tags=sorted(set(meta.get("tags", [])) | {"merged-adapter"}),
            license=meta.get("license"), datasets=meta.get("datasets"),
        )
    summary["output_dir"] = str(output_dir)
    return summary
