"""The scheduler core: executions, per-function lanes and the scheduling loop."""
