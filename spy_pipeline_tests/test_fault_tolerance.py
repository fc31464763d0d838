"""Every sandbox fault mode against a two-day backfill of all raw assets, compared with a fault-free run.

Each test materializes raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars and raw_news (with
their checks) over 2025-01-07..2025-01-08 against a test-owned sandbox whose pages are capped (so every
list spans several pages) and whose faults the test sets. The outcome is either every Parquet file
frame-equal to the fault-free run's, or a failure with a stated reason. The one mode the pipeline cannot
catch, skip_page on lists without a checkable shape (contracts, news, option bars), is pinned down as a
known limit: the run succeeds with fewer rows.

Run alone: .venv/bin/python -m pytest -m faults
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import urllib3

from spy_pipeline.sandbox.faults import KINDS, Fault, FaultPlan
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests import soak

pytestmark = [pytest.mark.faults, pytest.mark.integration]
ENDPOINTS = soak.ENDPOINTS


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pl.DataFrame]:
    """The fault-free run's files (same page caps, so the only difference in a test is its faults)."""
    server = soak.new_server()
    try:
        data_dir = tmp_path_factory.mktemp("clean")
        outcome = soak.run_backfill(server, data_dir)
    finally:
        server.stop()
    assert outcome.success and not outcome.failed_checks, outcome.reason
    files = soak.snapshot(data_dir)
    assert len(files) == 10 and all(frame.height for frame in files.values())
    return files


@pytest.fixture
def faulty(sandbox_env: SandboxServer, monkeypatch: pytest.MonkeyPatch) -> SandboxServer:
    """The pipeline pointed at the test's sandbox, pages capped, reads timing out after 1 s."""
    soak.cap_pages(sandbox_env.faults)
    monkeypatch.setenv("SPY_PIPELINE_HTTP_READ_TIMEOUT", str(soak.READ_TIMEOUT_S))
    return sandbox_env


def _add_everywhere(server: SandboxServer, *faults: Fault) -> None:
    for prefix in ENDPOINTS.values():
        server.faults.add(prefix, *faults)


def _assert_all_faults_served(server: SandboxServer) -> None:
    assert server.faults.pending() == 0, "some queued faults were never served: the test proved less than it says"


# --- modes the pipeline recovers from exactly ---------------------------------------------------------


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([Fault("truncated", seed=1)], id="truncated"),
        pytest.param([Fault("repeat_page"), Fault("repeat_page")], id="repeat_page"),
        # (malformed is the path truncated takes; one of each so the client's backoff stays short)
        pytest.param([Fault("reset"), Fault("slow", delay_s=soak.SLOW_S), Fault("status", status=429, retry_after_s=0)],
                     id="reset-slow-status"),
    ],
)
def test_recoverable_faults_on_every_endpoint_give_the_fault_free_files(
    faulty: SandboxServer, data_dir: Path, clean: dict[str, pl.DataFrame], faults: list[Fault]
) -> None:
    _add_everywhere(faulty, *faults)
    outcome = soak.backfill()
    assert outcome.success and not outcome.failed_checks, outcome.reason
    _assert_all_faults_served(faulty)
    assert soak.differences(clean, soak.snapshot(data_dir)) == []


@pytest.mark.parametrize("kind", ["duplicate_bars", "out_of_order_bars"])
def test_duplicated_or_shuffled_bars_give_the_fault_free_files(
    faulty: SandboxServer, data_dir: Path, clean: dict[str, pl.DataFrame], kind: str
) -> None:
    for name in ("spy_bars", "vix_bars", "option_bars"):
        faulty.faults.add(ENDPOINTS[name], *[Fault(kind, seed=seed) for seed in range(3)])
    outcome = soak.backfill()
    assert outcome.success and not outcome.failed_checks, outcome.reason
    _assert_all_faults_served(faulty)
    assert soak.differences(clean, soak.snapshot(data_dir)) == []


