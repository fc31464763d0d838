"""The layers of the README's "Layout": every import-linter contract of pyproject.toml is kept.

Runs the venv's `lint-imports` (next to the test's interpreter) on this checkout's package, so a new import that
crosses a layer, reaches the official `polygon` client from outside spy_pipeline.polygon, or closes an import
circle fails the suite with import-linter's report.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from spy_pipeline_tests.conftest import REPO_ROOT

LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _contract_names() -> list[str]:
    config = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    return [contract["name"] for contract in config["contracts"]]


def test_the_contracts_name_every_layer_and_the_one_door_to_polygon() -> None:
    names = _contract_names()
    assert len(names) == len(set(names)) >= 5
    assert any("One door to Polygon" in name for name in names)
    assert any("No import cycles" in name for name in names)


def test_every_import_linter_contract_is_kept() -> None:
    assert LINT_IMPORTS.exists(), f"{LINT_IMPORTS} is missing: install the dev extra (import-linter)"
    # This checkout's package first on the path: not an installed copy of spy_pipeline.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))}
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(REPO_ROOT / "pyproject.toml")],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    report = result.stdout + result.stderr
    assert result.returncode == 0, report
    kept = re.search(r"Contracts: (\d+) kept, 0 broken\.", report)
    assert kept is not None and int(kept[1]) == len(_contract_names()), report
    for name in _contract_names():
        assert f"{name} KEPT" in report, report
