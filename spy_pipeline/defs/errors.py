"""Which failures a Dagster retry could fix, and which it could not."""

import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from dagster import Failure

from spy_pipeline.domain.trading_calendar import TradingCalendarError
from spy_pipeline.io.flatfiles import FlatFileFormatError
from spy_pipeline.io.storage import StorageError
from spy_pipeline.polygon.errors import (
    EmptyDataError,
    PolygonAuthError,
    PolygonEntitlementError,
    PolygonRequestError,
)
from spy_pipeline.polygon.flatfiles import FlatFileNotPublishedError
from spy_pipeline.settings import ConfigError

# A wrong key, a bad request, an empty trading day, bad config or a bad file stay wrong on a retry, and a
# flat file not published yet or broken stays so for hours; an unavailable API (after the client's own
# retries) or an interrupted download may not.
NOT_RETRYABLE = (
    PolygonAuthError, PolygonRequestError, EmptyDataError, ConfigError, StorageError,
    TradingCalendarError, ValueError, FlatFileNotPublishedError, FlatFileFormatError,
)


@contextmanager
def fail_without_retry_on_permanent_errors() -> Iterator[None]:
    try:
        yield
    except PolygonEntitlementError as exc:
        # the one line says it all (data set, endpoint, plan): no client traceback under it
        raise Failure(description=str(exc), allow_retries=False) from None
    except NOT_RETRYABLE as exc:
        raise Failure(description=f"{type(exc).__name__}: {exc}", allow_retries=False) from exc


def no_retry_on_permanent_errors[**P, R](fn: Callable[P, R]) -> Callable[P, R]:
    """Decorator form, placed under @asset: the asset's signature is kept (functools.wraps)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with fail_without_retry_on_permanent_errors():
            return fn(*args, **kwargs)

    return wrapper
