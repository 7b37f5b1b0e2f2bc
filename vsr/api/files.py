"""``upscale_file``: a whole video file through the product's own job (``vsr.job.plan`` + ``vsr.job.run``)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any, Callable

from vsr.options import build_options

logger = logging.getLogger(__name__)


def upscale_file(
    src: str | Path,
    dst: str | Path,
    *,
    on_progress: Callable[[Any], None] | None = None,
    cancel: threading.Event | None = None,
    overwrite: bool = False,
    **options: Any,
) -> Any:
    """Upscale the video ``src`` into ``dst`` (audio and subtitles kept) and return the verification report.

    Exactly what ``vsr upscale`` does: ``vsr.job.plan`` (probe, decide, estimate), then ``vsr.job.run``
    (decode -> the shared engine -> encode, joined and verified before it takes ``dst``'s name).
    ``options`` are ``vsr.options.UpscaleOptions`` fields (``engine``, ``model_id``, ``device``,
    ``precision``, ``steps``, ``seed``, ``height``, ``start``, ``end``, ``codec``, ``crf``, ...);
    ``dst``'s suffix picks the container (``.mp4``, ``.mov``, ``.mkv``, ``.webm``).
    ``on_progress`` gets each ``vsr.job.ProgressEvent`` (``stage``, ``done``, ``total``, ``fps``,
    ``eta_seconds``, the newest frames); ``cancel.set()`` from another thread stops within one frame
    (``vsr.job.JobCancelled``, nothing left at ``dst``).

    Returns the media ``VerifyReport`` (``.ok``, ``.checks``, ``.to_text()``). Raises
    ``FileExistsError`` when ``dst`` exists and ``overwrite`` is off, ``vsr.options.OptionsError``,
    ``vsr.job.JobRefused`` (refused before any work), ``media.MediaError``,
    ``vsr.model.errors.ModelLoadError``, ``vsr.job.JobFailed`` / ``VerificationFailed``.
    """
    from vsr import environment
    from vsr.job import estimator_for, plan, run

    settings = build_options(options)
    output = Path(dst)
    if output.exists() and not overwrite:
        raise FileExistsError(f"{output} already exists; pass overwrite=True to replace it, or choose another name.")
    zero_gpu = environment.on_zero_gpu()
    job = plan(Path(src), settings, estimator=estimator_for(settings, zero_gpu=zero_gpu), output=output,
               zero_gpu=zero_gpu)
    logger.info("%s", job.to_text())
    result = run(job, output, on_progress=on_progress, cancel=cancel)
    logger.info("upscaled %s -> %s: %d frames in %.1f s, seed %d", src, output, result.frames, result.seconds,
                result.seed)
    return result.report
