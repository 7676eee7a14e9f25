"""`llmcourse pretrain`: train a causal LM from scratch with the transformers Trainer.

Also builds the lab's base model (`llmcourse lab build`), which is this command run on the shipped
lab recipe into `$LLMCOURSE_HOME`.
"""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

from llmcourse.lab.cache import run_cached
from llmcourse.core.console import err
from llmcourse.finetune.sources import check_source, is_lab, load_rows, texts_of
from llmcourse.core.errors import UserError
from llmcourse.core.outputs import MetricsLog, atomic_output, check_output_free, write_json, write_model_card, write_run_record
from llmcourse.recipes.loader import dump_recipe
from llmcourse.recipes.pretrain import PretrainRecipe


def preflight(recipe: PretrainRecipe) -> None:
    """Every check that needs no heavy import: dataset files and lab names."""
    for index, source in enumerate(recipe.data.datasets):
        check_source(source, f"data.datasets.{index}")


def load_corpus(recipe: PretrainRecipe) -> tuple[list[str], list[str]]:
    """Training and held-out documents: lab sources use their held-out split, files a random slice."""
    train: list[str] = []
    heldout: list[str] = []
    for index, source in enumerate(recipe.data.datasets):
        where = f"data.datasets.{index}"
        texts = texts_of(load_rows(source, where), source, where)
        if is_lab(source.path):
            train += texts
            held_source = source.model_copy(update={"split": "heldout", "num_samples": recipe.data.eval_documents})
            heldout += texts_of(load_rows(held_source, where), held_source, where)
            continue
        random.Random(recipe.train.seed).shuffle(texts)
        cut = int(len(texts) * recipe.data.val_set_size)
        heldout += texts[:cut]
        train += texts[cut:]
    if not heldout:
        err.print("[yellow]warning:[/] no held-out text (data.val_set_size is 0): perplexity is measured on training text")
        heldout = train[: max(1, len(train) // 50)]
    return train, heldout


def run(recipe: PretrainRecipe, overwrite: bool = False) -> dict[str, Any]:
    """Pretrain the model described by `recipe`; returns the run summary written to `report.json`."""
    preflight(recipe)
    output = check_output_free(recipe.output_dir or "outputs/pretrain", overwrite)
    from llmcourse.core.libraries import quiet_libraries
    from llmcourse.finetune.common import last_logged, quiet_trainer, trainer_callbacks, training_kwargs

    quiet_libraries()
    import torch
    from torch.utils.data import Dataset
    from transformers import Trainer, TrainingArguments

    from llmcourse.lab import model as lab_model
    from llmcourse.lab import scoring
    from llmcourse.lab.tokenizer import train_tokenizer
    from llmcourse.core.modelio import load_tokenizer

    started = time.perf_counter()
    err.print(f"[bold]pretrain[/] → {output}")
    train_texts, heldout_texts = load_corpus(recipe)
    if recipe.tokenizer.path:
        tokenizer = load_tokenizer(recipe.tokenizer.path)
    else:
        tokenizer = train_tokenizer(train_texts, recipe.tokenizer.vocab_size, recipe.model.max_position_embeddings)
    if tokenizer.eos_token_id is None:
        raise UserError("tokenizer.path: the tokenizer has no EOS token, which pretraining needs between documents")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    block = recipe.data.sequence_len
    train_blocks = scoring.token_blocks(tokenizer, train_texts, block)
    eval_blocks = scoring.token_blocks(tokenizer, heldout_texts, block)
    if train_blocks.shape[0] == 0:
        raise UserError(f"data.datasets: the training text is shorter than one sequence ({block} tokens)")
    if eval_blocks.shape[0] == 0:
        eval_blocks = train_blocks[:1]

    dims = recipe.model.model_dump(exclude={"architecture"})
    config = lab_model.llama_config(len(tokenizer), tokenizer.eos_token_id, tokenizer.pad_token_id, **dims)
    model = lab_model.init_model(config, recipe.train.seed)
    cuda = torch.cuda.is_available()
    if cuda:
        model.to("cuda")
    init_ppl = scoring.perplexity(model, eval_blocks)

    class Blocks(Dataset):
        def __len__(self) -> int:
            return train_blocks.shape[0]

        def __getitem__(self, index: int) -> dict[str, Any]:
            ids = train_blocks[index]
            return {"input_ids": ids, "labels": ids}

    t = recipe.train
    with atomic_output(output, overwrite) as folder:
        metrics = MetricsLog(folder / "metrics.jsonl")
        args = TrainingArguments(**training_kwargs(t, str(folder / "checkpoints"), has_eval=True))
        eval_dataset = [{"input_ids": ids, "labels": ids} for ids in eval_blocks] if t.eval_steps else None
        trainer = Trainer(model=model, args=args, train_dataset=Blocks(), eval_dataset=eval_dataset,
                          callbacks=trainer_callbacks(metrics, "pretraining"))
        quiet_trainer(trainer)
        result = trainer.train()
        final_ppl = scoring.perplexity(model, eval_blocks)
        elapsed = time.perf_counter() - started
        tokens = trainer.state.global_step * t.micro_batch_size * t.gradient_accumulation_steps * block
        summary = {
            "parameters": lab_model.count_parameters(model),
            "vocab_size": len(tokenizer),
            "steps": trainer.state.global_step,
            "train_tokens": tokens,
            "train_loss": round(float(result.training_loss), 4),
            "last_logged_loss": round(last_logged(trainer.state.log_history), 4),
            "heldout_perplexity_init": round(init_ppl, 3),
            "heldout_perplexity": round(final_ppl, 3),
            "tokens_per_second": round(tokens / max(result.metrics.get("train_runtime", elapsed), 1e-9), 1),
            "elapsed_s": round(elapsed, 1),
        }
        metrics.write({"step": trainer.state.global_step, "heldout_perplexity": final_ppl, "heldout_perplexity_init": init_ppl})
        model.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)
        recipe_dict = recipe.model_dump(mode="json")
        write_run_record(folder, "pretrain", recipe_dict, summary)
        write_json(folder / "report.json", summary)
        _write_card(folder, recipe, summary)
        _remove_checkpoints(folder)
    summary["output_dir"] = str(output)
    return summary


def _remove_checkpoints(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder / "checkpoints", ignore_errors=True)


def _write_card(folder: Path, recipe: PretrainRecipe, summary: dict[str, Any]) -> None:
    sources = [s.path for s in recipe.data.datasets]
    write_model_card(
        folder,
        title=f"{folder.name.removesuffix('.partial')}",
        description=(
            f"A {summary['parameters'] / 1e6:.1f} M-parameter {recipe.model.architecture} model pretrained from scratch "
            f"for {summary['steps']} steps on {', '.join(sources)}. Held-out perplexity fell from "
            f"{summary['heldout_perplexity_init']:.1f} (random init) to {summary['heldout_perplexity']:.2f}."
        ),
        recipe_yaml=dump_recipe(recipe),
        command="pretrain",
        tags=["pretrained-from-scratch", recipe.model.architecture],
        license=recipe.license,
        datasets=[s for s in sources if not is_lab(s)] or None,
        results={k: summary[k] for k in ("parameters", "steps", "last_logged_loss", "heldout_perplexity_init", "heldout_perplexity")},
    )


def build_lab_base(recipe: PretrainRecipe, force: bool = False) -> tuple[Path, bool]:
    """Pretrain the lab base into the cache unless it is there; returns (path, built_now)."""
    return run_cached("base", recipe, run, force)


def lab_recipe(overrides: list[str] | None = None) -> Any:
    """The shipped lab pretraining recipe, validated, with optional overrides."""
    from llmcourse.recipes.registry import load_command_recipe  # the shipped recipes live beside the schemas

    return load_command_recipe("pretrain", "lab/pretrain", overrides or [], None)


def build_lab(overrides: list[str], force: bool = False) -> dict[str, Any]:
    """Build (or reuse) the lab base; returns its path and pretraining report."""
    path, built = build_lab_base(lab_recipe(overrides), force)
    import json

    report = json.loads((path / "report.json").read_text(encoding="utf-8"))
    if not built:
        err.print(f"reusing the lab base in {path}")
    return {"path": str(path), "built": built, **report}
