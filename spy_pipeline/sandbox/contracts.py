"""GET /v3/reference/options/contracts of the sandbox: the listed contracts of spy_pipeline.sandbox.options."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np

from spy_pipeline.sandbox import options
from spy_pipeline.sandbox.http_api import ApiError, Request
from spy_pipeline.sandbox.queries import (
    choice,
    next_url,
    page_limit,
    page_offset,
    parse_bool,
    parse_date,
    parse_number,
    query_bounds,
    query_of,
)

CONTRACT_SORTS = ("ticker", "expiration_date", "strike_price")


def _json_number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else float(value)


def options_contracts(request: Request, _match: re.Match[str]) -> dict[str, Any]:
    """GET /v3/reference/options/contracts: the contracts listed on `as_of` (default today)."""
    query = query_of(request)
    query.setdefault("as_of", request.today.isoformat())
    as_of = parse_date(query["as_of"], "as_of")
    expired = parse_bool(query.get("expired", "false"), "expired")
    contract_type = query.get("contract_type")
    if contract_type not in (None, "call", "put"):
        raise ApiError(400, "contract_type must be 'call' or 'put'")
    sort = choice(query, "sort", CONTRACT_SORTS, "ticker")
    order = choice(query, "order", ("asc", "desc"), "asc")
    limit, offset = page_limit(query), page_offset(query)
    expiration_bounds = query_bounds(query, "expiration_date", parse_date)
    strike_bounds = query_bounds(query, "strike_price", parse_number)
    underlyings = [u for u in options.UNDERLYINGS if query.get("underlying_ticker", u) == u]

    # One row per contract: (underlying, expiration, type, strike) as arrays, in ticker order.
    columns: list[tuple[np.ndarray, ...]] = []
    types = [t for t in ("call", "put") if contract_type in (None, t)]
    for u, underlying in enumerate(underlyings):
        for expiration in options.listed_expirations(as_of, underlying, expired):
            if not all(compare(expiration.date, value) for compare, value in expiration_bounds):
                continue
            grid = options.strikes(expiration, as_of, underlying)
            keep = np.ones(grid.size, dtype=bool)
            for compare, value in strike_bounds:
                keep &= compare(grid, value)
            grid = grid[keep]
            for kind in types:
                n = grid.size
                columns.append(
                    (
                        np.full(n, u),
                        np.full(n, expiration.date.toordinal()),
                        np.full(n, kind == "put"),
                        grid,
                    )
                )
    if columns:
        und, exp, put, strike = (np.concatenate(parts) for parts in zip(*columns, strict=True))
    else:
        und, exp, put, strike = (np.empty(0), np.empty(0), np.empty(0, dtype=bool), np.empty(0))
    keys = {  # np.lexsort sorts by its last key first
        "ticker": (strike, put, exp, und),
        "expiration_date": (strike, put, und, exp),
        "strike_price": (put, exp, und, strike),
    }[sort]
    ordered = np.lexsort(keys)
    if order == "desc":
        ordered = ordered[::-1]
    page = ordered[offset : offset + limit]
    results = []
    for i in page:
        underlying = underlyings[int(und[i])]
        kind = "put" if put[i] else "call"
        expiration = dt.date.fromordinal(int(exp[i]))
        results.append(
            {
                "cfi": options.CFI[kind],
                "contract_type": kind,
                "exercise_style": "american",
                "expiration_date": expiration.isoformat(),
                "primary_exchange": options.PRIMARY_EXCHANGE,
                "shares_per_contract": options.SHARES_PER_CONTRACT,
                "strike_price": _json_number(strike[i]),
                "ticker": options.ticker_for(underlying, expiration, kind, float(strike[i])),
                "underlying_ticker": underlying,
            }
        )
    body: dict[str, Any] = {"results": results, "status": "OK", "request_id": request.request_id}
    if offset + limit < ordered.size:
        body["next_url"] = next_url(request, {**query, "_offset": str(offset + limit)})
    return body
