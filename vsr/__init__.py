"""Stream-DiffVSR video upscaling, in three layers (see docs/architecture.md):

- ``vsr.model``: the engines (Stream-DiffVSR streamed frame by frame, bicubic) behind one protocol;
- ``vsr.job``: planning, estimating and running one video job on top of ``media`` and the model;
- the interfaces: ``vsr.cli`` (the ``vsr`` command) and ``vsr.web`` (the web app's UI-free logic).

Configuration sits at this level: ``vsr.options`` (the one settings object), ``vsr.environment``
(the only reader of environment variables), ``vsr.logs`` and ``vsr.formatting``. Importing
``vsr`` loads none of torch, PyAV or Gradio.
"""

from vsr.options import OptionsError, UpscaleOptions, build_options

__all__ = ["OptionsError", "UpscaleOptions", "build_options"]
