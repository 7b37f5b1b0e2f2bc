"""Stream-DiffVSR video upscaling, in three layers (see docs/architecture.md):

- ``vsr.model``: the engines (Stream-DiffVSR streamed frame by frame, bicubic) behind one protocol;
- ``vsr.job``: planning, estimating and running one video job on top of ``media`` and the model;
- the interfaces: ``vsr.cli`` (the ``vsr`` command) and ``vsr.web`` (the web app's UI-free logic).

Configuration sits at this level: ``vsr.options`` (the one settings object), ``vsr.environment``
(the only reader of environment variables), ``vsr.logs`` and ``vsr.formatting``. Importing
``vsr`` loads none of torch, PyAV or Gradio.

The Python API (``vsr.api``, docs/python-api.md): ``vsr.Upscaler`` and ``vsr.upscale_file`` are loaded on
first use (PEP 562), so ``import vsr`` stays light.
"""

import importlib
from typing import Any

from vsr.options import OptionsError, UpscaleOptions, build_options

_LAZY = {"Upscaler": "vsr.api", "upscale_file": "vsr.api"}

__all__ = ["OptionsError", "Upscaler", "UpscaleOptions", "build_options", "upscale_file"]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsr' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
