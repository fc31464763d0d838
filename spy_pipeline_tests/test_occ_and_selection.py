"""OCC tickers (round trips, rejections) and contract selection (band from a listing, targeted ladder)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from itertools import pairwise

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spy_pipeline.domain.occ import OccTickerError, OptionContract, build_ticker, parse_ticker
from spy_pipeline.domain.selection import (
    CONTRACT_COLUMNS,
    DEFAULT_MAX_CONTRACTS,
    SelectionConfig,
    SelectionError,
    band_query_bounds,
    contracts_frame,
    resolve_expiration,
    select_band,
    select_targeted,
    strike_ladder,
)
from spy_pipeline.domain.trading_calendar import TradingCalendarError

D = Decimal
MONDAY = dt.date(2025, 3, 3)  # a plain trading week: Mon 3 to Fri 7 March 2025

roots = st.from_regex(r"[A-Z]{1,6}", fullmatch=True)
expirations = st.dates(min_value=dt.date(2000, 1, 1), max_value=dt.date(2099, 12, 31))
kinds = st.sampled_from(["call", "put"])
strikes = st.integers(min_value=1, max_value=99_999_999).map(lambda thousandths: D(thousandths) / 1000)
contracts = st.builds(OptionContract, roots, expirations, kinds, strikes)


# ------------------------------------------------------------------------------------------------ OCC tickers


@given(contracts)
def test_parse_of_build_is_the_contract(contract: OptionContract) -> None:
    assert parse_ticker(build_ticker(*_fields(contract))) == contract


@given(roots, expirations, st.sampled_from("CP"), st.integers(min_value=1, max_value=99_999_999))
def test_build_of_parse_is_the_ticker(root: str, expiration: dt.date, kind: str, thousandths: int) -> None:
    ticker = f"O:{root}{expiration:%y%m%d}{kind}{thousandths:08d}"
    assert parse_ticker(ticker).ticker == ticker


@given(st.from_regex(r"O:[A-Z]{1,6}[0-9]{6}[CP][0-9]{8}", fullmatch=True))
def test_a_well_shaped_ticker_round_trips_unless_its_date_or_strike_is_impossible(ticker: str) -> None:
    try:
        contract = parse_ticker(ticker)
    except OccTickerError as exc:
        assert "impossible expiration" in str(exc) or ticker.endswith("00000000")
    else:
        assert contract.ticker == ticker


@given(st.text())
def test_any_text_is_either_a_ticker_or_an_occ_ticker_error(text: str) -> None:
    try:
        contract = parse_ticker(text)
    except OccTickerError:
        return
    assert contract.ticker == text


@pytest.mark.parametrize(
    ("strike", "digits"),
    [(0.5, "00000500"), (601, "00601000"), (601.5, "00601500"), (1234.125, "01234125"), ("0.001", "00000001"),
     ("99999.999", "99999999"), (D("601.000000000000000000000000000000"), "00601000")],
)  # fmt: skip
def test_strikes_in_thousandths_are_written_exactly(strike: object, digits: str) -> None:
    ticker = build_ticker("SPY", MONDAY, "call", strike)  # type: ignore[arg-type]
    assert ticker == f"O:SPY250303C{digits}"
    assert parse_ticker(ticker).strike == D(str(strike))


def test_the_polygon_example_ticker() -> None:
    assert parse_ticker("O:SPY250304C00601000") == OptionContract("SPY", dt.date(2025, 3, 4), "call", D(601))


def test_two_digit_years_are_read_in_this_century() -> None:
    assert parse_ticker("O:SPY700102P00100000").expiration == dt.date(2070, 1, 2)
    assert parse_ticker("O:SPY991231P00100000").expiration == dt.date(2099, 12, 31)
    assert parse_ticker("O:SPY000101P00100000").expiration == dt.date(2000, 1, 1)


@pytest.mark.parametrize(
    "ticker",
    [
        "X:SPY250304C00601000",  # wrong prefix
        "SPY250304C00601000",  # no prefix
        "o:SPY250304C00601000",  # lowercase prefix
        "O:spy250304C00601000",  # lowercase root
        "O:SPY250304c00601000",  # lowercase type
        "O:SPY250230C00601000",  # 30 February
        "O:SPY251301C00601000",  # month 13
        "O:SPY250304C00000000",  # zero strike
        "O:SPY250304X00601000",  # neither C nor P
        "O:SPY250304C00601000X",  # extra characters
        "O:SPY250304C006010000",  # nine strike digits
        "O:SPY250304C0060100",  # seven strike digits
        "O:SPY250304C00601000\n",  # trailing newline
        " O:SPY250304C00601000",  # leading space
        "O:SPYSPYX250304C00601000",  # seven-letter root
        "O:250304C00601000",  # no root
        "O:SPY250304C\u0660\u0660\u0666\u0660\u0661\u0660\u0660\u0660",  # Arabic-Indic 00601000: \\d, int() take them
        "O:SPY\uff12\uff150304C00601000",  # fullwidth digits
        "",
    ],
)
def test_bad_tickers_are_rejected(ticker: str) -> None:
    with pytest.raises(OccTickerError):
        parse_ticker(ticker)


@pytest.mark.parametrize(
    "strike", [0, -1, 100_000, "99999.9991", 601.0005, "1.0000000000000000000000000001", float("nan"), "sNaN",
               float("inf"), "1e-999999999", "six hundred"],
)  # fmt: skip
def test_strikes_occ_cannot_write_are_rejected(strike: object) -> None:
    with pytest.raises(OccTickerError):
        build_ticker("SPY", MONDAY, "call", strike)  # type: ignore[arg-type]


@given(st.decimals(min_value=D("0.0001"), max_value=D("99999.999"), places=6))
def test_a_strike_is_written_only_when_it_is_whole_thousandths(strike: Decimal) -> None:
    if strike == strike.quantize(D("0.001")):
        assert parse_ticker(build_ticker("SPY", MONDAY, "put", strike)).strike == strike
    else:
        with pytest.raises(OccTickerError):
            build_ticker("SPY", MONDAY, "put", strike)


@pytest.mark.parametrize(
    ("underlying", "expiration", "kind"),
    [("spy", MONDAY, "call"), ("SPYSPYX", MONDAY, "call"), ("SP1", MONDAY, "call"), ("", MONDAY, "call"),
     ("SPY", MONDAY, "CALL"), ("SPY", MONDAY, "C"), ("SPY", dt.date(1999, 12, 31), "put"),
     ("SPY", dt.date(2100, 1, 1), "put")],
)  # fmt: skip
def test_contracts_occ_cannot_write_are_rejected(underlying: str, expiration: dt.date, kind: str) -> None:
    with pytest.raises(OccTickerError):
        build_ticker(underlying, expiration, kind, 601)


# ---------------------------------------------------------------------------------------- targeted: strikes


def test_open_exactly_on_a_strike_starts_calls_one_up_and_puts_at_it() -> None:
    assert strike_ladder(601.00, 3, 1) == ([D(602), D(603), D(604)], [D(601), D(600), D(599)])


def test_open_just_above_a_strike() -> None:
    assert strike_ladder(601.01, 2, 1) == ([D(602), D(603)], [D(601), D(600)])


def test_open_just_below_a_strike() -> None:
    assert strike_ladder(600.99, 2, 1) == ([D(601), D(602)], [D(600), D(599)])


@pytest.mark.parametrize(
    ("open_price", "increment", "calls", "puts"),
    [
        (600.25, 0.5, ["600.5", "601"], ["600", "599.5"]),
        (600.5, 0.5, ["601", "601.5"], ["600.5", "600"]),
        (593.88, 0.5, ["594", "594.5"], ["593.5", "593"]),  # the predecessor's live check
        (600.25, 1, ["601", "602"], ["600", "599"]),
        (602.5, 5, ["605", "610"], ["600", "595"]),
        (605.0, 5, ["610", "615"], ["605", "600"]),
        (604.99, 5, ["605", "610"], ["600", "595"]),
        (600.30, 0.1, ["600.4", "600.5"], ["600.3", "600.2"]),  # 0.1 is no binary float: exact anyway
    ],
)
def test_ladders_on_half_one_and_five_dollar_grids(
    open_price: float, increment: float, calls: list[str], puts: list[str]
) -> None:
    assert strike_ladder(open_price, 2, increment) == ([D(c) for c in calls], [D(p) for p in puts])


@given(
    open_cents=st.integers(min_value=5000, max_value=2_000_000),
    increment=st.sampled_from([D("0.5"), D(1), D("2.5"), D(5)]),
    n=st.integers(min_value=1, max_value=6),
)
def test_ladder_invariants(open_cents: int, increment: Decimal, n: int) -> None:
    open_price = D(open_cents) / 100
    calls, puts = strike_ladder(open_price, n, increment)
    assert len(calls) == len(puts) == n
    assert all(strike > open_price for strike in calls)
    assert all(strike <= open_price for strike in puts)
    assert calls[0] - open_price <= increment and open_price - puts[0] < increment
    assert all(strike % increment == 0 for strike in calls + puts)
    assert all(b - a == increment for a, b in pairwise(calls))
    assert all(a - b == increment for a, b in pairwise(puts))


# --------------------------------------------------------------------------------------- targeted: expiries


@pytest.mark.parametrize(
    ("as_of", "expiry"),
    [
        ("2025-03-03", "2025-03-04"),  # Monday → Tuesday
        ("2025-03-07", "2025-03-10"),  # Friday → Monday, over the weekend
        ("2025-01-08", "2025-01-10"),  # over Thursday 2025-01-09, closed (national day of mourning)
        ("2025-04-17", "2025-04-21"),  # over Good Friday and the weekend
        ("2024-12-24", "2024-12-26"),  # over Christmas
    ],
)
def test_next_trading_day(as_of: str, expiry: str) -> None:
    assert resolve_expiration(as_of, "next_trading_day") == dt.date.fromisoformat(expiry)


@pytest.mark.parametrize(
    ("as_of", "expiry"),
    [
        ("2025-03-03", "2025-03-07"),  # Monday → that Friday
        ("2025-03-06", "2025-03-07"),  # Thursday → the next day
        ("2025-03-07", "2025-03-14"),  # a Friday as_of → next week's Friday (strictly after, as the predecessor)
        ("2025-04-14", "2025-04-17"),  # Good Friday 2025-04-18 closed → Thursday
        ("2025-04-11", "2025-04-17"),  # Friday before Good Friday week
        ("2025-04-17", "2025-04-17"),  # the Thursday itself: 0DTE
        ("2025-06-30", "2025-07-03"),  # Friday 2025-07-04 closed → Thursday (an early close)
    ],
)
def test_next_friday(as_of: str, expiry: str) -> None:
    assert resolve_expiration(as_of, "next_friday") == dt.date.fromisoformat(expiry)


def test_fixed_expiration_on_or_after_as_of() -> None:
    assert resolve_expiration(MONDAY, "fixed", dt.date(2025, 3, 21)) == dt.date(2025, 3, 21)
    assert resolve_expiration(MONDAY, "fixed", "2025-03-03") == MONDAY


def test_select_targeted_gives_n_calls_then_n_puts_as_occ_tickers() -> None:
    contracts = select_targeted("SPY", 600.25, MONDAY, 2)
    assert [c.ticker for c in contracts] == [
        "O:SPY250304C00601000",
        "O:SPY250304C00602000",
        "O:SPY250304P00600000",
        "O:SPY250304P00599000",
    ]
    assert select_targeted("SPY", 601.0, "2025-04-14", 1, 0.5, "next_friday")[0].ticker == "O:SPY250417C00601500"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be >= 1"),
        ({"n": 1.5}, "n must be an integer"),
        ({"strike_increment": 0}, "strike_increment must be > 0"),
        ({"strike_increment": -1}, "strike_increment must be > 0"),
        ({"strike_increment": 0.0005}, "whole number of thousandths"),
        ({"open_price": 0}, "open_price must be > 0"),
        ({"open_price": -600}, "open_price must be > 0"),
        ({"open_price": float("nan")}, "open_price must be finite"),
        ({"open_price": 2.5, "n": 3}, "would reach a strike of 0"),
        ({"expiry": "next_monday"}, "unknown expiry convention 'next_monday'"),
        ({"expiry": "fixed"}, "needs a fixed_expiration"),
        ({"expiry": "fixed", "fixed_expiration": dt.date(2025, 2, 28)}, "before as_of"),
        ({"fixed_expiration": dt.date(2025, 3, 7)}, "only used with expiry='fixed'"),
        ({"as_of": "2025-03-08"}, "not an NYSE trading day"),
        ({"as_of": "2025-3-3"}, "malformed date"),
        ({"underlying": "spy"}, "1-6 uppercase letters"),
    ],
)
def test_targeted_inputs_are_checked_with_one_line_errors(kwargs: dict, message: str) -> None:
    arguments = {"underlying": "SPY", "open_price": 600.25, "as_of": MONDAY, "n": 2} | kwargs
    with pytest.raises((SelectionError, OccTickerError, TradingCalendarError)) as info:
        select_targeted(**arguments)
    assert message in str(info.value) and "\n" not in str(info.value)


# --------------------------------------------------------------------------------------------------- band mode


def _listing(expiries: list[str], strike_values: list[float], kinds: tuple[str, ...] = ("call", "put")) -> pl.DataFrame:
    """A listing shaped like Polygon's JSON results: dates as text, strikes as numbers."""
    rows = [
        {
            "ticker": build_ticker("SPY", dt.date.fromisoformat(expiry), kind, strike),
            "contract_type": kind,
            "strike_price": float(strike),
            "expiration_date": expiry,
            "underlying_ticker": "SPY",
        }
        for expiry in expiries
        for strike in strike_values
        for kind in kinds
    ]
    return pl.DataFrame(rows)


