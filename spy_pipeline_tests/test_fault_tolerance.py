"""Every sandbox fault mode against a two-day backfill of all raw assets, compared with a fault-free run.

Each test materializes raw_spy_bars, raw_vix_bars, options_contracts, raw_options_bars and raw_news (with
their checks) over 2025-01-07..2025-01-08 against a test-owned sandbox whose pages are capped (so every
list spans several pages) and whose faults the test sets. The outcome is either every Parquet file
frame-equal to the fault-free run's, or a failure with a stated reason. A skipped page is noticed by
listing a paginated answer twice (the client takes an answer when two listings agree).

Run alone: .venv/bin/python -m pytest -m faults
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest
import urllib3

from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.errors import PolygonPayloadError
from spy_pipeline.polygon.transport import RetryPolicy
from spy_pipeline.sandbox.faults import KINDS, Fault, FaultPlan
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline_tests import soak
from spy_pipeline_tests.conftest import SANDBOX_KEY

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


# --- skip_page: a listing that loses a page -----------------------------------------------------------


@pytest.mark.parametrize("endpoint", ["spy_bars", "vix_bars", "contracts", "news", "option_bars"])
def test_a_skipped_page_is_noticed_by_a_second_listing_and_recovered(
    faulty: SandboxServer, data_dir: Path, clean: dict[str, pl.DataFrame], endpoint: str
) -> None:
    """Polygon's pages carry no total, so the client lists a paginated answer twice: the listing that lost
    a page disagrees with the next one, and the answer is taken only when two listings agree."""
    faulty.faults.add(ENDPOINTS[endpoint], Fault("skip_page"))
    outcome = soak.backfill()
    _assert_all_faults_served(faulty)
    assert outcome.success and not outcome.failed_checks, outcome.reason
    assert soak.differences(clean, soak.snapshot(data_dir)) == []


def test_listings_that_keep_disagreeing_fail_with_the_reason(faulty: SandboxServer) -> None:
    """The 1st listing loses its 2nd page, the 2nd is whole, the 3rd loses its 2nd page again: no two
    consecutive listings agree, so the client refuses the answer instead of returning a partial list."""
    client = PolygonClient(SANDBOX_KEY, faulty.url, None, retry_policy=RetryPolicy(max_retries=0))
    day = dt.date(2025, 1, 7)

    def listing() -> pl.DataFrame:
        return client.options_contracts("SPY", day, expiration_lte=day + dt.timedelta(days=3))

    before = client.stats.snapshot()["requests"]
    whole = listing()
    pages = (client.stats.snapshot()["requests"] - before) // 2  # a paginated answer is listed twice
    assert pages >= 3 and whole.height > 0
    answer_normally = Fault("slow", delay_s=0)
    faulty.faults.add(
        ENDPOINTS["contracts"],
        Fault("skip_page"), *[answer_normally] * (pages - 2),  # listing 1: pages - 1 requests
        *[answer_normally] * pages,  # listing 2: whole
        Fault("skip_page"),  # listing 3: loses its 2nd page again
    )
    with pytest.raises(PolygonPayloadError, match=r"3 paginated listings disagreed .* refusing to write a partial"):
        listing()
    _assert_all_faults_served(faulty)
    client.close()


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
