"""`llmcourse chat`: a terminal conversation with any model the tool makes (HF folder, adapter, GGUF).

Answers stream as they are generated; the history is kept and sent back through the chat template.
Commands: `/reset` (forget the history), `/save FILE` (the conversation as JSON), `/system TEXT`,
`/quit` (or Ctrl-D).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

HELP = "commands: /reset, /save FILE, /system TEXT, /quit"


def run(engine: Any, strategy: Any, options: Any, system: str | None, seed: int, stdin: TextIO = sys.stdin) -> list[dict[str, str]]:
    """The read–generate–print loop; returns the conversation."""
    from llmcourse.core.console import err, stdout

    history: list[dict[str, str]] = [{"role": "system", "content": system}] if system else []
    err.print(f"[bold]chat[/] with {engine.name} ({strategy.name}); {HELP}")
    turn = 0
    while True:
        if stdin.isatty():
            err.print("[bold cyan]you>[/] ", end="")
        line = stdin.readline()
        if not line:
            break
        text = line.strip()
        if not text:
            continue
        if text in ("/quit", "/exit"):
            break
        if text == "/reset":
            history = [m for m in history if m["role"] == "system"]
            err.print("[dim]history cleared[/]")
            continue
        if text.startswith("/save"):
            target = Path(text.removeprefix("/save").strip() or "chat.json")
            target.write_text(json.dumps({"model": engine.name, "messages": history}, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
            err.print(f"[dim]saved {len(history)} messages to {target}[/]")
            continue
        if text.startswith("/system"):
            history = [{"role": "system", "content": text.removeprefix("/system").strip()}] + [m for m in history if m["role"] != "system"]
            continue
        if text.startswith("/"):
            err.print(f"[yellow]unknown command[/] {text.split()[0]}; {HELP}")
            continue
        ids = engine.prompt_ids(text, history=history or None)
        stdout().write("assistant> ")
        pieces = []
        for piece in engine.stream(ids, strategy, options, seed + turn):
            pieces.append(piece)
            stdout().write(piece)
            stdout().flush()
        stdout().write("\n")
        history += [{"role": "user", "content": text}, {"role": "assistant", "content": "".join(pieces).strip()}]
        turn += 1
    return history
