"""The entry points: CLI, HTTP API, web pages, workers, and the bootstrap that wires every process."""