WEEK = ["2025-03-03", "2025-03-04", "2025-03-05", "2025-03-06", "2025-03-07"]
STRIKES = [float(k) for k in range(585, 616)]


def _expiries(frame: pl.DataFrame) -> list[str]:
    return sorted(set(frame["expiration_date"].to_list()))


def test_0dte_and_the_next_two_expirations_by_default() -> None:
    selected = select_band(_listing(WEEK, STRIKES), 600.0, MONDAY, max_contracts=None)
    assert _expiries(selected) == ["2025-03-03", "2025-03-04", "2025-03-05"]
    assert selected.height == 3 * 13 * 2  # strikes 594..606, calls and puts


def test_without_a_listed_0dte_the_next_three_expirations() -> None:
    selected = select_band(_listing(WEEK[1:], STRIKES), 600.0, MONDAY, max_contracts=None)
    assert _expiries(selected) == ["2025-03-04", "2025-03-05", "2025-03-06"]


def test_0dte_excluded_on_request() -> None:
    selected = select_band(_listing(WEEK, STRIKES), 600.0, MONDAY, include_0dte=False, max_contracts=None)
    assert _expiries(selected) == ["2025-03-04", "2025-03-05", "2025-03-06"]


def test_expirations_before_as_of_are_ignored() -> None:
    selected = select_band(_listing(["2025-02-28", *WEEK], STRIKES), 600.0, MONDAY, expirations=1)
    assert _expiries(selected) == ["2025-03-03"]