def test_truncated_answers_beyond_the_retries_fail_the_run_with_the_reason(
    faulty: SandboxServer, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2 attempts per request (the client's retries) x 4 attempts per step (Dagster's): 8 truncated answers."""
    monkeypatch.setenv("SPY_PIPELINE_MAX_RETRIES", "1")
    faulty.faults.add(ENDPOINTS["spy_bars"], *[Fault("truncated", seed=seed) for seed in range(8)])
    outcome = soak.backfill()
    _assert_all_faults_served(faulty)
    assert not outcome.success and len(outcome.step_retries) == 3
    assert any("malformed JSON body" in f and "/v2/aggs/ticker/SPY/" in f for f in outcome.failures), outcome.failures
    assert not (data_dir / "raw" / "spy").exists()  # nothing half-written


# --- skip_page: lost items -------------------------------------------------------------------------


def test_skipped_spy_page_is_caught_by_the_coverage_check(faulty: SandboxServer, data_dir: Path) -> None:
    faulty.faults.add(ENDPOINTS["spy_bars"], Fault("skip_page"))  # the 2nd page: 400 bars of 2025-01-07
    outcome = soak.backfill()
    _assert_all_faults_served(faulty)
    assert "spy_regular_session_coverage (ERROR)" in outcome.failed_checks, outcome.reason
    spy = pl.read_parquet(data_dir / "raw" / "spy" / "2025-01-07.parquet")
    assert spy.height < 796 - 300  # the hole is there, and the check said so


def test_skipped_vix_page_fails_clearly(faulty: SandboxServer, data_dir: Path) -> None:
    faulty.faults.add(ENDPOINTS["vix_bars"], Fault("skip_page"))  # the 2nd page: nearly all of 2025-01-08
    outcome = soak.backfill()
    _assert_all_faults_served(faulty)
    assert not outcome.success or "vix_regular_session_coverage (ERROR)" in outcome.failed_checks, outcome.reason
    assert outcome.reason


@pytest.mark.parametrize(
    ("endpoint", "files"),
    [
        ("contracts", ["raw/options/contracts/2025-01-07.parquet", "raw/options/2025-01-07.parquet"]),
        ("news", ["raw/news/2025-01-07.parquet"]),
        ("option_bars", None),  # which contract's page is skipped depends on the fetch order
    ],
)
def test_skipped_page_of_a_list_without_a_total_is_a_known_silent_loss(
    faulty: SandboxServer, data_dir: Path, clean: dict[str, pl.DataFrame], endpoint: str, files: list[str] | None
) -> None:
    """KNOWN LIMIT. Contracts, news and option bars carry no total count (Polygon's `count` is the page's
    size) and no shape a check could test (a band's contracts, a day's articles and a sparse contract's
    bars have no expected number), so a next_url that skips a page loses its items without a trace: the
    run succeeds, its checks pass, and the files hold fewer rows. This test pins that down."""
    faulty.faults.add(ENDPOINTS[endpoint], Fault("skip_page"))
    outcome = soak.backfill()
    _assert_all_faults_served(faulty)
    assert outcome.success and not outcome.failed_checks, outcome.reason
    diffs = soak.differences(clean, soak.snapshot(data_dir))
    assert diffs and all("rows instead of" in d for d in diffs), diffs
    if files is not None:
        assert sorted(d.split(":")[0] for d in diffs) == sorted(files)
    for line in diffs:
        got, want = (int(n) for n in line.split(": ")[1].split(" rows instead of "))
        assert got < want  # items lost, never added


# --- the sandbox's fault injection itself ---------------------------------------------------------


def _get(server: SandboxServer, url: str) -> urllib3.BaseHTTPResponse:
    return urllib3.PoolManager().request(
        "GET", url if url.startswith("http") else server.url + url,
        headers={"Authorization": f"Bearer {soak.SOAK_KEY}"}, retries=False,
    )


@pytest.fixture
def server() -> SandboxServer:
    with SandboxServer(api_key=soak.SOAK_KEY) as running:
        yield running


AGGS = "/v2/aggs/ticker/SPY/range/1/minute/2025-01-07/2025-01-08?adjusted=true&sort=asc&limit=50000"


def _pages(server: SandboxServer, url: str) -> list[list[dict]]:
    pages = []
    while url:
        body = json.loads(_get(server, url).data)
        pages.append(body.get("results", []))
        url = body.get("next_url")
    return pages


def test_page_cap_splits_a_list_into_pages(server: SandboxServer) -> None:
    server.faults.cap_page("/v2/aggs/", 400)
    pages = _pages(server, AGGS)
    assert [len(p) for p in pages] == [400, 400, 400, 380]
    times = [bar["t"] for page in pages for bar in page]
    assert times == sorted(set(times))


def test_truncated_is_a_200_cut_mid_body(server: SandboxServer) -> None:
    server.faults.add("/v2/aggs", Fault("truncated", seed=7))
    response = _get(server, AGGS)
    assert response.status == 200 and len(response.data) > 2
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.data)
    assert json.loads(_get(server, AGGS).data)["resultsCount"] == 1580  # the next request is whole again


def test_repeat_and_skip_page_rewrite_next_url(server: SandboxServer) -> None:
    server.faults.cap_page("/v2/aggs/", 400)
    clean = _pages(server, AGGS)
    server.faults.add("/v2/aggs", Fault("repeat_page"))
    repeated = _pages(server, AGGS)
    assert repeated == [clean[0], *clean]
    server.faults.add("/v2/aggs", Fault("slow"), Fault("skip_page"))  # the 2nd request's next_url skips
    skipped = _pages(server, AGGS)
    assert skipped == [clean[0], clean[1], clean[3]]


def test_duplicate_and_out_of_order_bars_are_seeded(server: SandboxServer) -> None:
    bars = json.loads(_get(server, AGGS).data)["results"]
    server.faults.add("/v2/aggs", Fault("duplicate_bars", seed=3), Fault("duplicate_bars", seed=3))
    first, second = (json.loads(_get(server, AGGS).data)["results"] for _ in range(2))
    assert first == second and len(first) == len(bars) + len(bars) // 4
    assert {b["t"] for b in first} == {b["t"] for b in bars}
    server.faults.add("/v2/aggs", Fault("out_of_order_bars", seed=3))
    shuffled = json.loads(_get(server, AGGS).data)["results"]
    assert shuffled != bars and sorted(shuffled, key=lambda b: b["t"]) == bars


def test_random_plan_is_reproducible_by_seed() -> None:
    def draws(seed: int) -> list[str | None]:
        plan = FaultPlan.random(seed, 0.3, ["truncated", "skip_page", "status"], ["/v2/aggs"])
        taken = [plan.take("/v2/aggs/ticker/SPY/x") for _ in range(200)] + [plan.take("/v3/other")]
        return [fault.kind if fault else None for fault in taken]

    assert draws(5) == draws(5) and draws(5) != draws(6)
    kinds = draws(5)
    assert kinds[-1] is None  # a path outside the plan's prefixes never gets a fault
    assert 30 < sum(k is not None for k in kinds) < 90
    with pytest.raises(ValueError, match="unknown fault kind"):
        FaultPlan.random(1, 0.1, ["nonsense"])
    assert set(KINDS) >= {"truncated", "repeat_page", "skip_page", "duplicate_bars", "out_of_order_bars"}
