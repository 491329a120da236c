"""No-op handlers and trivial servers the benchmark loads in child processes (via PYTHONPATH)."""
