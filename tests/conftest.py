"""Shared fixtures: offline environment, the real CLI in a subprocess, one lab base and one demo per session.

The lab base and the demo are long single jobs that the rest of the session waits on, and on two
cores a tiny model trains almost as fast on one thread as on two. So, in the session without the
GGUF engine, they run in background processes started as early as possible (the base right after
collection, the demo once the base exists) while the other tests run beside them on one torch
thread; tests are ordered so that those needing a demo stage come after those that need none, and
each waits only for the stage it uses. The background jobs keep the default thread count (their
numbers are those of `make demo`) with passive OpenMP waiting, so they yield the core the tests
use. The SFT and DPO fixtures go through the lab cache as the demo does (`run_cached`): a stage the
demo has built is reused, one it is building is waited for, one it has not reached is built by the
fixture (and the demo then reuses it). Nothing is skipped or faked: the other fixtures hand tests
exactly what `llmcourse lab build --json` and `llmcourse demo --json` printed. With the GGUF engine (llama.cpp's threads spin) sharing
cores is slower than taking turns, so that session runs everything in turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
# Every test and every CLI call shares one private lab cache, never the user's ~/.cache/llmcourse.
# Set LLMCOURSE_TEST_HOME to reuse a lab cache between local runs.
os.environ["LLMCOURSE_HOME"] = os.environ.get("LLMCOURSE_TEST_HOME") or tempfile.mkdtemp(prefix="llmcourse-home-")

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """Run `python -m llmcourse ARGS` in a subprocess, as a user would, and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "llmcourse", *args],
        cwd=cwd or REPO, env=full_env, capture_output=True, text=True, timeout=timeout,
    )


