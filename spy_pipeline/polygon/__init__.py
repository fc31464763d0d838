"""The platform's only door to Polygon: the official client behind rate limiting, retries and checks."""
