"""Test-only start-up hook: put this folder on PYTHONPATH and every log record says its millisecond.

Used by tests/e2e/test_conformance.py to check the millisecond digits of real processes'
`ts`. Each record's creation time is moved back (a few milliseconds at most) onto a value
that shows a formatting bug, and the millisecond it belongs to is added as the extra field
`probeMs`:

* even records: a double just below a whole millisecond (.123 stored as .12299999...), where
  truncating the float's fraction prints one millisecond too few;
* odd records: 0.6 ms past a whole millisecond, where rounding prints one too many.
"""

from __future__ import annotations

import itertools
import logging
import math
from typing import Any

_make_record = logging.getLogRecordFactory()
_sequence = itertools.count()


def _naive_millis(created: float) -> int:
    return int((created - int(created)) * 1000)


def _probe_time(now: float, below_boundary: bool) -> tuple[float, int]:
    """A creation time at or before `now` and the millisecond (since the epoch) it lies in."""
    millis = math.floor(now * 1000) - 1
    if not below_boundary:
        return (millis + 0.6) / 1000, millis
    while _naive_millis(millis / 1000) == millis % 1000:  # about every other millisecond qualifies
        millis -= 1
    return millis / 1000, millis


def _record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _make_record(*args, **kwargs)
    created, millis = _probe_time(record.created, next(_sequence) % 2 == 0)
    record.created = created
    record.msecs = (created - int(created)) * 1000  # as LogRecord computes it
    record.probeMs = f"{millis % 1000:03d}"
    return record


logging.setLogRecordFactory(_record)