def test_band_edges_are_inclusive_to_the_thousandth() -> None:
    listing = _listing(["2025-03-03"], [593.999, 594.0, 600.0, 606.0, 606.001], kinds=("call",))
    selected = select_band(listing, 600.0, MONDAY)  # ±1%: 594 to 606
    assert sorted(selected["strike_price"].to_list()) == [594.0, 600.0, 606.0]


def test_band_of_an_open_with_cents_rounds_its_edges_inwards() -> None:
    bounds = band_query_bounds(593.88, MONDAY)  # 587.9412 to 599.8188
    assert (bounds.strike_price_gte, bounds.strike_price_lte) == (587.942, 599.818)
    listing = _listing(["2025-03-03"], [587.941, 587.942, 599.818, 599.819], kinds=("put",))
    assert sorted(select_band(listing, 593.88, MONDAY)["strike_price"].to_list()) == [587.942, 599.818]


def test_cap_keeps_the_strikes_closest_to_the_open() -> None:
    listing = _listing(WEEK, STRIKES)
    kept = [sorted(set(select_band(listing, 600.2, MONDAY, max_contracts=cap)["strike_price"])) for cap in (6, 12, 18)]
    # 3 expiries x 2 types per strike: 600 (0.2 away), then 601 (0.8), then 599 (1.2)
    assert kept == [[600.0], [600.0, 601.0], [599.0, 600.0, 601.0]]


