"""Stream-DiffVSR video upscaling: the model, the streaming upscaler, the job and the CLI.

Public surface (see docs/ARCHITECTURE.md): options, engines, job.
The engine names are imported lazily (on first use) so that importing the options does not load torch.
"""

from vsr.options import OptionsError, UpscaleOptions, build_options

__all__ = ["OptionsError", "UpscaleOptions", "build_options"]

# Engine surface (issue 5): name -> module. Resolved on first attribute access (PEP 562).
_LAZY = {
    "FrameProcessor": "vsr.engines",
    "load_engine": "vsr.engines",
    "ENGINE_NAMES": "vsr.engines",
    "BicubicUpscaler": "vsr.bicubic",
    "StreamDiffVSRUpscaler": "vsr.stream",
    "StreamState": "vsr.stream",
    "resolve_device": "vsr.devices",
    "resolve_precision": "vsr.devices",
    "ModelLoadError": "vsr.errors",
    "ModelNotFoundError": "vsr.errors",
    "HubUnreachableError": "vsr.errors",
    "CorruptWeightsError": "vsr.errors",
    "ConfigMismatchError": "vsr.errors",
    "DeviceError": "vsr.errors",
}
__all__ += list(_LAZY)


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'vsr' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
