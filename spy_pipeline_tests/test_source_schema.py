"""The observed source schema: comparison rules, baselines from Polygon's spec, and the sandbox against the spec.

The spec (spy_pipeline_tests/polygon_openapi/, Polygon's OpenAPI as the official client ships it) is the oracle
of both the baselines and the sandbox: every sandbox answer the pipeline reads validates against it (jsonschema,
an independent validator), and the committed baselines are what it documents.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import urllib3

from spy_pipeline.domain import trading_calendar as cal
from spy_pipeline.domain.openapi import baseline_from_spec, resolve, response_schema
from spy_pipeline.domain.source_schema import NEEDED, OPTIONAL, Baseline, BaselineField, ObservedSchema, compare
from spy_pipeline.polygon.client import PolygonClient
from spy_pipeline.polygon.source_schema import (
    SPEC_SOURCES,
    csv_header_items,
    endpoint_of,
    load_baseline,
)
from spy_pipeline.sandbox.server import SandboxServer
from spy_pipeline.sandbox.stream_series import build_series
from spy_pipeline_tests.conftest import SANDBOX_KEY

SPEC_DIR = Path(__file__).resolve().parent / "polygon_openapi"
DAY = dt.date(2025, 1, 3)


def spec(name: str) -> dict[str, Any]:
    return json.loads((SPEC_DIR / name).read_text())


# --- comparison rules ------------------------------------------------------------------------------

BARS = Baseline("aggs", "test", {name: BaselineField(("number",), True) for name in ("t", "o", "c", "vw")})
READS = {"t": NEEDED, "o": NEEDED, "c": NEEDED, "vw": NEEDED}


def observed(items: list[dict], endpoint: str = "aggs") -> ObservedSchema:
    schema = ObservedSchema(endpoint)
    schema.observe(items)
    return schema


def test_an_answer_like_the_baseline_has_no_drift() -> None:
    drift = compare(observed([{"t": 1, "o": 1.5, "c": 2, "vw": 1.7}] * 3), BARS, READS)
    assert drift.clean and drift.blocking == ()


def test_a_renamed_field_is_blocking_and_names_endpoint_field_and_the_likely_new_name() -> None:
    drift = compare(observed([{"t": 1, "o": 1.5, "c": 2, "vwap": 1.7}]), BARS, READS)
    assert drift.blocking == ("aggs: field vw is missing from 1 of 1 items (renamed? new: vwap)",)
    assert drift.new_fields == ("vwap",)


def test_a_read_field_missing_from_some_items_only_is_still_blocking() -> None:
    drift = compare(observed([{"t": 1, "o": 1, "c": 2, "vw": 1}, {"t": 2, "o": 1, "c": 2}]), BARS, READS)
    assert drift.blocking == ("aggs: field vw is missing from 1 of 2 items",)


def test_a_retyped_field_is_blocking_when_read_and_a_warning_when_not() -> None:
    baseline = Baseline("aggs", "test", {**BARS.fields, "otc": BaselineField(("boolean",), False)})
    drift = compare(observed([{"t": 1, "o": 1, "c": "2.5", "vw": 1, "otc": "no"}]), baseline, READS)
    assert drift.blocking == ("aggs: field c is string, documented as number",)
    assert drift.warnings == ("aggs: field otc is string, documented as boolean",)


def test_a_new_field_is_a_warning_listing_it() -> None:
    drift = compare(observed([{"t": 1, "o": 1, "c": 2, "vw": 1, "x": True, "y": None}]), BARS, READS)
    assert drift.blocking == () and drift.new_fields == ("x", "y")
    assert drift.warnings == ("aggs: new fields x, y",)


def test_nested_fields_are_needed_only_where_their_container_exists() -> None:
    baseline = load_baseline("news")
    reads = {"id": NEEDED, "insights": OPTIONAL, "insights[].sentiment": NEEDED}
    without_insights = [{"id": "a", "published_utc": "2025-01-03T10:00:00Z"}]
    assert compare(observed(without_insights, "news"), baseline, reads).blocking == ()
    renamed = [{"id": "a", "insights": [{"ticker": "SPY", "sentiment": "positive"}]},
               {"id": "b", "insights": [{"ticker": "SPY", "tone": "negative"}]}]
    drift = compare(observed(renamed, "news"), baseline, reads)
    assert drift.blocking == ("news: field insights[].sentiment is missing from 1 of 2 items "
                              "(renamed? new: insights[].tone)",)


def test_an_answer_without_items_never_drifts() -> None:
    assert compare(observed([]), BARS, READS).clean


def test_json_types_integers_and_floats_are_one_number_and_bool_is_not_a_number() -> None:
    schema = observed([{"v": 1}, {"v": 1.5}, {"v": True}])
    assert schema.types["v"] == {"number", "boolean"}


def test_a_csv_header_is_one_more_endpoint() -> None:
    [item] = csv_header_items(["ticker", "volume", "open"], ["SPY", "1200", "590.1"])
    schema = observed([item], "flatfile")
    assert schema.types == {"ticker": {"string"}, "volume": {"number"}, "open": {"number"}}


def test_rest_paths_map_to_their_endpoints() -> None:
    assert endpoint_of("/v2/aggs/ticker/SPY/range/1/minute/2025-01-03/2025-01-03") == "aggregates_stock"
    assert endpoint_of("/v2/aggs/ticker/I:VIX/range/1/minute/2025-01-03/2025-01-03") == "aggregates_index"
    assert endpoint_of("/v2/aggs/ticker/O:SPY250103C00590000/range/1/minute/a/b") == "aggregates_option"
    assert endpoint_of("/v2/reference/news") == "news" and endpoint_of("/v1/marketstatus/upcoming") is None


# --- the baselines are what the spec documents -------------------------------------------------------

@pytest.mark.parametrize("endpoint", sorted(SPEC_SOURCES))
def test_each_committed_baseline_is_the_specs_response_shape(endpoint: str) -> None:
    file, path, results_key = SPEC_SOURCES[endpoint]
    expected = baseline_from_spec(spec(file), endpoint, path, file, results_key)
    assert load_baseline(endpoint) == expected
    assert {"t", "o", "c"} <= set(expected.fields) if endpoint.startswith("aggregates") else True


def test_the_spec_derivation_reads_allof_required_nullable_and_nesting() -> None:
    aggs = load_baseline("aggregates_stock").fields
    assert aggs["vw"] == BaselineField(("number",), False) and aggs["t"] == BaselineField(("number",), True)
    assert "v" not in load_baseline("aggregates_index").fields  # an index has no volume
    news = load_baseline("news").fields
    assert news["publisher.name"].required and news["insights[].sentiment"].types == ("string",)
    assert load_baseline("websocket_stock_minute").fields["ev"].types == ("string",)


# --- the sandbox answers to the same spec ------------------------------------------------------------

def _json_schema(spec_doc: dict[str, Any], schema: Any) -> Any:
    """OpenAPI 3.0 to JSON Schema: $refs inlined, `nullable: true` as a "null" type (jsonschema knows no nullable)."""
    if isinstance(schema, list):
        return [_json_schema(spec_doc, part) for part in schema]
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        return _json_schema(spec_doc, resolve(spec_doc, schema))
    converted = {key: _json_schema(spec_doc, value) for key, value in schema.items()
                 if key not in ("nullable", "example", "x-massive-go-type")}
    if schema.get("nullable") and "type" in schema:
        converted["type"] = [schema["type"], "null"]
    return converted


def _validate(spec_name: str, path: str, answer: Any) -> None:
    doc = spec(spec_name)
    validator = jsonschema.Draft202012Validator(_json_schema(doc, response_schema(doc, path)))
    errors = sorted(validator.iter_errors(answer), key=lambda e: list(e.absolute_path))
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


@pytest.fixture(scope="module")
def server():
    with SandboxServer(api_key=SANDBOX_KEY) as sandbox:
        yield sandbox


def _get(server: SandboxServer, url: str) -> Any:
    with urllib3.PoolManager(retries=False) as http:
        response = http.request("GET", url if url.startswith("http") else server.url + url,
                                headers={"Authorization": f"Bearer {SANDBOX_KEY}"})
    assert response.status == 200, response.data[:200]
    return json.loads(response.data)


def _pages(server: SandboxServer, url: str, pages: int = 2) -> list[Any]:
    answers = [_get(server, url)]
    while len(answers) < pages and answers[-1].get("next_url"):
        answers.append(_get(server, answers[-1]["next_url"]))
    return answers


@pytest.mark.integration
def test_every_sandbox_rest_answer_the_pipeline_reads_validates_against_the_spec(server: SandboxServer) -> None:
    """The queries the pipeline's client sends, their next pages too (`limit` small so that there are pages)."""
    contracts = _pages(server, f"/v3/reference/options/contracts?underlying_ticker=SPY&as_of={DAY}"
                               "&strike_price.gte=585&strike_price.lte=600&limit=20&sort=ticker&order=asc")
    option = contracts[0]["results"][0]["ticker"]
    cases = {
        "aggregates_stock": f"/v2/aggs/ticker/SPY/range/1/minute/{DAY}/{DAY}?adjusted=true&sort=asc&limit=300",
        "aggregates_index": f"/v2/aggs/ticker/I:VIX/range/1/minute/{DAY}/{DAY}?adjusted=true&sort=asc&limit=300",
        "aggregates_option": f"/v2/aggs/ticker/{option}/range/1/minute/{DAY}/{DAY}?adjusted=true&sort=asc&limit=50",
        "news": "/v2/reference/news?ticker=SPY&published_utc.gte=2025-01-02T00:00:00Z"
                "&published_utc.lt=2025-01-04T00:00:00Z&limit=5&sort=published_utc&order=asc",
        "dividends": "/v3/reference/dividends?ticker=SPY&limit=3",
        "splits": "/v3/reference/splits?limit=1",
    }
    checked = {"options_contracts": len(contracts)}
    for answer in contracts:
        _validate("rest.json", SPEC_SOURCES["options_contracts"][1], answer)
    for endpoint, url in cases.items():
        answers = _pages(server, url)
        for answer in answers:
            assert answer.get("results"), f"{endpoint}: an answer without results proves nothing"
            _validate("rest.json", SPEC_SOURCES[endpoint][1], answer)
        checked[endpoint] = len(answers)
    assert all(pages == 2 for pages in checked.values()), checked  # first and next pages


