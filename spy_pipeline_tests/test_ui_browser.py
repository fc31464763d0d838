"""The Dagster UI end to end, in a real headless browser, as a person would use it.

One module-scoped `dagster dev` (webserver, daemon, code server) on 127.0.0.1 and a free port, over a fresh
DAGSTER_HOME and data dir that `spy-pipeline run` filled with two trading days from the embedded sandbox; one
headless Chromium (Debian's /usr/bin/chromium, driven by Playwright's Python driver: no browser download, no
network). Each test opens its own page and saves a screenshot under test-output/ui/ (NAME.png, or
NAME-FAILED.png with the failure).

Run alone with `pytest -m ui`. Without /usr/bin/chromium the tests fail: `make browser-binaries`.
"""

from __future__ import annotations

import re
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import BrowserContext, Page, expect, sync_playwright

from spy_pipeline_tests.ui_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MISSING_CHROMIUM,
    REPO_ROOT,
    DagsterDev,
    dagster_dev,
    prepare_instance,
    runs,
    wait_for_run,
)

pytestmark = [pytest.mark.ui, pytest.mark.integration]

END, DAYS = "2025-01-08", 2  # raw_spy_bars: 07, 08 (2025-01-06, the warm-up, is read, not landed)
MISSING_DAY = "2025-01-03"  # a trading day the run did not fetch: materialized from the UI in test (c)
SCREENSHOTS = REPO_ROOT / "test-output" / "ui"
TIMEOUT_MS = 45_000  # per wait in the browser: two noisy cores
RUN_TIMEOUT_S = 420.0  # queue, run worker, a process per step (asset + six checks): ~40 s quiet, minutes loaded


@dataclass
class UI:
    server: DagsterDev
    browser: BrowserContext
    data_dir: Path

    @contextmanager
    def page(self, name: str, path: str) -> Iterator[Page]:
        """A fresh tab on `path`; its screenshot at the end as test-output/ui/NAME.png, or NAME-FAILED.png (named
        in the failure) when the block raises."""
        page = self.browser.new_page()
        try:
            page.goto(self.server.url + path)
            yield page
        except BaseException as exc:
            shot = SCREENSHOTS / f"{name}-FAILED.png"
            try:
                page.screenshot(path=shot, full_page=True)
                exc.add_note(f"screenshot of {page.url}: {shot}")
            except Exception as shot_error:  # the page may be gone with the server
                exc.add_note(f"no screenshot ({shot_error.__class__.__name__})")
            exc.add_note(f"dagster dev output (tail):\n{self.server.output(2000)}")
            raise
        else:
            page.screenshot(path=SCREENSHOTS / f"{name}.png", full_page=True)
        finally:
            page.close()


@pytest.fixture(scope="module")
def ui(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UI]:
    if not CHROMIUM.exists():
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for old in SCREENSHOTS.glob("*.png"):
        old.unlink()
    root = tmp_path_factory.mktemp("ui")
    home, data_dir = root / "dagster_home", root / "data"
    prepare_instance(home, data_dir, end=END, days=DAYS)
    with dagster_dev(home, data_dir, root / "dagster_dev.log") as server, sync_playwright() as playwright:
        # The "Join the Dagster community" dialog that a local UI shows once per instance would cover the pages:
        # dismissed the way its Skip button does.
        assert server.graphql("mutation { setNuxSeen }")["setNuxSeen"] is True
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000)
        try:
            # a fresh context: a new, empty profile (Playwright starts the browser on a temporary user data dir)
            context = browser.new_context(viewport={"width": 1600, "height": 1100})
            context.set_default_timeout(TIMEOUT_MS)
            expect.set_options(timeout=TIMEOUT_MS)
            yield UI(server, context, data_dir)
        finally:
            browser.close()


def spy_files(data_dir: Path) -> list[str]:
    return sorted(path.stem for path in (data_dir / "raw" / "spy").glob("*.parquet"))


