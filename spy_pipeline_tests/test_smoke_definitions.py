"""The code location loads and validates the way `dagster dev` and CI load it."""

import os
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



def test_launched_runs_fork_their_steps_from_a_server_holding_the_code_location() -> None:
    """Every job's steps (the asset jobs of the UI's Materialize too) start from a forkserver that has imported
    the code location and the instance's storage modules once, instead of a fresh interpreter each; the launched
    runs of test_cli and test_ui_browser go through it."""
    from spy_pipeline.definitions import STEP_PRELOAD_MODULES, defs

    assert STEP_PRELOAD_MODULES[0] == "spy_pipeline.definitions"
    for job in ("daily_backfill", "daily_charts_backfill", "__ASSET_JOB"):
        mapped = defs.resolve_job_def(job).executor_def.apply_config_mapping({})
        assert mapped.success and mapped.value["config"]["start_method"] == {
            "forkserver": {"preload_modules": STEP_PRELOAD_MODULES}}, job


def test_loading_the_code_location_leaves_matplotlib_to_the_chart_steps() -> None:
    """Every process loading the definitions (code servers, run workers, the CLI) would pay ~0.75 s for it."""
    script = ("import sys\nimport spy_pipeline.definitions\n"
              "from spy_pipeline.defs.reports.charts import DRAWING_MODULES\n"
              "print(sorted(m for m in (*DRAWING_MODULES, 'matplotlib') if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "[]"


def test_every_module_the_step_server_preloads_imports() -> None:
    """The forkserver silently skips a module that fails to import (a Dagster upgrade moving a storage module
    would only make every step slower): each must import in a fresh interpreter."""
    from spy_pipeline.definitions import STEP_PRELOAD_MODULES

    script = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)"
    result = subprocess.run([sys.executable, "-c", script, *STEP_PRELOAD_MODULES], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
