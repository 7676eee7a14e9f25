"""Small measurements every report shares: log-probabilities from logits, weights on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def log_softmax(logits: Any) -> Any:
    """Row-wise log-softmax of a float array (numpy), in float64."""
    import numpy as np

    logits = np.asarray(logits, dtype=np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def weights_mb(path: str | Path) -> float:
    """Size of the weight files in a model folder (its `*.safetensors`), or of one file, in MB."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size / 1e6
    return sum(p.stat().st_size for p in path.glob("*.safetensors")) / 1e6