def test_ties_are_broken_by_expiry_then_lower_strike_then_call() -> None:
    selected = select_band(_listing(WEEK, STRIKES), 600.5, MONDAY, max_contracts=6)
    assert selected["ticker"].to_list() == [
        "O:SPY250303C00600000",
        "O:SPY250303P00600000",
        "O:SPY250303C00601000",
        "O:SPY250303P00601000",
        "O:SPY250304C00600000",
        "O:SPY250304P00600000",
    ]


def test_selection_does_not_depend_on_listing_order() -> None:
    listing = _listing(WEEK, STRIKES)
    shuffled = listing.sample(fraction=1.0, shuffle=True, seed=7)
    assert select_band(shuffled, 600.5, MONDAY, max_contracts=25).equals(
        select_band(listing, 600.5, MONDAY, max_contracts=25)
    )


def test_empty_listing_gives_an_empty_selection() -> None:
    assert select_band(pl.DataFrame(), 600.0, MONDAY).height == 0
    empty = contracts_frame([])
    assert select_band(empty, 600.0, MONDAY).schema == empty.schema


def test_duplicates_and_other_contract_types_are_dropped() -> None:
    listing = _listing(["2025-03-03"], [600.0], kinds=("call",))
    odd = listing.with_columns(ticker=pl.lit("O:SPY250303X00600000"), contract_type=pl.lit("other"))
    selected = select_band(pl.concat([listing, listing, odd]), 600.0, MONDAY)
    assert selected["ticker"].to_list() == ["O:SPY250303C00600000"]


