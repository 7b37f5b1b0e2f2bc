"""Streaming media layer: probe, decode, encode, mux, verify (PyAV, FFmpeg in process)."""

__all__: list[str] = []
