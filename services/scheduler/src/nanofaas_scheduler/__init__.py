"""The nanofaas scheduler: owns queues, execution state and dispatching."""
