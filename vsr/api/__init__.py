"""The Python API, for people who build on the upscaler (a notebook, a ComfyUI node, their own server).

In the conventions of diffusers::

    from vsr import Upscaler, upscale_file

    up = Upscaler.from_pretrained("Jamichsu/Stream-DiffVSR", device="cuda", precision="fp16", seed=0)
    hr = up(lr)          # one frame: numpy (H, W, 3) uint8 or float 0..1, PIL.Image, or torch (3, H, W)
    up.reset()           # drop the temporal state: the next frame is a first frame again
    report = upscale_file("in.mp4", "out.mp4", on_progress=print, engine="bicubic")

The contract:

- ``Upscaler.from_pretrained(model_id_or_path=None, *, engine=None, device=None, precision=None,
  seed=None, **options)``: ``options`` are ``vsr.options.UpscaleOptions`` fields (``steps``,
  ``flow_weights``, ``flow_scale``, ``tile``, ...), validated by ``build_options`` as the CLI's flags
  are (environment variables apply underneath); ``engine="bicubic"`` needs no model.
  ``Upscaler.from_options(options)`` takes a built ``UpscaleOptions``.
- ``up(picture, *, wait=True)``: the picture 4x larger, as the same kind: numpy ``(H, W, 3)`` uint8 ->
  uint8; numpy float (0.0..1.0) -> the same float dtype; ``PIL.Image`` -> RGB ``PIL.Image``; torch
  ``(3, H, W)`` or ``(1, 3, H, W)`` float (0.0..1.0, torchvision's convention) or uint8 -> the same
  shape layout, dtype and device. Successive calls are successive frames of one video (the temporal
  context carries over); a picture of a new size starts over. ``wait=False``: None at once when the
  engine is busy (for live sources: drop that frame). ``up.upscale_frame(rgb)`` is the same on HWC uint8
  numpy frames only (what ``vsr stream`` uses).
- ``up.reset()``: the next picture is upscaled exactly as the first picture of a new ``Upscaler`` with
  the same ``up.seed``. ``up.frames``: pictures since the start or the last reset. ``up.describe()``.
- The engine is the process's shared one (``vsr.model.engines.get_processor``): the file job, ``vsr
  stream`` and the web app's Live tab run on the same object and the same code path, never a copy.
- ``upscale_file(src, dst, *, on_progress=None, cancel=None, overwrite=False, **options)``: the file
  job (``vsr.job.plan`` + ``vsr.job.run``, exactly ``vsr upscale``); returns the media ``VerifyReport``.

This package sits with the interfaces: it imports ``vsr.job`` and ``vsr.model``, and only interfaces
import it. ``import vsr`` stays light: ``vsr.Upscaler`` and ``vsr.upscale_file`` load it on first use.
"""

from vsr.api.files import upscale_file
from vsr.api.upscaler import Upscaler

__all__ = ["Upscaler", "upscale_file"]
