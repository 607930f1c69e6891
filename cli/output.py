"""How the CLI talks: JSON on stdout for scripts, words and progress on stderr for people."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console
from rich.markup import escape

stderr = Console(stderr=True)


def emit_json(obj: Any) -> None:
    """One JSON object on stdout (amounts are integers already)."""
    sys.stdout.write(json.dumps(obj, sort_keys=True) + "\n")
    sys.stdout.flush()


def fail(message: str, *, code: int = 1) -> NoReturn:
    stderr.print(
        f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True, markup=True
    )
    sys.exit(code)
