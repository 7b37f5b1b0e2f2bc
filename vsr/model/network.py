"""The one reachability probe for downloads (the model hub and the RAFT weights' URL).

A quick TCP connection to the host tells within seconds whether a download can work, so an offline
machine gets a clear error at once instead of a long hang inside a download library.
"""

from __future__ import annotations

import socket
import urllib.parse

REACH_TIMEOUT_S = 5.0
"""How long a reachability probe waits for the host to accept a connection."""


def unreachable_reason(url: str, timeout: float = REACH_TIMEOUT_S) -> str | None:
    """None when ``url``'s host accepts a TCP connection within ``timeout`` seconds; otherwise why
    not, in plain words (no errno numbers)."""
    parts = urllib.parse.urlparse(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except OSError as exc:
        return plain_reason(exc, host, timeout)


def plain_reason(error: BaseException, host: str = "the server", timeout: float = REACH_TIMEOUT_S) -> str:
    """Why a download from ``host`` failed, in plain words, from ``error`` or the errors it wraps
    (a ``urllib`` or ``requests`` error around a socket error): never an errno number."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return f"the address of {host} could not be looked up (no network connection or no DNS)"
        if isinstance(current, (TimeoutError, socket.timeout)):
            return f"{host} did not answer within {timeout:g} s"
        if isinstance(current, ConnectionRefusedError):
            return f"{host} refused the connection"
        if isinstance(current, ConnectionError):
            return f"the connection to {host} broke off"
        status = getattr(getattr(current, "response", None), "status_code", None)
        if isinstance(status, int):
            return f"{host} answered with HTTP status {status}"
        wrapped = getattr(current, "reason", None)
        current = wrapped if isinstance(wrapped, BaseException) else (current.__cause__ or current.__context__)
    strerror = getattr(error, "strerror", None)
    return f"{host} cannot be reached ({strerror or type(error).__name__})"
