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

# report_to name -> the package (import name = pip name) that integration needs
PACKAGES = {"wandb": "wandb", "mlflow": "mlflow", "comet_ml": "comet_ml", "swanlab": "swanlab", "tensorboard": "tensorboard",
            "trackio": "trackio"}
ENVIRONMENT = {
    "wandb_project": "WANDB_PROJECT", "wandb_entity": "WANDB_ENTITY", "wandb_name": "WANDB_NAME", "wandb_run_id": "WANDB_RUN_ID",
    "wandb_mode": "WANDB_MODE", "wandb_watch": "WANDB_WATCH", "wandb_log_model": "WANDB_LOG_MODEL",
    "mlflow_tracking_uri": "MLFLOW_TRACKING_URI", "mlflow_experiment_name": "MLFLOW_EXPERIMENT_NAME", "mlflow_run_name": "MLFLOW_RUN_NAME",
    "comet_api_key": "COMET_API_KEY", "comet_workspace": "COMET_WORKSPACE", "comet_project_name": "COMET_PROJECT_NAME",
    "comet_mode": "COMET_MODE", "swanlab_project": "SWANLAB_PROJECT", "swanlab_mode": "SWANLAB_MODE",
}


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
        if importlib.util.find_spec(PACKAGES[name]) is None:
            raise UserError(f"{key}: reporting to {name} needs the {PACKAGES[name]} package, which is not installed",
                            hint=f"pip install {PACKAGES[name]}, or remove {key}")


def report_settings(recipe: Any) -> dict[str, Any]:
    """`report_to` (and `run_name`) for the trainer's arguments; sets the trackers' environment."""
    for key, variable in ENVIRONMENT.items():
        value = getattr(recipe, key)
        if value is not None:
            os.environ[variable] = str(value)
    names = list(reporters(recipe))
    run_name = recipe.wandb_name or recipe.mlflow_run_name
    return {"report_to": names or "none", **({"run_name": run_name} if run_name else {})}