def test_a_asset_lineage_shows_raw_to_consolidated_to_training(ui: UI) -> None:
    # Lineage → filter to what training_dataset is built from (two levels up), the way the filter box
    # writes it into the address; groups start collapsed: "Expand all groups" (⌥E).
    selection = urllib.parse.quote('2+key:"training_dataset"', safe="")
    with ui.page("a_asset_lineage", f"/asset-groups~{selection}/") as page:
        expect(page.get_by_text("Global asset lineage"), "not the global asset lineage page").to_be_visible()
        graph = page.locator("foreignObject")
        expect(graph.get_by_text("raw", exact=True).first, "no 'raw' group node in the graph").to_be_visible()
        if graph.get_by_text("training_dataset", exact=True).count() == 0:  # collapsed, as on a first visit
            page.keyboard.press("Alt+e")
        for name in ("raw_spy_bars", "consolidated", "training_dataset"):
            expect(graph.get_by_text(name, exact=True), f"the lineage graph shows no {name!r} node").to_be_visible()
        # the filter really is the lineage: downstream-only assets are not drawn
        for name in ("features", "daily_charts"):
            expect(graph.get_by_text(name, exact=True), f"{name!r} is not upstream of training_dataset") \
                .to_have_count(0)


def test_b_partitions_page_counts_materialized_and_missing(ui: UI) -> None:
    from spy_pipeline.defs.raw.assets import raw_spy_bars

    on_disk = spy_files(ui.data_dir)
    assert {"2025-01-07", END} <= set(on_disk) and "2025-01-06" not in on_disk, on_disk
    with ui.page("b_partitions", "/assets/raw_spy_bars?view=partitions") as page:
        counts = page.get_by_text(re.compile(r"^[\d,]+ Partitions Selected$"))
        expect(counts, "no 'N Partitions Selected' on the partitions page").to_be_visible()
        total = int(counts.inner_text().split()[0].replace(",", ""))
        materialized = len(on_disk)
        expect(page.get_by_text(f"Materialized ({materialized})", exact=True),
               f"the partitions page does not count the {materialized} partitions on disk").to_be_visible()
        expect(page.get_by_text(f"Missing ({total - materialized})", exact=True),
               f"the partitions page does not count {total - materialized} missing of {total}").to_be_visible()
        expect(page.get_by_text("Failed (0)", exact=True).first).to_be_visible()
    expected_total = len(raw_spy_bars.partitions_def.get_partition_keys())
    assert abs(total - expected_total) <= 1, f"the UI shows {total} partitions, the definitions have {expected_total}"


def test_c_materialize_one_missing_partition_from_the_ui(ui: UI) -> None:
    target = ui.data_dir / "raw" / "spy" / f"{MISSING_DAY}.parquet"
    assert not target.exists(), f"{target} exists before the UI materialized it"
    before = len(spy_files(ui.data_dir))
    with ui.page("c_materialize_from_ui", "/assets/raw_spy_bars") as page:
        page.get_by_role("button", name=re.compile(r"Materialize…$")).click()
        dialog = page.get_by_role("dialog").filter(has_text="Launch runs to materialize raw_spy_bars")
        expect(dialog, "clicking Materialize… opened no launch dialog").to_be_visible()
        # At first only the last 90 days are offered ("Show all partitions"); then the input's example shows
        # the whole range.
        show_all = dialog.get_by_text("Show all partitions", exact=True)
        partitions = dialog.get_by_placeholder(re.compile(r"^ex: "))
        expect(show_all.or_(partitions).first, "no partition selection in the launch dialog").to_be_visible()
        if show_all.is_visible():
            show_all.click()
        partitions.fill(MISSING_DAY)
        partitions.press("Enter")
        expect(dialog.get_by_text("1 partition", exact=True), f"{MISSING_DAY} was not selected").to_be_visible()
        launch = dialog.get_by_role("button", name="Launch 1 run", exact=True)
        expect(launch, "one partition selected, but no 'Launch 1 run' button").to_be_enabled()
        page.screenshot(path=SCREENSHOTS / "c_launch_dialog.png")
        launch.click()
        toast = page.get_by_text(re.compile(r"^Launched run [0-9a-f]{8}$"))
        expect(toast, "no 'Launched run …' confirmation after Launch").to_be_visible()
        short_id = toast.inner_text().split()[-1]
        view = page.get_by_role("link", name="View", exact=True)  # the toast's link to the run
        expect(view).to_have_attribute("href", re.compile(rf"/runs/{short_id}[0-9a-f-]+$"))
        run_id = (view.get_attribute("href") or "").rsplit("/", 1)[-1]
        view.click()
        expect(page, "View did not open the run's page").to_have_url(re.compile(rf"/runs/{run_id}$"))
        status = wait_for_run(ui.server, run_id, RUN_TIMEOUT_S)
        assert status == "SUCCESS", f"run {short_id} of {MISSING_DAY} ended {status}"
        expect(page.get_by_text("Success", exact=True).first, "the run page does not say Success").to_be_visible()
        expect(page.get_by_text(f"partition: {MISSING_DAY}", exact=True)).to_be_visible()

    tags = {tag["key"]: tag["value"] for tag in runs(ui.server, [run_id])[0]["tags"]}
    assert tags.get("dagster/partition") == MISSING_DAY, tags
    assert target.exists(), f"the run succeeded but {target} was not written"

    with ui.page("c_partitions_after", "/assets/raw_spy_bars?view=partitions") as page:
        expect(page.get_by_text(f"Materialized ({before + 1})", exact=True),
               "the partitions page does not count the partition materialized from the UI").to_be_visible()


