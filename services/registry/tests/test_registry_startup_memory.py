"""release_startup_memory: which mappings it may drop, and that a process keeps working after it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from nanofaas_registry.startup_memory import clean_file_ranges

# One header per kind of mapping, each followed by the fields release_startup_memory reads.
SMAPS = """\
7f0000000000-7f0000001000 r--p 00000000 08:01 11 /usr/lib/libtext.so
Rss:                   4 kB
Anonymous:             0 kB
7f0000001000-7f0000003000 r-xp 00001000 08:01 11 /usr/lib/libtext.so
Rss:                   8 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
7f0000003000-7f0000004000 r--p 00003000 08:01 11 /usr/lib/libtext.so
Rss:                   4 kB
Anonymous:             4 kB
7f0000004000-7f0000005000 rw-p 00004000 08:01 11 /usr/lib/libtext.so
Rss:                   4 kB
Anonymous:             0 kB
7f0000005000-7f0000006000 ---p 00005000 08:01 11 /usr/lib/libtext.so
Rss:                   0 kB
Anonymous:             0 kB
7f0000006000-7f0000007000 r--s 00000000 08:01 12 /var/lib/store.db
Rss:                   4 kB
Anonymous:             0 kB
7f0000007000-7f0000008000 r-xp 00000000 08:01 13 /usr/lib/libgone.so (deleted)
Rss:                   4 kB
Anonymous:             0 kB
7f0000008000-7f0000009000 r--p 00000000 00:00 0 [vvar]
Rss:                   4 kB
Anonymous:             0 kB
7f0000009000-7f000000a000 rw-p 00000000 00:00 0
Rss:                   4 kB
Anonymous:             4 kB
7f000000a000-7f000000b000 r-xp 00000000 08:01 14 /usr/lib/libclean.so
Rss:                   4 kB
Anonymous:             0 kB
7f000000b000-7f000000c000 r-xp 00000000 08:01 15 /usr/lib/libcut.so
Rss:                   4 kB
"""


def test_only_clean_private_read_only_file_mappings_are_chosen() -> None:
    # Not the relocated (copied-on-write) read-only part, data, guard pages, shared
    # or deleted files, kernel pages, anonymous memory, nor a mapping whose
    # Anonymous line was never read (smaps cut short).
    assert clean_file_ranges(SMAPS.splitlines()) == [
        (0x7F0000000000, 0x7F0000001000),
        (0x7F0000001000, 0x7F0000003000),
        (0x7F000000A000, 0x7F000000B000),
    ]


def test_nothing_to_choose_in_an_empty_smaps() -> None:
    assert clean_file_ranges([]) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="madvise and /proc/self are Linux's")
def test_a_process_drops_its_clean_file_pages_and_still_serves_grpc() -> None:
    # A separate process: the test runner's own memory is not this test's to drop.
    script = textwrap.dedent(
        """
        import asyncio
        import grpc
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc
        from nanofaas_registry.startup_memory import release_startup_memory

        def rss_file_kib():
            with open("/proc/self/status") as status:
                return next(int(line.split()[1]) for line in status if line.startswith("RssFile:"))

        async def one_check():
            server = grpc.aio.server()
            health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            try:
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = health_pb2_grpc.HealthStub(channel)
                    reply = await stub.Check(health_pb2.HealthCheckRequest(), timeout=10)
                    return reply.status
            finally:
                await server.stop(None)

        assert asyncio.run(one_check()) == health_pb2.HealthCheckResponse.SERVING
        before = rss_file_kib()
        released = release_startup_memory()
        after = rss_file_kib()
        assert asyncio.run(one_check()) == health_pb2.HealthCheckResponse.SERVING
        print(released.mappings, before, after)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    mappings, before, after = (int(word) for word in result.stdout.split())
    assert mappings > 0
    # grpc's cygrpc alone keeps several MiB of clean pages resident after start-up.
    assert after < before - 4096, (before, after)
