"""Docker HEALTHCHECK probe: exit 0 when the web app answers, 1 when it does not.

The slim image has no curl, so the Dockerfile runs this with the image's Python::

    python /app/deploy/healthcheck.py http://127.0.0.1:8000/config

It asks Gradio's ``/config`` route (cheap: the app's layout as JSON, served as soon as the server
accepts requests; it does not touch the model or the job queue) and accepts only a 200 answer
whose body is a JSON object, so a different server on the port does not pass for the app, or, when the
app asks for a login (STREAM_DIFFVSR_AUTH), Gradio's own 401 ``Not authenticated`` JSON answer.
Standard library only, so the probe works even when the app's own imports are broken.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request

DEFAULT_URL = "http://127.0.0.1:8000/config"


def probe(url: str, timeout: float) -> str | None:
    """Return None when ``url`` answers 200 with a JSON object, else a one-line reason."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (a local http URL)
            status = response.status
            body = response.read()
    except urllib.error.HTTPError as error:
        if error.code == 401 and _behind_login(error.read()):
            return None
        return f"{url} answered HTTP {error.code}"
    except (urllib.error.URLError, OSError) as error:
        return f"{url} did not answer: {getattr(error, 'reason', error)}"
    if status != 200:
        return f"{url} answered HTTP {status}"
    try:
        config = json.loads(body)
    except ValueError:
        return f"{url} answered 200 but not with JSON; is another server using the port?"
    if not isinstance(config, dict):
        return f"{url} answered 200 but not with a Gradio config object"
    return None


def _behind_login(body: bytes) -> bool:
    """True when a 401 answer is Gradio's own ``Not authenticated`` (the app runs behind the login that
    STREAM_DIFFVSR_AUTH turns on): the app answers, only the probe has no login."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return False
    return isinstance(detail, dict) and detail.get("error") == "Not authenticated"


def main(argv: list[str] | None = None) -> int:
    """Probe the app once; print the reason to stderr and return 1 when it is not healthy."""
    parser = argparse.ArgumentParser(description="Exit 0 when the Stream-DiffVSR web app answers.")
    parser.add_argument("url", nargs="?", default=DEFAULT_URL, help=f"Gradio config URL (default {DEFAULT_URL})")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds to wait for the answer (default 5)")
    args = parser.parse_args(argv)
    reason = probe(args.url, args.timeout)
    if reason is None:
        return 0
    sys.stderr.write(f"unhealthy: {reason}\n")
    return 1


if __name__ == "__main__":
    sys.exit(main())