class BackgroundCli:
    """`python -m llmcourse ARGS` started now in its own process; `result()` waits for it."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.stdout = tempfile.TemporaryFile(mode="w+")
        self.stderr = tempfile.TemporaryFile(mode="w+")
        full_env = {**os.environ, **env, "OMP_WAIT_POLICY": "PASSIVE"}
        full_env.pop("OMP_NUM_THREADS", None)
        if DEFAULT_THREADS is not None:
            full_env["OMP_NUM_THREADS"] = DEFAULT_THREADS
        self.process = subprocess.Popen([sys.executable, "-m", "llmcourse", *args], cwd=REPO, text=True, env=full_env,
                                        stdout=self.stdout, stderr=self.stderr)
        self._result: subprocess.CompletedProcess | None = None

    def running(self) -> bool:
        """Whether the process has not exited yet."""
        return self.process.poll() is None

    def result(self, timeout: int = 3600) -> subprocess.CompletedProcess:
        """Wait for the process and return what it printed, like `run_cli`."""
        if self._result is None:
            self.process.wait(timeout=timeout)
            self.stdout.seek(0)
            self.stderr.seek(0)
            self._result = subprocess.CompletedProcess(self.process.args, self.process.returncode, self.stdout.read(), self.stderr.read())
        return self._result


BACKGROUND: dict[str, BackgroundCli] = {}
NEEDS_DEMO = pytest.StashKey[bool]()
DEFAULT_THREADS = os.environ.get("OMP_NUM_THREADS")
DEMO_SKIP = [name for name in os.environ.get("LLMCOURSE_TEST_DEMO_SKIP", "").split(",") if name]
SHARE_CORES = "gguf" in DEMO_SKIP  # see the module docstring


def needs_extra(module: str, extra: str) -> pytest.MarkDecorator:
    """Skip unless `module` imports here, naming the pip line that installs it. `make test` runs
    these tests again in an environment installed that way (`.venv-EXTRA`, see the Makefile)."""
    import importlib.util

    return pytest.mark.skipif(importlib.util.find_spec(module) is None, reason=f"needs {module}: pip install -e '.[{extra}]'")


def _demo_env(lab_home: Path | str) -> dict[str, str]:
    return {"LLMCOURSE_HOME": str(lab_home)}


def _demo_args() -> list[str]:
    # While `make test` still builds the GGUF engine, the first pytest session runs the demo without it.
    # The merging experiment (2.5 min at the demo's settings) is tested on its own at a smaller size.
    return ["demo", "--json", "--skip", "specialists", *(arg for name in DEMO_SKIP for arg in ("--skip", name))]


def _needs(item: pytest.Item, fixture: str) -> bool:
    return fixture in getattr(item, "fixturenames", ())


def _order(item: pytest.Item) -> int:
    if _needs(item, "demo_report"):
        return 4
    if _needs(item, "lab_dpo"):
        return 3
    if _needs(item, "lab_sft"):
        return 2
    return 1 if _needs(item, "lab_base") else 0


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Order tests by what they wait for (nothing, the base, the SFT model, the DPO model, the whole
    demo) and, when sharing cores, start building the lab base in the background."""
    items.sort(key=_order)
    if os.environ.get("LLMCOURSE_TEST_FAST"):  # `make test-fast`: nothing that needs a trained lab model
        config.hook.pytest_deselected(items=[item for item in items if _order(item) >= 1])
        items[:] = [item for item in items if _order(item) == 0]
    config.stash[NEEDS_DEMO] = any(_order(item) >= 2 for item in items)
    if SHARE_CORES and any(_order(item) >= 1 for item in items) and "lab" not in BACKGROUND:
        BACKGROUND["lab"] = BackgroundCli("lab", "build", "--json", env={"LLMCOURSE_HOME": os.environ["LLMCOURSE_HOME"]})


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop what is still running in the background (an interrupted or failed session)."""
    for job in BACKGROUND.values():
        if job.running():
            job.process.kill()
            job.process.wait()


@pytest.fixture(autouse=True)
def _share_the_cores() -> None:
    """One torch thread per test process while a background job runs, the default otherwise."""
    busy = any(job.running() for job in BACKGROUND.values())
    if busy:
        os.environ["OMP_NUM_THREADS"] = "1"
    elif DEFAULT_THREADS is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = DEFAULT_THREADS
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1 if busy else int(DEFAULT_THREADS or os.cpu_count() or 1))


@pytest.fixture(scope="session")
def lab_home() -> Path:
    """The private $LLMCOURSE_HOME of this test session."""
    return Path(os.environ["LLMCOURSE_HOME"])


@pytest.fixture(scope="session")
def lab_base(lab_home: Path, request: pytest.FixtureRequest) -> dict:
    """The lab base built once with the shipped recipe, through `llmcourse lab build --json`; once
    it exists, the demo starts in the background if any test needs it (when sharing cores)."""
    result = BACKGROUND["lab"].result() if "lab" in BACKGROUND else run_cli("lab", "build", "--json", env={"LLMCOURSE_HOME": str(lab_home)})
    assert result.returncode == 0, result.stderr
    if SHARE_CORES and request.config.stash.get(NEEDS_DEMO, False) and "demo" not in BACKGROUND:
        BACKGROUND["demo"] = BackgroundCli(*_demo_args(), env=_demo_env(lab_home))
    return json.loads(result.stdout)


def _lab_stage(name: str, recipe: object, runner: object) -> str:
    """The lab cache folder of `recipe`, through the cache itself: reused when finished, waited for
    while another process (the background demo) builds it, else built here on all the cores the
    demo would use (`llmcourse.lab.cache.run_cached`)."""
    import torch

    from llmcourse.lab.cache import run_cached

    threads = torch.get_num_threads()
    torch.set_num_threads(int(DEFAULT_THREADS or os.cpu_count() or 1))
    try:
        path, _ = run_cached(name, recipe, runner)
    finally:
        torch.set_num_threads(threads)
    return str(path)


@pytest.fixture(scope="session")
def lab_sft(lab_base: dict) -> str:
    """The demo's SFT model: the shipped lab SFT recipe on the lab base."""
    from llmcourse.demo.run import sft_recipe
    from llmcourse.finetune.sft import run as run_sft

    return _lab_stage("sft", sft_recipe(lab_base["path"]), run_sft)


@pytest.fixture(scope="session")
def lab_dpo(lab_sft: str) -> str:
    """The demo's DPO model: the shipped lab DPO recipe on the SFT model."""
    from llmcourse.demo.run import dpo_recipe
    from llmcourse.finetune.dpo import run as run_dpo

    return _lab_stage("dpo", dpo_recipe(lab_sft), run_dpo)


@pytest.fixture(scope="session")
def demo_report(lab_base: dict, lab_home: Path) -> dict:
    """`llmcourse demo --json` run once per session: its stages are the lab models other tests start from."""
    result = BACKGROUND["demo"].result() if "demo" in BACKGROUND else run_cli(*_demo_args(), env=_demo_env(lab_home))
    assert result.returncode == 0, result.stderr
    return {**json.loads(result.stdout), "stderr": result.stderr}
