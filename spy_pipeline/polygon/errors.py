"""Errors from talking to Polygon, with messages a user can act on (and never the API key)."""


class PolygonError(RuntimeError):
    """Base class: something went wrong talking to Polygon (or the sandbox)."""


class PolygonAuthError(PolygonError):
    """401/403: the key is wrong or lacks the plan for this data. Retrying will not help."""


class PolygonEntitlementError(PolygonAuthError):
    """403: the key is valid but the plan does not include this data (Polygon sells stocks, options, indices
    and news separately; options history starts at a plan-dependent date)."""

    def __init__(self, source: str, endpoint: str, detail: str) -> None:
        super().__init__(f"Polygon refused {source} data ({endpoint}, HTTP 403): your plan may not include it"
                         + (f" ({detail})" if detail else ""))
        self.source, self.endpoint = source, endpoint


class PolygonRequestError(PolygonError):
    """A 4xx other than auth or rate limiting: the request itself is wrong."""


class PolygonUnavailableError(PolygonError):
    """Retries ran out on 429/5xx answers, timeouts or dropped connections."""


class PolygonPayloadError(PolygonError):
    """A 200 answer whose body is not the JSON Polygon documents (the client would hide this)."""


class EmptyDataError(PolygonError):
    """Polygon returned no data where the market certainly traded: refuse to write an empty partition."""
