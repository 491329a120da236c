"""`python -m nanofaas_runtime.watchdog`: the same as the `nanofaas-watchdog` console script."""

from nanofaas_runtime.watchdog.cli import main

if __name__ == "__main__":
    main()
