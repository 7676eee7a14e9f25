"""`--help` works for every command and never imports the heavy libraries."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmcourse.cli import app

HEAVY = ("torch", "transformers", "trl", "peft", "datasets", "accelerate", "mergekit")


def command_paths() -> list[list[str]]:
    """Every command and sub-command of the Typer app, as argument lists."""
    paths: list[list[str]] = [[]]
    for command in app.registered_commands:
        paths.append([command.name or command.callback.__name__])
    for group in app.registered_groups:
        paths.append([group.name])
        for command in group.typer_instance.registered_commands:
            paths.append([group.name, command.name or command.callback.__name__])
    return paths


def test_every_command_is_discovered() -> None:
    names = {" ".join(p) for p in command_paths()}
    assert {"pretrain", "validate", "env", "demo", "recipes ls", "recipes cp", "lab build", "lab export", "lab score"} <= names


@pytest.mark.parametrize("path", command_paths(), ids=lambda p: " ".join(p) or "llmcourse")
def test_help_exits_zero_without_heavy_imports(path: list[str]) -> None:
    probe = (
        "import sys, json\n"
        "from typer.testing import CliRunner\n"
        "from llmcourse.cli import app\n"
        f"result = CliRunner().invoke(app, {path + ['--help']!r})\n"
        f"print(json.dumps({{'code': result.exit_code, 'out': result.output, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    report = json.loads(completed.stdout.strip().splitlines()[-1])
    assert report["code"] == 0, report["out"]
    assert "Usage" in report["out"]
    assert report["heavy"] == []


def test_what_libraries_print_on_stdout_goes_to_stderr(tmp_path: Path) -> None:
    # GPTQModel prints a banner on stdout when peft or transformers import it; `--json` and
    # `--dry-run` output must stay parseable whatever a library prints while the command runs.
    probe = (
        "import sys, llmcourse.recipes.loader as loader\n"
        "real = loader.validate\n"
        "def noisy(*args, **kwargs):\n"
        "    print('LIBRARY BANNER')\n"
        "    return real(*args, **kwargs)\n"
        "loader.validate = noisy\n"
        "sys.argv = ['llmcourse', 'quantize', 'lab://base', '--format', 'int8', '--dry-run']\n"
        "from llmcourse.cli import main\n"
        "main()\n"
    )
    completed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "LIBRARY BANNER" in completed.stderr and "LIBRARY BANNER" not in completed.stdout
    assert yaml.safe_load(completed.stdout)["model"] == "lab://base"


@pytest.mark.parametrize("terminal", [True, False])
def test_library_progress_bars_are_off_only_when_stderr_is_not_a_terminal(terminal: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    from llmcourse.cli import main

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: terminal)
    monkeypatch.setattr(sys, "argv", ["llmcourse", "--help"])
    with pytest.raises(SystemExit):
        main()
    assert os.environ.get("TQDM_DISABLE") == (None if terminal else "1"), "tqdm reads it once, when a library imports it"
    monkeypatch.delenv("TQDM_DISABLE", raising=False)
