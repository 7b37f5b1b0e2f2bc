"""The one logging configuration point. Library modules only call ``logging.getLogger(__name__)``."""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Callable, Iterator

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
    environment.quiet_encoder_logs(debug=numeric <= logging.DEBUG)
    # Third-party loggers that are noisy at INFO.
    for noisy in ("httpx", "httpcore", "urllib3", "gradio_client"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))


class _WriteHandler(logging.Handler):
    """Hands each formatted record to ``write`` (a progress bar's ``write``, which clears the bar,
    prints the line and draws the bar again below it)."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.format(record))
        except Exception:  # noqa: BLE001 - logging must never break the program; report as logging does
            self.handleError(record)


@contextlib.contextmanager
def through(write: Callable[[str], None]) -> Iterator[None]:
    """While a terminal progress bar is drawn: log lines that would go to the terminal (the root
    logger's handlers on stderr or stdout) go through ``write`` instead, so a warning never lands in
    the middle of the bar's line. Everything is put back afterwards."""
    root = logging.getLogger()
    terminal = [handler for handler in root.handlers if type(handler) is logging.StreamHandler
                and getattr(handler, "stream", None) in (sys.stderr, sys.stdout)]
    if not terminal:
        yield
        return
    replacement = _WriteHandler(write)
    replacement.setFormatter(terminal[0].formatter or logging.Formatter(_FORMAT))
    replacement.setLevel(terminal[0].level)
    for handler in terminal:
        root.removeHandler(handler)
    root.addHandler(replacement)
    try:
        yield
    finally:
        root.removeHandler(replacement)
        for handler in terminal:
            root.addHandler(handler)