def test_the_validation_catches_what_the_spec_forbids(server: SandboxServer) -> None:
    """The oracle bites: a dividend without its required id (the sandbox's old answer) fails."""
    answer = _get(server, "/v3/reference/dividends?ticker=SPY&limit=1")
    broken = copy.deepcopy(answer)
    del broken["results"][0]["id"]
    with pytest.raises(AssertionError, match="'id' is a required property"):
        _validate("rest.json", "/v3/reference/dividends", broken)


@pytest.mark.parametrize(("symbol", "path"), [("SPY", "/stocks/AM"), ("I:VIX", "/indices/AM"),
                                              ("O:SPY250103C00590000", "/options/AM")])
def test_the_sandboxs_minute_aggregate_events_validate_against_the_websocket_spec(symbol: str, path: str) -> None:
    bounds = cal.session_bounds(DAY)
    start = int(bounds.open.timestamp() * 1000) - 600_000
    series = build_series(symbol, DAY, start, start + 3_600_000)
    events = [json.loads(by_ev["AM"]) for by_ev in series.at.values() if "AM" in by_ev]
    assert len(events) > 10
    for event in events:
        _validate("websocket.json", path, event)


# --- capture through the pipeline's client -----------------------------------------------------------

@pytest.mark.integration
def test_the_client_captures_the_raw_fields_of_every_endpoint_and_the_sandbox_does_not_drift(
    server: SandboxServer,
) -> None:
    client = PolygonClient(SANDBOX_KEY, server.url, requests_per_minute=None)
    start = dt.datetime(2025, 1, 2, 21, tzinfo=dt.UTC)
    with client.schemas.capture() as seen:
        client.minute_bars("SPY", DAY, DAY)
        client.minute_bars("I:VIX", DAY, DAY)
        contracts = client.options_contracts("SPY", DAY, strike_gte=585, strike_lte=600)
        client.minute_bars(contracts["ticker"][0], DAY, DAY)
        client.news("SPY", start, start + dt.timedelta(days=1))
        client.dividends("SPY")
        client.splits("SBXA")
    client.close()
    assert sorted(seen.endpoints) == ["aggregates_index", "aggregates_option", "aggregates_stock", "dividends",
                                      "news", "options_contracts", "splits"]
    assert seen.endpoints["aggregates_stock"].types["vw"] == {"number"}
    assert seen.endpoints["news"].containers["insights[]."] > 0
    assert [d for d in seen.drifts() if not d.clean] == []


