"""Where a training run reports (TrainingArguments' `report_to`), from the recipe's tracker keys.

As in Axolotl: `wandb_project` turns on Weights & Biases (unless `wandb_mode: disabled`),
`mlflow_tracking_uri` / `mlflow_experiment_name` MLflow, `comet_api_key` / `comet_project_name`
Comet, `swanlab_project` SwanLab; `report_to` adds tensorboard or trackio. The settings travel as
the environment variables each integration reads.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from llmcourse.core.errors import UserError

def reporters(recipe: Any) -> dict[str, str]:
    """Each tracker the recipe turns on, with the key that turned it on."""
    found: dict[str, str] = {name: "report_to" for name in recipe.report_to or []}
    if recipe.wandb_project and recipe.wandb_mode != "disabled":
        found.setdefault("wandb", "wandb_project")
    if recipe.mlflow_tracking_uri or recipe.mlflow_experiment_name:
        found.setdefault("mlflow", "mlflow_tracking_uri" if recipe.mlflow_tracking_uri else "mlflow_experiment_name")
    if recipe.comet_api_key or recipe.comet_project_name:
        found.setdefault("comet_ml", "comet_project_name" if recipe.comet_project_name else "comet_api_key")
    if recipe.swanlab_project:
        found.setdefault("swanlab", "swanlab_project")
    return found


def check_reporters(recipe: Any) -> None:
    """Every tracker the recipe turns on must be installed: one line naming the pip install."""
    for name, key in reporters(recipe).items():
        if importlib.util.find_spec(name) is None:  # each report_to name is also its package's
            raise UserError(f"{key}: reporting to {name} needs the {name} package, which is not installed",
                            hint=f"pip install {name}, or remove {key}")


def report_settings(recipe: Any) -> dict[str, Any]:
    """`report_to` (and `run_name`) for the trainer's arguments; sets the trackers' environment."""
    from llmcourse.recipes.trackers import TrackerKeys

    for key in TrackerKeys.model_fields:  # wandb_project -> WANDB_PROJECT, ... (report_to is ours)
        value = getattr(recipe, key)
        if key != "report_to" and value is not None:
            os.environ[key.upper()] = str(value)
    names = list(reporters(recipe))
    run_name = recipe.wandb_name or recipe.mlflow_run_name
    return {"report_to": names or "none", **({"run_name": run_name} if run_name else {})}
