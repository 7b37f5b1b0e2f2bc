"""Errors raised while loading a model (each message names the file or id, the problem and the fix), and
the one error of a running engine that is not a bug: ``NonFiniteOutput``.

``str(error)`` is the whole message for the command line (its fix names the CLI's flags). The
facts behind it travel as attributes, so another interface can word the fix its own way (the web
page names the server's environment variables: ``vsr.web.texts.model_error_text``):

- ``subject``: what could not be loaded, in words ("the model 'Jamichsu/Stream-DiffVSR'");
- ``reason``: why, in plain words (no errno numbers);
- ``setting``: the option that chooses it (``"model_id"``, ``"flow_weights"``), or None;
- ``remedy``: which kind of fix applies: ``"download"`` (it is not here and cannot be fetched now:
  use a local copy or the download cache), ``"path"`` (the setting names no such file or folder),
  ``"hub-id"`` (the hub has no such model, or it needs a login); ``""`` when the message says it all;
- ``cache``: the download cache that was looked in, or None.
"""

from __future__ import annotations

from typing import Any

REMEDIES = ("", "download", "path", "hub-id")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message says which file or id, why, and what to do."""

    def __init__(self, message: str, *, subject: str = "", reason: str = "", setting: str | None = None,
                 remedy: str = "", cache: str | None = None) -> None:
        if remedy not in REMEDIES:
            raise ValueError(f"unknown remedy {remedy!r}; use one of {REMEDIES}")
        super().__init__(message)
        self.subject = subject
        self.reason = reason
        self.setting = setting
        self.remedy = remedy
        self.cache = cache

    def facts(self) -> dict[str, Any]:
        """The attributes above, as keyword arguments of the constructor."""
        return {"subject": self.subject, "reason": self.reason, "setting": self.setting, "remedy": self.remedy,
                "cache": self.cache}

    def __reduce__(self) -> tuple:  # the facts survive pickling (a ZeroGPU worker hands errors back)
        return (_rebuild, (type(self), str(self), self.facts()))


def _rebuild(cls: type[ModelLoadError], message: str, facts: dict[str, Any]) -> ModelLoadError:
    return cls(message, **facts)


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


class NonFiniteOutput(RuntimeError):
    """A frame came out of the engine with NaN or infinite values (overflow in a reduced precision, or a
    wrong compiled kernel): the frame would be garbage, so the engine refuses to return it. The message
    names the device, precision and switches, and the fix."""
