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
    except socket.gaierror:
        return f"the address of {host} could not be looked up (no network connection or no DNS)"
    except TimeoutError:
        return f"{host} did not answer within {timeout:g} s"
    except ConnectionRefusedError:
        return f"{host} refused the connection"
    except OSError as exc:
        return f"{host} cannot be reached ({exc.strerror or type(exc).__name__})"
