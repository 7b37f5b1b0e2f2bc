"""Output names that never collide with another job's."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

from media.errors import OutputNotWritable, reason

__all__ = ["unique_output_path"]

_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)


def unique_output_path(directory: str | Path, stem: str, suffix: str) -> Path:
    """Reserve and return ``directory/<stem>.<8 hex>.<suffix>``, a name no other job can get.

    The name is created empty with ``O_EXCL`` (atomic on every local file system), so two jobs
    started in the same instant still get different files; ``VideoWriter.finish`` then replaces
    the reservation atomically. Characters unsafe in file names are replaced by ``_``.
    """
    directory = Path(directory)
    safe = _UNSAFE.sub("_", stem).strip(" .") or "video"
    suffix = suffix if suffix.startswith(".") else f".{suffix}"
    for _ in range(100):
        path = directory / f"{safe}.{uuid.uuid4().hex[:8]}{suffix}"
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            continue
        except OSError as exc:
            raise OutputNotWritable(
                f"{directory}: cannot create the output file there ({reason(exc)}). Create the directory or choose "
                "another output directory.",
                path,
            ) from exc
        os.close(fd)
        return path
    raise OutputNotWritable(f"{directory}: could not find a free output name for {stem!r}.", directory)
