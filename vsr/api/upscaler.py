"""``Upscaler``: one picture in, the picture 4x larger out, with the model's temporal state carried
from call to call (see ``vsr.api`` for the contract)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import numpy as np

from vsr.api.images import from_frame, to_frame
from vsr.options import UpscaleOptions, build_options

logger = logging.getLogger(__name__)


class Upscaler:
    """A stream of pictures through the process's shared engine; build it with ``from_pretrained``.

    ``up(picture)`` returns the picture upscaled 4x, as the same kind (numpy, PIL or torch; see
    ``vsr.api.images``). Consecutive calls are consecutive frames of one video: each output is final at
    once and uses the previous output (the model's temporal context). ``reset()`` starts over: the next
    picture is upscaled exactly as the first picture of a new ``Upscaler`` with the same seed. A picture
    of another size than the previous one starts over by itself.

    The engine is the one ``vsr.model.engines.get_processor`` keeps for the whole process (one
    diffusion model in memory), shared with file jobs and other ``Upscaler``s; each call holds its lock
    (``vsr.model.engines.engine_lock``). When another stream used the engine between two calls of this
    ``Upscaler``, its temporal context is gone: the next picture starts over as after ``reset()`` (logged
    as a warning). Frames are cut into tiles as a job of that size would be (``vsr.job.memory``).
    """

    scale: int = 4

    def __init__(self, processor: Any, options: UpscaleOptions) -> None:
        from vsr.model.protocol import new_seed

        self._processor = processor
        self.options = options
        self.scale = int(getattr(processor, "scale", 4))
        self.seed: int = options.seed if options.seed is not None else new_seed()
        self.frames = 0  # pictures upscaled since the start or the last reset()
        self._marker: Any = None  # the engine's stream state after our last frame (see _owns_stream)
        self._started = False
        self._size: tuple[int, int] | None = None
        self._tilings: dict[tuple[int, int], Any] = {}
        self._guard = threading.Lock()

    @classmethod
    def from_pretrained(
        cls,
        model_id_or_path: str | Path | None = None,
        *,
        engine: str | None = None,
        device: str | None = None,
        precision: str | None = None,
        seed: int | None = None,
        **options: Any,
    ) -> "Upscaler":
        """Load (or reuse) the engine and return a new stream on it.

        ``model_id_or_path``: a Hugging Face model id or a local folder (default: the configured model,
        ``STREAM_DIFFVSR_MODEL_ID``, else Jamichsu/Stream-DiffVSR). ``engine="bicubic"`` gives the cheap
        model-free engine. ``device`` (auto, cpu, cuda, cuda:N, mps), ``precision`` (auto, fp32, fp16,
        bf16), ``seed`` (None: random, see ``.seed``) and any other ``vsr.options.UpscaleOptions`` field
        (``steps``, ``flow_weights``, ``flow_scale``, ``attention``, ``tile``, ``max_memory``, ...) as
        keyword arguments. Raises ``vsr.options.OptionsError`` for a bad value and
        ``vsr.model.errors.ModelLoadError`` when the model cannot be loaded.
        """
        overrides: dict[str, Any] = {"engine": engine, "device": device, "precision": precision, "seed": seed,
                                     **options}
        if model_id_or_path is not None:
            overrides["model_id"] = str(model_id_or_path)
            if engine is None:
                overrides["engine"] = "stream-diffvsr"
        return cls.from_options(build_options(overrides))

    @classmethod
    def from_options(cls, options: UpscaleOptions) -> "Upscaler":
        """A new stream on the shared engine for ``options`` (built by ``vsr.options.build_options``)."""
        from vsr.model.engines import get_processor

        return cls(get_processor(options), options)

    def __call__(self, picture: Any, *, wait: bool = True) -> Any:
        """``picture`` upscaled ``scale`` times, as the same kind; with ``wait=False`` None when the
        engine is busy with another stream (the picture is then not used: drop it, never queue it)."""
        rgb, kind = to_frame(picture)
        out = self.upscale_frame(rgb, wait=wait)
        return None if out is None else from_frame(out, kind)

    def upscale_frame(self, rgb: np.ndarray, *, wait: bool = True) -> np.ndarray | None:
        """The engines' own kind: HWC uint8 RGB in, (scale*H, scale*W, 3) uint8 out (or None, see ``__call__``)."""
        from vsr.model.engines import engine_lock
        from vsr.model.protocol import check_frame

        check_frame(rgb)
        lock = engine_lock(self._processor)
        if not lock.acquire(blocking=wait):
            return None
        try:
            with self._guard:
                return self._upscale_locked(rgb)
        finally:
            lock.release()

    def reset(self) -> None:
        """Drop the temporal state: the next picture is upscaled as a first frame, with the seed's first
        noise (exactly as by a new ``Upscaler`` with this seed)."""
        with self._guard:
            self._started = False
            self._marker = None
            self.frames = 0

    def output_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) of the output for a ``width`` x ``height`` picture."""
        return self._processor.output_size(width, height)

    def describe(self) -> dict:
        """The engine's description (engine, device, precision, steps, ...) with this stream's seed."""
        return {**self._processor.describe(), "seed": self.seed}

    # -- the stream ----------------------------------------------------------------------------------

    def _upscale_locked(self, rgb: np.ndarray) -> np.ndarray:
        size = (rgb.shape[1], rgb.shape[0])
        if self._started and not self._owns_stream():
            logger.warning("another stream used the engine since this Upscaler's last frame; its temporal context "
                           "is lost, so this frame starts over as a first frame")
            self._started = False
        if self._started and size != self._size:
            logger.info("picture size changed from %sx%s to %sx%s: starting over", *self._size, *size)
            self._started = False
        if not self._started:
            self._processor.start_stream(self.seed)
            self._started, self._size, self.frames = True, size, 0
        set_tiling = getattr(self._processor, "set_tiling", None)
        if set_tiling is not None:
            set_tiling(self._tiling(*size))
        try:
            out = self._process(rgb)
        finally:
            if set_tiling is not None:
                set_tiling(None)
        self._marker = _stream_marker(self._processor)
        self.frames += 1
        return out

    def _process(self, rgb: np.ndarray) -> np.ndarray:
        from vsr.job import memory

        try:
            return self._processor.process(rgb)
        except Exception as exc:
            self._started = False  # a failed frame leaves no trustworthy context behind
            oom = memory.out_of_memory(exc, where=f"upscaling a {rgb.shape[1]}x{rgb.shape[0]} picture",
                                       device=memory.device_label(self.options.device),
                                       left="The picture was not upscaled.")
            if oom is not None:
                raise oom from exc
            raise

    def _tiling(self, width: int, height: int) -> Any:
        """The tiling a job of this frame size would use (whole frames when they fit); cached per size.
        Raises ``vsr.job.memory.NotEnoughMemory`` when not even the smallest tiles fit."""
        if (width, height) not in self._tilings:
            from vsr.job.memory import job_memory

            self._tilings[(width, height)] = job_memory(self.options, self._processor.describe(), width, height).tiling
        return self._tilings[(width, height)]

    def _owns_stream(self) -> bool:
        """Whether the engine still carries this Upscaler's stream (no other stream ran since our last frame)."""
        return _stream_marker(self._processor) is self._marker


def _stream_marker(processor: Any) -> Any:
    """What identifies the engine's current stream position: Stream-DiffVSR replaces its ``state`` object
    on every frame, ``start_stream`` and ``reset``, so another stream's use always changes it. Engines
    without temporal state (bicubic) have none, and nothing to lose."""
    return getattr(processor, "state", None)
