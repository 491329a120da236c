"""nanofaas Python function runtime and watchdog.

Deliberately empty of imports: `python -m nanofaas_runtime` pays only for the
modules of the mode it runs (cold start is what users feel).
"""
