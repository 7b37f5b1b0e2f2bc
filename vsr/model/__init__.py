"""The upscaling engines: Stream-DiffVSR streamed frame by frame, and bicubic, behind ``FrameProcessor``.

Nothing here knows about jobs, media files or interfaces. The public names below are imported on
first use (PEP 562), so ``import vsr.model`` does not load torch.
"""

import importlib
from typing import Any

_LAZY = {
    "FrameProcessor": "vsr.model.protocol",
    "check_frame": "vsr.model.protocol",
    "new_seed": "vsr.model.protocol",
    "load_engine": "vsr.model.engines",
    "get_processor": "vsr.model.engines",
    "clear_processors": "vsr.model.engines",
    "engine_lock": "vsr.model.engines",
    "BicubicUpscaler": "vsr.model.bicubic",
    "StreamDiffVSRUpscaler": "vsr.model.stream",
    "StreamState": "vsr.model.stream",
    "resolve_device": "vsr.model.devices",
    "resolve_precision": "vsr.model.devices",
    "ModelLoadError": "vsr.model.errors",
    "ModelNotFoundError": "vsr.model.errors",
    "HubUnreachableError": "vsr.model.errors",
    "CorruptWeightsError": "vsr.model.errors",
    "ConfigMismatchError": "vsr.model.errors",
    "DeviceError": "vsr.model.errors",
}
__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsr.model' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
