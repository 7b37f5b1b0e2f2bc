"""One lock per loaded engine: a stream (a job, or a calibration) owns the engine's temporal state.

Two jobs sharing one engine at the same time would interleave their frames through one temporal
state; ``engine_lock(engine)`` serialises them (the web app's queue normally prevents it already).
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

_LOCKS: weakref.WeakKeyDictionary[Any, threading.Lock] = weakref.WeakKeyDictionary()
_GUARD = threading.Lock()


def engine_lock(engine: Any) -> threading.Lock:
    """The lock of ``engine`` (created on first use, forgotten with the engine)."""
    with _GUARD:
        lock = _LOCKS.get(engine)
        if lock is None:
            lock = _LOCKS[engine] = threading.Lock()
        return lock
