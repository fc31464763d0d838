"""`spy-pipeline schema baseline`: re-capture the source-schema baselines from a live run, show the diff, write.

The capture reads what the pipeline reads, for one trading day: SPY and I:VIX minute bars, the SPY options
listing around the open and one contract's bars, SPY news, dividends and splits; from the embedded sandbox, or
Polygon with POLYGON_API_KEY. `--from-spec` rewrites them from Polygon's OpenAPI spec instead.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.openapi import baseline_from_spec
from spy_pipeline.domain.source_schema import Baseline, baseline_diff, recaptured
from spy_pipeline.polygon.session import open_polygon
from spy_pipeline.polygon.source_schema import SPEC_SOURCES, Capture
from spy_pipeline.settings import Settings

BASELINE_DIR = Path(__file__).resolve().parent.parent / "polygon" / "baselines"
NEWS_TICKER = "SPY"


@dataclass(frozen=True)
class Proposal:
    endpoint: str
    old: Baseline | None
    new: Baseline

    @property
    def diff(self) -> list[str]:
        return baseline_diff(self.old, self.new)


def read_baseline(folder: Path, endpoint: str) -> Baseline | None:
    path = folder / f"{endpoint}.json"
    return Baseline.from_json(json.loads(path.read_text())) if path.exists() else None


def capture_live(settings: Settings, day: dt.date) -> Capture:
    """What Polygon (or the sandbox) sends for `day` on every REST endpoint the pipeline reads."""
    with open_polygon(settings) as client, client.schemas.capture() as seen:
        bars = client.minute_bars("SPY", day, day)
        client.minute_bars("I:VIX", day, day)
        if bars.height:
            price = float(bars["c"][0])
            contracts = client.options_contracts("SPY", day, strike_gte=round(price * 0.99),
                                                 strike_lte=round(price * 1.01), expiration_gte=day,
                                                 expiration_lte=day + dt.timedelta(days=7))
            if contracts.height:
                client.minute_bars(contracts["ticker"][contracts.height // 2], day, day)
        end = cal.session_bounds(day).after_hours_close
        client.news(NEWS_TICKER, end - dt.timedelta(days=3), end)
        client.dividends("SPY")
        client.splits("SPY")
    return seen


def live_proposals(capture: Capture, folder: Path, source: str) -> list[Proposal]:
    return [Proposal(name, old := read_baseline(folder, name), recaptured(old, observed, source))
            for name, observed in sorted(capture.endpoints.items()) if observed.items]


def spec_proposals(spec_dir: Path, folder: Path) -> list[Proposal]:
    proposals = []
    for endpoint, (file, path, results_key) in SPEC_SOURCES.items():
        spec = json.loads((spec_dir / file).read_text())
        proposals.append(Proposal(endpoint, read_baseline(folder, endpoint),
                                  baseline_from_spec(spec, endpoint, path, file, results_key)))
    return proposals


def write(proposals: list[Proposal], folder: Path) -> list[Path]:
    """Write the changed baselines (atomically: a temp file renamed over the old one)."""
    written = []
    for proposal in proposals:
        if not proposal.diff:
            continue
        path = folder / f"{proposal.endpoint}.json"
        temp = path.with_suffix(".json.tmp")
        temp.write_text(proposal.new.dumps())
        temp.replace(path)
        written.append(path)
    return written