def test_d_asset_check_result_on_the_checks_tab(ui: UI) -> None:
    check = "spy_regular_session_coverage"
    with ui.page("d_asset_checks", "/assets/raw_spy_bars?view=checks") as page:
        heading = page.get_by_text(re.compile(r"^Checks \(\d+\)$"))
        expect(heading, "no checks list on the Checks tab").to_be_visible()
        checks = int(re.findall(r"\d+", heading.inner_text())[0])
        assert checks >= 4, f"raw_spy_bars has schema, rules, coverage and drift checks; the tab lists {checks}"
        expect(page.get_by_text("Succeeded", exact=True), "not every check's latest run succeeded") \
            .to_have_count(checks)
        page.get_by_text(check, exact=True).first.click()
        expect(page).to_have_url(re.compile(rf"checkDetail={check}"))
        result = page.get_by_text("Evaluation result", exact=True)
        expect(result, f"no evaluation result for {check}").to_be_visible()
        expect(page.get_by_text("Passed", exact=True).first, f"{check} is not shown as Passed").to_be_visible()
        expect(page.get_by_text("lowest_coverage", exact=True).first, "the check's metadata is missing").to_be_visible()


def test_e_sensors_and_schedules_on_the_automation_page(ui: UI) -> None:
    from spy_pipeline.definitions import defs

    sensors = sorted(sensor.name for sensor in defs.sensors or [])
    schedules = sorted(schedule.name for schedule in defs.schedules or [])
    assert {"automation_condition_sensor", "run_failure_logger"} <= set(sensors), sensors
    assert "stream_compaction_schedule" in schedules, schedules
    with ui.page("e_automation", "/automation") as page:
        for kind, name in [("sensors", n) for n in sensors] + [("schedules", n) for n in schedules]:
            link = page.get_by_role("link").filter(has_text=re.compile(rf"^{re.escape(name)}")).first
            expect(link, f"the Automation page does not list {name}").to_be_visible()
            expect(link).to_have_attribute("href", re.compile(rf"/{kind}/{name}$"))
        # the instance's state as set by the fixture: the failure logger on, the run-starting ones stopped
        row = page.locator("[data-index]")
        switch = {name: row.filter(has=page.get_by_role("link").filter(has_text=re.compile(rf"^{re.escape(name)}")))
                  .get_by_role("checkbox").last for name in ("run_failure_logger", "automation_condition_sensor")}
        expect(switch["run_failure_logger"], "run_failure_logger is not shown running").to_be_checked()
        expect(switch["automation_condition_sensor"], "automation_condition_sensor is not shown stopped") \
            .not_to_be_checked()
