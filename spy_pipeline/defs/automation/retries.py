"""Step retries for the assets that call Polygon.

The Polygon client already retries each request (429/5xx, timeouts, dropped connections: up to 6 retries,
exponential backoff capped at 30 s, Retry-After honoured). This policy is the second layer, for outages
longer than that: the whole step (its whole partition range) is run again 30 s, 90 s and 210 s later
(Dagster's EXPONENTIAL backoff is delay * (2**n - 1)), each +/- 30 s of jitter so that parallel steps do not
retry in lockstep; about 5.5 minutes in all before the step fails for good. Re-running a raw step is
idempotent: it rewrites the same day files.

A RetryPolicy retries every exception. Errors that retrying cannot fix (PolygonAuthError, PolygonRequestError,
EmptyDataError, a bad config) are best raised as `dagster.Failure(..., allow_retries=False)` by the asset.
"""

from dagster import Backoff, Jitter, RetryPolicy

POLYGON_RETRY_POLICY = RetryPolicy(max_retries=3, delay=30, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS)
