"""The `nanofaas` command line (click), built on the REST client."""
