"""Cross-cutting concerns kept out of the core: metrics and tracing, as listeners and dispatcher wrappers."""
