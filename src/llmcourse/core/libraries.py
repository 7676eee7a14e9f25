"""Third-party libraries told to keep quiet: their warnings and progress bars, not ours."""

from __future__ import annotations


def quiet_libraries(with_datasets: bool = True) -> None:
    """Silence the libraries' own progress bars and advisory warnings (ours replace them).

    `with_datasets=False` leaves `datasets` unimported, for commands that never read a dataset.
    """
    import logging as std_logging
    import warnings

    # bitsandbytes warns on CPU that it cannot download an optional kernel from the hub.
    std_logging.getLogger("bitsandbytes").setLevel(std_logging.ERROR)
    # torchao (which transformers imports when GPTQModel brought it) warns about its CUDA-only
    # libraries on CPU, and torch about torchao's pytree registrations.
    for name in ("torchao", "torch.utils._pytree"):
        std_logging.getLogger(name).setLevel(std_logging.ERROR)
    from transformers.utils import logging

    logging.disable_progress_bar()
    logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning, module="transformers")
    if not with_datasets:
        return
    try:
        import datasets

        datasets.disable_progress_bars()
        datasets.logging.set_verbosity_error()
    except ImportError:
        pass


def installed(*modules: str) -> bool:
    """True when every module can be imported (found without importing it)."""
    import importlib.util

    return all(importlib.util.find_spec(module) is not None for module in modules)


def pip_line(extra: str, markup: bool = False) -> str:
    """The command that installs one of our extras; `markup` escapes it for rich's console."""
    return f"pip install 'llmcourse\\[{extra}]'" if markup else f"pip install 'llmcourse[{extra}]'"