# --- spy-pipeline schema baseline ----------------------------------------------------------------------

def _baseline_copy(tmp_path: Path) -> Path:
    """The package's baselines in a tmp folder, with `vw` left out of the stock aggregates' one."""
    folder = tmp_path / "baselines"
    folder.mkdir()
    for endpoint in SPEC_SOURCES:
        (folder / f"{endpoint}.json").write_text(load_baseline(endpoint).dumps())
    stock = load_baseline("aggregates_stock")
    fields = {path: spec for path, spec in stock.fields.items() if path != "vw"}
    (folder / "aggregates_stock.json").write_text(Baseline(stock.endpoint, stock.source, fields).dumps())
    return folder


@pytest.mark.integration
def test_schema_baseline_recaptures_shows_the_diff_and_without_a_tty_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from spy_pipeline.app.cli import main

    folder = _baseline_copy(tmp_path)
    before = (folder / "aggregates_stock.json").read_text()
    monkeypatch.setattr("sys.stdin.isatty", lambda: False)
    assert main(["schema", "baseline", "--dir", str(folder), "--date", "2025-01-03"]) == 1
    out, err = capsys.readouterr()
    assert "aggregates_stock:\n  + vw: number (required)\n" in out and "--yes" in err
    assert out.count("  + ") == 1  # the sandbox otherwise answers as the spec documents
    assert (folder / "aggregates_stock.json").read_text() == before

    assert main(["schema", "baseline", "--dir", str(folder), "--date", "2025-01-03", "--yes"]) == 0
    written = json.loads((folder / "aggregates_stock.json").read_text())
    assert written["fields"]["vw"] == {"types": ["number"], "required": True}
    assert written["source"] == "live capture, 2025-01-03"
    assert main(["schema", "baseline", "--dir", str(folder), "--date", "2025-01-03"]) == 0


