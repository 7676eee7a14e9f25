"""`llmcourse env`: what is installed and what hardware torch sees."""

from __future__ import annotations

import os
from typing import Any

from llmcourse.core.outputs import library_versions


def collect() -> dict[str, Any]:
    """Engine versions, torch device, CUDA and CPU thread information."""
    info: dict[str, Any] = dict(library_versions())
    try:
        import torch
    except ImportError:
        info["device"] = "torch not installed"
        return info
    info["cpu_count"] = os.cpu_count()
    info["torch_threads"] = torch.get_num_threads()
    info["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        info["cuda_version"] = torch.version.cuda
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu"] = torch.cuda.get_device_name(0)
        info["bf16_supported"] = torch.cuda.is_bf16_supported()
        info["device"] = "cuda"
    else:
        info["device"] = "cpu"
    from llmcourse.core.cache import llmcourse_home

    info["llmcourse_home"] = str(llmcourse_home())
    return info
