"""``StallGuard``: a write to a connected receiver that stops reading fails after a timeout instead of
blocking for ever.

FFmpeg bounds blocking network I/O with its ``rw_timeout`` option, but PyAV opens an output with
``avio_open`` and no options, so a muxer writing to an RTMP or TCP receiver that stalls (alive, reading
nothing) waits in the kernel for as long as the connection lasts. The guard watches each write from a
thread of its own; when one has taken longer than the timeout, it shuts down this process's
connections to the destination's address (found among the open descriptors, ``/dev/fd``), and the
blocked write returns with an error that the caller reports.
"""

from __future__ import annotations

import logging
import os
import socket
import stat
import threading
import time
from types import TracebackType

log = logging.getLogger(__name__)

CHECK_S = 0.25
"""How often the watching thread looks at the write in progress."""


class StallGuard:
    """``with guard:`` around each write to ``host:port``; ``tripped`` once it cut the connection."""

    def __init__(self, host: str, port: int, timeout: float) -> None:
        self.host, self.port, self.timeout = host, port, timeout
        self.tripped = False
        self._since: float | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="vsr-stall-guard", daemon=True)
        self._thread.start()

    def __enter__(self) -> "StallGuard":
        self._since = time.monotonic()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._since = None

    def close(self) -> None:
        """Stop watching (the output is finished)."""
        self._done.set()
        self._thread.join(timeout=5)

    def _watch(self) -> None:
        while not self._done.wait(CHECK_S):
            since = self._since
            if since is not None and time.monotonic() - since > self.timeout:
                self.tripped = True
                cut = cut_connections(self.host, self.port)
                log.warning("%s:%d read nothing for %g s: %d connection(s) to it shut down", self.host, self.port,
                            self.timeout, cut)
                return


def _addresses(host: str, port: int) -> set[tuple[str, int]]:
    try:
        return {(info[4][0], port) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)}
    except OSError:
        return set()


def cut_connections(host: str, port: int) -> int:
    """Shut down every connected socket of this process whose peer is ``host:port``; how many."""
    wanted = _addresses(host, port)
    cut = 0
    for name in os.listdir("/dev/fd"):
        try:
            fd = int(name)
            if not stat.S_ISSOCK(os.fstat(fd).st_mode):
                continue
            with socket.socket(fileno=os.dup(fd)) as sock:
                peer = sock.getpeername()
                if (peer[0], peer[1]) in wanted:
                    sock.shutdown(socket.SHUT_RDWR)
                    cut += 1
        except (OSError, ValueError, IndexError, TypeError):
            continue  # gone meanwhile, not connected, or not an internet socket
    return cut
