"""Errors raised while loading a model: each message names the file or id, the problem and the fix."""

from __future__ import annotations


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says which file or id, why, and what to do."""


class ModelNotFoundError(ModelLoadError):
    """The model id or folder does not exist, or a required subfolder or file is missing."""


class HubUnreachableError(ModelLoadError):
    """The Hugging Face Hub (or the RAFT weight URL) could not be reached and nothing usable is cached."""


class CorruptWeightsError(ModelLoadError):
    """A weight or config file exists but cannot be read (truncated, not the right format)."""


class ConfigMismatchError(ModelLoadError):
    """A config file does not fit the weights next to it (missing, unexpected or mis-shaped tensors)."""


class DeviceError(ModelLoadError):
    """The requested device or precision is not available on this machine."""
