"""bench/results.json at the repo root: each benchmark's figures under its own key, merged atomically."""

import json
import os
import tempfile
from pathlib import Path

RESULTS = Path(__file__).resolve().parents[2] / "bench" / "results.json"


def merge_results(key: str, figures: dict[str, object]) -> None:
    """Replace one benchmark's figures, keeping the others'."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    try:
        results = json.loads(RESULTS.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        results = {}
    results[key] = figures
    with tempfile.NamedTemporaryFile("w", dir=RESULTS.parent, suffix=".tmp", delete=False) as tmp:
        json.dump(results, tmp, indent=2, sort_keys=True)
        tmp.write("\n")
    os.chmod(tmp.name, 0o644)  # NamedTemporaryFile creates 0600
    os.replace(tmp.name, RESULTS)
