"""Time-ordered event ids (UUID version 7, RFC 9562).

An event's id is its idempotency key: made once, when the event is created,
and carried unchanged through every retry, relay and adapter, so whoever sees
it twice can drop the second copy. Version 7 puts the Unix time in
milliseconds first, so ids sort by creation time and index well in B-trees;
within one millisecond a counter keeps ids from this process strictly
increasing.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["new_event_id"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0
_COUNTER_MAX = 0xFFF


def _next_timestamp_and_counter() -> tuple[int, int]:
    global _last_ms, _counter
    now_ms = time.time_ns() // 1_000_000
    with _lock:
        if now_ms > _last_ms:
            _last_ms, _counter = now_ms, int.from_bytes(os.urandom(1), "big")
        elif _counter < _COUNTER_MAX:
            _counter += 1
        else:  # 4096 ids in one millisecond: borrow the next millisecond
            _last_ms, _counter = _last_ms + 1, 0
        return _last_ms, _counter


def new_event_id() -> str:
    """A new UUIDv7 string, greater than every id made before it in this process."""
    ms, counter = _next_timestamp_and_counter()
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | counter << 64 | 0b10 << 62 | rand_b
    digits = f"{value:032x}"  # the canonical 8-4-4-4-12 form, without building a uuid.UUID
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"
