"""Reproducible benchmarks: each prints its measured figures as JSON and writes them with ``--json FILE``."""

from __future__ import annotations

import json
from pathlib import Path


def emit(figures: dict[str, object], json_path: Path | None) -> None:
    """Print ``figures`` as JSON and, with a path, write them there too."""
    text = json.dumps(figures, indent=2)
    print(text)
    if json_path is not None:
        json_path.write_text(text + "\n", encoding="utf-8")
