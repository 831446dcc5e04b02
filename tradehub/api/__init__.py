"""The HTTP API (FastAPI): routes, tokens, problem responses, metrics."""
