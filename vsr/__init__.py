"""Stream-DiffVSR video upscaling: the model, the streaming upscaler, the job and the CLI.

Public surface (see docs/ARCHITECTURE.md): options, engines, job.
"""

from vsr.options import OptionsError, UpscaleOptions, build_options

__all__ = ["OptionsError", "UpscaleOptions", "build_options"]
