"""A Polygon-compatible sandbox: a deterministic synthetic market served over real HTTP on loopback."""
