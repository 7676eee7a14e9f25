"""Axolotl's experiment-tracker keys (wandb_*, mlflow_*, comet_*, swanlab_*) and `report_to`, as
recipe fields: the trainer reports where they say, instead of the keys being ignored."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel


class TrackerKeys(BaseModel):
    """Mixed into the training recipes; every key is Axolotl's spelling."""

    report_to: list[Literal["wandb", "mlflow", "comet_ml", "swanlab", "tensorboard", "trackio"]] | None = None
    wandb_project: str | None = None
    wandb_entity: str | None = None
    wandb_name: str | None = None
    wandb_run_id: str | None = None
    wandb_mode: Literal["online", "offline", "disabled"] | None = None
    wandb_watch: str | None = None
    wandb_log_model: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment_name: str | None = None
    mlflow_run_name: str | None = None
    comet_api_key: str | None = None
    comet_workspace: str | None = None
    comet_project_name: str | None = None
    comet_mode: str | None = None
    swanlab_project: str | None = None
    swanlab_mode: str | None = None
