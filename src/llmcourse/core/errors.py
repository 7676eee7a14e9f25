"""One error path for everything a user can get wrong.

A `UserError` is printed as one line (plus an optional hint) and exits with code 2; it never shows a
traceback unless `--debug` is given. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Iterable

EXIT_USER_ERROR = 2


class UserError(Exception):
    """A problem with the user's input: a recipe field, a file, a flag. Exit code 2."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\n  hint: {self.hint}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ` (did you mean 'x'?)` for the closest choice, or an empty string."""
    # 0.6 offered warmup_steps for adam_eps; a short name differs by one character at 0.67 (nf5 / nf4)
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6 if len(word) <= 4 else 0.75)
    return f" (did you mean '{close[0]}'?)" if close else ""


def choose(kind: str, name: str, choices: Iterable[str]) -> None:
    """Raise a UserError unless `name` is one of `choices`, listing the valid names."""
    valid = sorted(choices)
    if name not in valid:
        raise UserError(
            f"unknown {kind} '{name}'{did_you_mean(name, valid)}",
            hint=f"valid {kind}s: {', '.join(valid)}",
        )


class Interrupted(Exception):
    """A run stopped on request (Ctrl-C) after saving what it needs to resume. Exit code 130."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
