"""The code location loads and validates the way `dagster dev` and CI load it."""

import subprocess
import sys
from pathlib import Path

from spy_pipeline_tests.conftest import REPO_ROOT


def test_dagster_definitions_validate(tmp_path: Path) -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-m", "spy_pipeline.definitions"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
        env={"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp_path), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful" in result.stderr + result.stdout
