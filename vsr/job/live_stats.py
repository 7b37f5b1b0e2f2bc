"""The numbers of a running ``vsr stream``: frames in, out and dropped, rates, latency, first output."""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from dataclasses import dataclass

from vsr.job.progress import RateMeter

LATENCY_WINDOW = 500  # the latency percentiles are over the newest frames written


@dataclass(frozen=True)
class LiveStatus:
    """One report of a live stream. Latencies are seconds from a frame's arrival (decoded from the
    source) to its upscaled frame being written to the output; ``first_output`` is the first frame's.
    At the end ``frames_in == frames_out + dropped``."""

    frames_in: int
    frames_out: int
    dropped: int
    input_fps: float | None
    output_fps: float | None
    latency_median: float | None
    latency_p95: float | None
    first_output: float | None
    reconnects: int
    seconds: float
    ended: str | None = None  # why the stream ended, on the last report

    @property
    def dropped_share(self) -> float:
        return self.dropped / self.frames_in if self.frames_in else 0.0

    def to_text(self) -> str:
        def num(value: float | None, unit: str) -> str:
            return "-" if value is None else f"{value:.2f}{unit}"

        text = (f"in {num(self.input_fps, ' fps')} · out {num(self.output_fps, ' fps')} · dropped {self.dropped} "
                f"({self.dropped_share:.0%}) · latency {num(self.latency_median, ' s')} "
                f"(p95 {num(self.latency_p95, ' s')}) · first output after {num(self.first_output, ' s')}")
        return text + (f" · reconnects {self.reconnects}" if self.reconnects else "")

    def summary(self) -> str:
        """The last line: the counts, so ``frames in = frames out + dropped`` can be read off it."""
        return (f"Stream:   {self.frames_in} frames in, {self.frames_out} out, {self.dropped} dropped "
                f"({self.dropped_share:.1%}) in {self.seconds:.1f} s; latency median "
                f"{_s(self.latency_median)}, p95 {_s(self.latency_p95)}; first output after {_s(self.first_output)}; "
                f"{self._reconnected()}{self.ended or 'stopped'}")

    def _reconnected(self) -> str:
        if not self.reconnects:
            return ""
        return f"reconnected {self.reconnects} time{'' if self.reconnects == 1 else 's'}; "

    def to_dict(self) -> dict:
        return {"frames_in": self.frames_in, "frames_out": self.frames_out, "dropped": self.dropped,
                "input_fps": self.input_fps, "output_fps": self.output_fps, "latency_median": self.latency_median,
                "latency_p95": self.latency_p95, "first_output": self.first_output, "reconnects": self.reconnects,
                "seconds": self.seconds, "ended": self.ended}


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


class LiveCounters:
    """Thread-safe counters of one live stream; ``status()`` snapshots them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._started = time.monotonic()
        self.frames_in = 0
        self.frames_out = 0
        self.dropped = 0
        self.reconnects = 0
        self._first_arrival: float | None = None
        self.first_output: float | None = None
        self._latencies: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._in_rate = RateMeter(window=50, clock=time.monotonic)
        self._out_rate = RateMeter(window=50, clock=time.monotonic)

    def arrived(self, arrival: float) -> None:
        with self._lock:
            self.frames_in += 1
            self._in_rate.tick()
            if self._first_arrival is None:
                self._first_arrival = arrival

    def drop(self, count: int = 1) -> None:
        with self._lock:
            self.dropped += count

    def written(self, arrival: float) -> None:
        now = time.monotonic()
        with self._lock:
            self.frames_out += 1
            self._out_rate.tick()
            self._latencies.append(now - arrival)
            if self.first_output is None and self._first_arrival is not None:
                self.first_output = now - self._first_arrival

    def reconnected(self) -> None:
        with self._lock:
            self.reconnects += 1

    def status(self, ended: str | None = None) -> LiveStatus:
        with self._lock:
            latencies = sorted(self._latencies)
            median = statistics.median(latencies) if latencies else None
            p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))] if latencies else None
            return LiveStatus(self.frames_in, self.frames_out, self.dropped, self._in_rate.fps, self._out_rate.fps,
                              median, p95, self.first_output, self.reconnects, time.monotonic() - self._started, ended)
