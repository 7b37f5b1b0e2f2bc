"""The one logging configuration point. Library modules only call ``logging.getLogger(__name__)``."""

from __future__ import annotations

import logging

from vsr import environment

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def configure_logging(level: str | None = None) -> None:
    """Configure the root logger once for a program (the CLI or the web app).

    ``level`` wins over ``STREAM_DIFFVSR_LOG_LEVEL``; the default is INFO.
    """
    name = (level or environment.read().get("STREAM_DIFFVSR_LOG_LEVEL") or "INFO").upper()
    numeric = logging.getLevelName(name)
    if not isinstance(numeric, int):
        raise ValueError(f"Log level {name!r} is not valid. Use DEBUG, INFO, WARNING or ERROR.")
    logging.basicConfig(level=numeric, format=_FORMAT, force=True)
    # Third-party loggers that are noisy at INFO.
    for noisy in ("httpx", "httpcore", "urllib3", "gradio_client"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
