"""`make bench` measures the pipeline as users run it: importing the benchmarks must not set test-only settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from spy_pipeline_tests.conftest import REPO_ROOT

IMPORT_EVERY_BENCHMARK = """
import json, os
before = dict(os.environ)
import spy_pipeline_tests.bench.__main__
ours = ("SPY_PIPELINE_", "POLYGON_", "DAGSTER_")  # the libraries' own (polars' allocator settings) aside
print(json.dumps({k: v for k, v in os.environ.items() if k.startswith(ours) and before.get(k) != v}))
"""


def test_importing_the_benchmarks_leaves_the_environment_as_it_was() -> None:
    # a fresh interpreter: this test process has the tests' conftest loaded, which sets one chart process
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SPY_PIPELINE_", "POLYGON_"))}
    run = subprocess.run([sys.executable, "-c", IMPORT_EVERY_BENCHMARK], cwd=REPO_ROOT, env=env,
                         capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(run.stdout.strip().splitlines()[-1]) == {}
