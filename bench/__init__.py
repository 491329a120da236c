"""The nanofaas benchmark suite: `make bench` or `python -m bench --help`."""
