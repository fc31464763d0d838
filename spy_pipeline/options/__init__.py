"""Options domain logic: OCC tickers and contract selection (no Dagster, no I/O)."""