def test_result_keeps_the_listing_columns_and_types() -> None:
    listing = _listing(WEEK, STRIKES).with_columns(extra=pl.lit(1))
    assert select_band(listing, 600.0, MONDAY).schema == listing.schema
    dated = contracts_frame(select_targeted("SPY", 600.0, MONDAY, 2))
    assert select_band(dated, 600.0, MONDAY).schema == pl.Schema(CONTRACT_COLUMNS)


def test_missing_listing_columns_are_an_error() -> None:
    with pytest.raises(SelectionError, match="lacks columns"):
        select_band(_listing(WEEK, STRIKES).drop("strike_price"), 600.0, MONDAY)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"band_pct": 0}, "band_pct must be > 0"), ({"band_pct": 100}, "below 100"), ({"expirations": 0}, ">= 1"),
     ({"max_contracts": 0}, ">= 1"), ({"open_price": -1}, "open_price must be > 0")],
)  # fmt: skip
def test_band_inputs_are_checked(kwargs: dict, message: str) -> None:
    arguments = {"contracts": _listing(WEEK, STRIKES), "open_price": 600.0, "as_of": MONDAY} | kwargs
    with pytest.raises(SelectionError, match=message):
        select_band(**arguments)


@settings(max_examples=60, deadline=None)
@given(
    open_cents=st.integers(min_value=58_000, max_value=62_000),
    band_pct=st.sampled_from([0.5, 1.0, 2.0]),
    n_expirations=st.integers(min_value=1, max_value=4),
    include_0dte=st.booleans(),
    cap=st.integers(min_value=1, max_value=150),
    listed=st.sets(st.sampled_from(WEEK), min_size=1),
)
def test_band_selection_properties(
    open_cents: int, band_pct: float, n_expirations: int, include_0dte: bool, cap: int, listed: set[str]
) -> None:
    open_price = open_cents / 100
    listing = _listing(sorted(listed), [k / 2 for k in range(1140, 1260)])  # 570 to 629.5 by 0.5
    selected = select_band(listing, open_price, MONDAY, band_pct, n_expirations, include_0dte, cap)
    low, high = open_price * (1 - band_pct / 100), open_price * (1 + band_pct / 100)
    eligible_days = sorted(d for d in listed if d > "2025-03-03" or (include_0dte and d == "2025-03-03"))
    eligible = listing.filter(
        pl.col("strike_price").is_between(low - 1e-9, high + 1e-9),
        pl.col("expiration_date").is_in(eligible_days[:n_expirations]),
    )
    assert selected.height == min(cap, eligible.height)
    assert set(selected["ticker"]) <= set(eligible["ticker"])
    if selected.height:
        farthest_kept = max(abs(s - open_price) for s in selected["strike_price"])
        left_out = eligible.filter(~pl.col("ticker").is_in(selected["ticker"].implode()))
        assert all(abs(s - open_price) >= farthest_kept - 1e-9 for s in left_out["strike_price"])


