"""The watchdog: serves the function HTTP protocol and runs any command once per invocation.

`nanofaas-watchdog --mode stdio|file -- COMMAND...` (see `cli`). STDIO: the request on
the command's stdin, its output JSON on stdout; FILE: $INPUT_FILE and $OUTPUT_FILE
(`oneshot`). Every command runs in its own session/process group, never through a
shell; a deadline kills the whole group. `ServerProcess` starts a function's own HTTP
server the same careful way (the runtime's tests use it).

Deliberately empty of imports, so `python -m nanofaas_runtime.watchdog` loads only what it runs.
"""
