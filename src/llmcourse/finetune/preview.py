"""`llmcourse sft RECIPE --preview`: formatted samples with the no-loss part dimmed, no weights loaded."""

from __future__ import annotations

from typing import Any

from llmcourse.core.console import out
from llmcourse.finetune import data as sft_data
from llmcourse.recipes.sft import SftRecipe


def preview(recipe: SftRecipe, count: int = 2) -> list[dict[str, Any]]:
    """Print `count` formatted examples (dim = context, bold = learned) with their token counts."""
    from rich.panel import Panel
    from rich.text import Text

    from llmcourse.finetune.common import prepare_tokenizer
    from llmcourse.finetune.sft import preflight

    preflight(recipe)
    tokenizer, template, _ = prepare_tokenizer(recipe)
    examples = sft_data.load_examples(recipe)[:count]
    shown = []
    for index, (source, example) in enumerate(examples):
        ids, mask = sft_data.encode(tokenizer, example, recipe.train_on_inputs)
        text = Text()
        for token_id, learn in zip(ids, mask):
            piece = tokenizer.decode([token_id])
            text.append(piece, style="bold green" if learn else "dim")
        title = f"sample {index + 1} from {source} — {len(ids)} tokens, {sum(mask)} with loss, template {template}"
        if len(ids) > recipe.sequence_len:
            title += f" (truncated to {recipe.sequence_len})"
        out.print(Panel(text, title=title, title_align="left"))
        shown.append({"source": source, "tokens": len(ids), "loss_tokens": sum(mask)})
    out.print("[dim]dim: context (no loss)[/]   [bold green]green: learned tokens[/]")
    return shown


def preview_pairs(recipe: Any) -> dict[str, Any]:
    """Print the first preference pair as the model will see it: templated prompt, chosen, rejected, token counts."""
    from rich.panel import Panel
    from rich.text import Text

    from llmcourse.finetune.preference_data import load_source
    from llmcourse.finetune.common import prepare_tokenizer

    tokenizer, template, _ = prepare_tokenizer(recipe)
    pair = load_source(recipe.datasets[0], "datasets.0")[0]
    prompt = tokenizer.apply_chat_template(pair["prompt"], tokenize=False, add_generation_prompt=True)
    counts = {"prompt": len(tokenizer(prompt, add_special_tokens=False)["input_ids"])}
    text = Text(prompt, style="dim")
    for name, style in (("chosen", "bold green"), ("rejected", "bold red")):
        full = tokenizer.apply_chat_template(pair["prompt"] + pair[name], tokenize=False)
        answer = full[len(prompt) :] if full.startswith(prompt) else full
        counts[name] = len(tokenizer(answer, add_special_tokens=False)["input_ids"])
        text.append(f"\n── {name} ({counts[name]} tokens) ──\n", style="italic")
        text.append(answer, style=style)
    # The sizes go first in the body, where they wrap, not in the title, which a narrow terminal cuts.
    summary = Text(f"prompt {counts['prompt']} tokens (left-padded in batches), template {template}, "
                   f"max_length {recipe.sequence_limit}\n\n", style="italic")
    out.print(Panel(summary + text, title=f"pair 1 from {recipe.datasets[0].path}", title_align="left"))
    return counts