def test_query_bounds_cover_the_band_and_a_lookahead() -> None:
    bounds = band_query_bounds(600.0, MONDAY)
    assert bounds.params() == {
        "strike_price_gte": 594.0,
        "strike_price_lte": 606.0,
        "expiration_date_gte": "2025-03-03",
        "expiration_date_lte": "2025-03-17",
    }
    later = band_query_bounds(600.0, MONDAY, band_pct=2.0, include_0dte=False, lookahead_days=7)
    assert (later.strike_price_gte, later.strike_price_lte) == (588.0, 612.0)
    assert (later.expiration_date_gte, later.expiration_date_lte) == (dt.date(2025, 3, 4), dt.date(2025, 3, 10))


# ------------------------------------------------------------------------------------------------------ config


def test_config_defaults_are_the_issue_defaults() -> None:
    config = SelectionConfig()
    assert (config.mode, config.band_pct, config.expirations, config.include_0dte) == ("band", 1.0, 3, True)
    assert config.max_contracts == DEFAULT_MAX_CONTRACTS
    assert (config.n, config.strike_increment, config.expiry) == (2, 1.0, "next_trading_day")


def test_config_selects_in_either_mode_as_a_listing_frame() -> None:
    band = SelectionConfig(max_contracts=4).select(600.0, MONDAY, _listing(WEEK, STRIKES))
    assert band["strike_price"].to_list() == [600.0] * 4
    targeted = SelectionConfig(mode="targeted", n=1, expiry="next_friday").select(600.0, MONDAY)
    assert targeted["ticker"].to_list() == ["O:SPY250307C00601000", "O:SPY250307P00600000"]
    assert targeted.schema == pl.Schema(CONTRACT_COLUMNS)


@pytest.mark.parametrize(
    "kwargs",
    [{"mode": "wide"}, {"band_pct": -1}, {"expirations": 0}, {"max_contracts": 0}, {"lookahead_days": 0},
     {"n": 0}, {"strike_increment": 0}, {"expiry": "weekly"}, {"expiry": "fixed"},
     {"fixed_expiration": dt.date(2025, 3, 7)}, {"underlying": "S&P"}],
)  # fmt: skip
def test_config_rejects_bad_values_when_built(kwargs: dict) -> None:
    with pytest.raises(ValueError):  # SelectionError, or OccTickerError for the underlying
        SelectionConfig(**kwargs)


def test_band_mode_needs_a_listing() -> None:
    with pytest.raises(SelectionError, match="listing"):
        SelectionConfig().select(600.0, MONDAY)


def _fields(contract: OptionContract) -> tuple[str, dt.date, str, Decimal]:
    return contract.underlying, contract.expiration, contract.contract_type, contract.strike
