"""A no-op STDIO function: read the request from stdin, print JSON null."""

import sys

sys.stdin.buffer.read()
sys.stdout.write("null")