def test_schema_baseline_from_the_spec_restores_the_committed_baselines(tmp_path: Path) -> None:
    from spy_pipeline.app.cli import main

    folder = _baseline_copy(tmp_path)
    assert main(["schema", "baseline", "--dir", str(folder), "--from-spec", str(SPEC_DIR), "--yes"]) == 0
    assert (folder / "aggregates_stock.json").read_text() == load_baseline("aggregates_stock").dumps()
    committed = Path(__file__).resolve().parent.parent / "spy_pipeline" / "polygon" / "baselines"
    assert (folder / "aggregates_stock.json").read_text() == (committed / "aggregates_stock.json").read_text()


def test_a_recaptured_baseline_keeps_documented_fields_and_a_rename_stays_blocking() -> None:
    from spy_pipeline.domain.source_schema import recaptured

    renamed = observed([{"t": 1, "o": 1, "c": 2, "vwap": 1.5}])
    accepted = recaptured(BARS, renamed, "live")
    assert set(accepted.fields) == {"t", "o", "c", "vw", "vwap"}
    assert compare(renamed, accepted, READS).blocking == ("aggs: field vw is missing from 1 of 1 items",)


def test_a_missing_field_the_spec_requires_or_the_pipeline_reads_optionally_is_never_silent() -> None:
    baseline = load_baseline("news")
    reads = {"id": NEEDED, "title": OPTIONAL, "description": OPTIONAL}
    items = [{"id": "a", "title": "t", "description": "d", "image_url": "u"}, {"id": "b", "image_url": "u"}]
    drift = compare(observed(items, "news"), baseline, reads)
    assert drift.blocking == ("news: field title is missing from 1 of 2 items",)  # read, and the spec requires it
    assert "news: field description is missing from 1 of 2 items" in drift.warnings  # read: its nulls are told
    assert "news: field article_url is missing from 2 of 2 items" in drift.warnings  # required, not read
    assert not any("image_url" in line for line in drift.blocking + drift.warnings)  # optional, not read


def test_the_websocket_clients_frames_are_captured_before_its_models_see_them() -> None:
    from spy_pipeline.polygon.source_schema import ObservingJson, SchemaRecorder

    recorder = SchemaRecorder()
    decoder = ObservingJson(recorder, "stocks")
    frame = ('[{"ev":"AM","sym":"SPY","v":200,"av":8642007,"op":25.66,"vwap":25.39,"o":25.39,"c":25.39,'
             '"h":25.39,"l":25.39,"a":25.37,"z":50,"s":1610144868000,"e":1610144869000}]')
    with recorder.capture() as seen:
        decoder.loads('[{"ev":"status","status":"auth_success","message":"authenticated"}]')
        assert decoder.loads(frame)[0]["vwap"] == 25.39  # decoded as json would
    [drift] = seen.drifts()
    assert drift.endpoint == "websocket_stock_minute"
    assert drift.blocking == ("websocket_stock_minute: field vw is missing from 1 of 1 items (renamed? new: vwap)",)
    assert decoder.dumps({"action": "auth"}) == '{"action": "auth"}'
