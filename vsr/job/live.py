"""``vsr stream``'s job: a live source in, upscaled frame by frame, a live stream out, latency bounded.

::

    media.LiveSource (reader thread: demux, decode, pace, reconnect)
        -> pending frames (dropped when they could not be written within ``max_latency``)
        -> the upscaler (this thread; ``vsr.api.Upscaler`` on the process's shared engine)
        -> EncodeThread -> media.LiveOutput (HLS playlist + segments, or a published URL)

The source's audio goes straight from the reader to the output (copied, or re-encoded to AAC when the
output cannot carry it) on the same clock as the video: output time = source time - the first item's
time (after a reconnect, the gap the stall took is kept, so the audio stays with its pictures; a live
source's clock that jumps while it streams on is followed across the jump: ``vsr.job.live_clock``).

Latency is bounded: a live source (network, device, a file with ``realtime``) never waits for the engine.
Each frame waits in ``pending`` until the engine is free. While the engine keeps up with the source, the
oldest frame that can still be written within ``max_latency`` (its age plus the engine's recent time per
frame) is taken and older ones are dropped and counted, so a hiccup costs delay rather than frames; when
the engine is slower than the source (or one frame alone takes longer than ``max_latency``), only the
newest frame is taken, so the delay stays the engine's own. A file read without ``realtime`` is read as
fast as the engine goes, nothing dropped.

The source is opened by the constructor (a bad one fails before the model loads); what a live source
sends until ``run`` starts is read and skipped (``_Preroll``), so the stream starts at the live edge.

A source that stalls or ends (a live one) is opened again up to ``reconnects`` times, waiting
``reconnect_delay`` seconds, doubled each time; then the stream ends cleanly. The new source's first
frame is upscaled as a first frame (the upscaler's temporal state is reset), and frames of a source that
comes back at another size are resized to the size the output was made for. Whatever stops it (the
source, ``cancel``, an error, Ctrl-C) the output is finished (the playlist gets ``#EXT-X-ENDLIST``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Callable, Protocol

import numpy as np

import media
from media.live_output import LiveOutput, check_destination
from media.live_source import LiveAudio, LiveFrame, LiveSource
from vsr.job.encode_thread import EncodeThread
from vsr.job.live_clock import Jump, SourceClock
from vsr.job.live_stats import LiveCounters, LiveStatus
from vsr.job.resize import resize_rgb
from vsr.options import AUTO_CODEC, OptionsError, UpscaleOptions

logger = logging.getLogger(__name__)

ENCODE_QUEUE = 2
JUMP_WARN_EVERY_S = 10.0  # a source whose clock keeps jumping: one warning in this time, the rest logged
_POLL = 0.05


class FrameUpscaler(Protocol):
    """What the loop needs of an upscaler (``vsr.api.Upscaler``)."""

    def upscale_frame(self, rgb: np.ndarray, *, wait: bool = True) -> np.ndarray | None: ...

    def output_size(self, width: int, height: int) -> tuple[int, int]: ...

    def reset(self) -> None: ...


@dataclass(frozen=True)
class LiveSettings:
    """How ``vsr stream`` reads, drops and reconnects (the CLI's flags; see ``live_settings``)."""

    realtime: bool = False  # a file source played at its own rate (a live source always is)
    max_latency: float = 1.0  # seconds from a frame's arrival to its output being written
    reconnects: int = 3  # times a stalled or ended live source is opened again
    reconnect_delay: float = 1.0  # seconds before the first reconnect; doubled each time
    timeout: float = 5.0  # seconds without data before the source counts as stalled
    segment_seconds: float = 2.0  # HLS segment length
    keep_segments: int | None = None  # HLS: list (and keep on disk) only the newest N segments; None: all
    overwrite: bool = False  # replace an existing playlist and its segments


def live_settings(**values: Any) -> LiveSettings:
    """``LiveSettings`` from typed-in values (None: the default); ``OptionsError`` naming a bad one."""
    given = {k: v for k, v in values.items() if v is not None}
    checks = {"max_latency": (0.01, "seconds, e.g. 1.5"), "reconnect_delay": (0.0, "seconds, e.g. 1"),
              "timeout": (0.1, "seconds, e.g. 5"), "segment_seconds": (0.5, "seconds, e.g. 2")}
    for name, (low, what) in checks.items():
        if name in given:
            try:
                given[name] = float(given[name])
            except (TypeError, ValueError):
                raise OptionsError(f"{name}={values[name]!r} is not a number; give {what}.") from None
            if not low <= given[name] < float("inf"):
                raise OptionsError(f"{name}={values[name]!r} must be at least {low:g} ({what}).")
    for name, low in (("reconnects", 0), ("keep_segments", 1)):
        if name in given:
            try:
                given[name] = int(given[name])
            except (TypeError, ValueError):
                raise OptionsError(f"{name}={values[name]!r} is not a whole number.") from None
            if given[name] < low:
                raise OptionsError(f"{name}={values[name]!r} must be {low} or more.")
    return LiveSettings(**given)


class LiveStream:
    """One ``vsr stream`` run. The constructor checks the destination and opens the source (both before
    any work: ``media.MediaError`` naming the one that cannot be used); ``run(upscaler)`` streams."""

    def __init__(self, source: str, dest: str, options: UpscaleOptions, settings: LiveSettings) -> None:
        self.url, self.dest, self.options, self.settings = source, dest, options, settings
        self.codec = "h264" if options.codec == AUTO_CODEC else options.codec  # live: 8-bit H.264 unless asked
        check_destination(dest, self.codec, overwrite=settings.overwrite, timeout=settings.timeout,
                          keep_segments=settings.keep_segments)
        self.source = LiveSource(source, timeout=settings.timeout).open()
        self.recording = not self.source.live  # a file or a finished HLS playlist: it ends, nothing reconnects
        self.live = self.source.live or settings.realtime
        # A live source goes on while the model loads: read and skip it, so that nothing piles up (a UDP
        # buffer, a TCP window that stalls the sender) and the stream starts at the live edge.
        self._preroll = _Preroll(self.source) if self.source.live else None
        self.counters = LiveCounters()
        self._pending: deque[LiveFrame] = deque()
        self._cond = threading.Condition()
        self._reading = True
        self._ended: str | None = None
        self._stop = threading.Event()
        self._arrivals: dict[Fraction, float] = {}
        self._step = 0.0  # recent seconds per frame of the engine (and the encoder, when it is behind)
        self._interval = 0.0  # recent seconds between the source's frames, on its own clock
        self._last_time: Fraction | None = None
        self._warned = False
        self._restart_from: int | None = None  # a reconnect: the first frame of the new source (its index)
        self._new_source = False
        self._resized_from: tuple[int, ...] | None = None  # the last size a frame was resized from
        self._jump_warned: float | None = None  # when a jump of the source's clock was last warned of

    @property
    def size(self) -> tuple[int, int]:
        return self.source.width, self.source.height

    def run(self, upscaler: FrameUpscaler, *, on_status: Callable[[LiveStatus], None] | None = None,
            status_every: float = 1.0, cancel: threading.Event | None = None) -> LiveStatus:
        """Stream until the source ends (after its reconnects), ``cancel`` is set, or an error; the output
        is finished in every case. Returns the last ``LiveStatus`` (``ended`` says why it stopped)."""
        cancel = cancel or threading.Event()
        self.counters = LiveCounters()  # the stream's time starts now, after the model loaded
        width, height = upscaler.output_size(*self.size)
        if self.settings.overwrite:
            _remove_playlist(self.dest)
        output = LiveOutput(self.dest, width, height, self.source.rate, audio=self.source.audio,
                            encode=media.EncodeSettings(self.codec, self.options.crf, self.options.preset),
                            segment_seconds=self.settings.segment_seconds, timeout=self.settings.timeout,
                            keep_segments=self.settings.keep_segments)
        self._end_preroll()
        self.source.decode_audio = output.needs_decoded_audio
        reader = threading.Thread(target=self._read, args=(output, cancel), name="vsr-live-source", daemon=True)
        encoder = EncodeThread(_Timed(output, self._arrivals, self.counters), width, height, ENCODE_QUEUE)
        reader.start()
        try:
            self._upscale(upscaler, encoder, cancel, on_status, status_every)
            encoder.finish()
        except BaseException:
            encoder.stop()
            raise
        finally:
            self._stop.set()
            with self._cond:
                self.counters.drop(len(self._pending))  # taken in but never upscaled: counted, not lost
                self._pending.clear()
                self._cond.notify_all()
            output.close()
            reader.join(self.settings.timeout + 2.0)
            self.source.close()
            self.counters.drop(len(self._arrivals))  # queued for the encoder when it stopped
            self._arrivals.clear()
        ended = "cancelled" if cancel.is_set() else (self._ended or "the source ended")
        status = self.counters.status(ended)
        logger.info("live stream ended: %s", status.summary())
        return status

    def close(self) -> None:
        """Let go of the source (after ``run``, or instead of it when the model could not be loaded)."""
        self._end_preroll()
        self.source.close()

    def _end_preroll(self) -> None:
        if self._preroll is not None:
            skipped = self._preroll.stop(self.settings.timeout + 2.0)
            self._preroll = None
            if skipped:
                logger.info("%s: skipped the %d frames that came while the model loaded", self.url, skipped)

    # -- the engine side (this thread) ---------------------------------------------------------------

    def _upscale(self, upscaler: FrameUpscaler, encoder: EncodeThread, cancel: threading.Event,
                 on_status: Callable[[LiveStatus], None] | None, status_every: float) -> None:
        width, height = self.size
        last_status = time.monotonic()
        while not cancel.is_set():
            frame, restart = self._next_frame(cancel)
            if on_status is not None and time.monotonic() - last_status >= status_every:
                on_status(self.counters.status())
                last_status = time.monotonic()
            if frame is None:
                if self._finished():
                    return
                continue
            started = time.monotonic()
            if restart:  # a new source after a reconnect: the previous output is no context for its pictures
                upscaler.reset()
            rgb = frame.rgb()
            if rgb.shape[:2] != (height, width):
                rgb = self._resized(rgb, width, height)
            out = upscaler.upscale_frame(rgb)
            self._arrivals[frame.time] = frame.arrival
            encoder.put(out, frame.time)  # waits while the encoder is behind: that counts as the frame's time
            took = time.monotonic() - started
            self._step = took if self._step == 0 else 0.8 * self._step + 0.2 * took

    def _next_frame(self, cancel: threading.Event) -> tuple[LiveFrame | None, bool]:
        """The frame to upscale now (dropping those that can no longer meet ``max_latency``), or None
        after a short wait; and whether it is the first of a new source (after a reconnect)."""
        with self._cond:
            if not self._pending:
                self._cond.wait(_POLL)
            if not self._pending or cancel.is_set():
                return None, False
            if self.live:
                self._drop_late()
            frame = self._pending.popleft()
            restart = self._restart_from is not None and frame.index >= self._restart_from
            if restart:
                self._restart_from = None
            self._cond.notify_all()
            return frame, restart

    def _resized(self, rgb: np.ndarray, width: int, height: int) -> np.ndarray:
        """A frame of a source that changed size mid-stream, at the size the output was made for."""
        if rgb.shape[:2] != self._resized_from:
            self._resized_from = rgb.shape[:2]
            logger.warning("%s: the picture is now %dx%d; its frames are resized to %dx%d (the output's size "
                           "does not change during a stream)", self.url, rgb.shape[1], rgb.shape[0], width, height)
        return resize_rgb(rgb, width, height)

    def _drop_late(self) -> None:
        """Drop the frames that would be late. When the engine is slower than the source (its recent time per
        frame above the source's frame interval) or one frame alone exceeds the bound, waiting frames can only
        get later: only the newest is kept, so the delay stays the engine's own. Otherwise the oldest frame
        that can still be written within the bound is taken: a short hiccup costs delay, not frames."""
        limit = self.settings.max_latency
        if self._step >= limit and not self._warned:
            logger.warning("the engine takes %.2f s a frame, more than --max-latency %.2f s: only the newest "
                           "frame is upscaled each time", self._step, limit)
            self._warned = True
        if self._step >= limit or self._step > self._interval > 0:
            late = len(self._pending) - 1
        else:
            now = time.monotonic()
            late = 0
            while late < len(self._pending) - 1 and now - self._pending[late].arrival + self._step > limit:
                late += 1
        for _ in range(late):
            self._pending.popleft()
        self.counters.drop(late)

    def _finished(self) -> bool:
        with self._cond:
            return not self._reading and not self._pending

    # -- the source side (the reader thread) ---------------------------------------------------------

    def _read(self, output: LiveOutput, cancel: threading.Event) -> None:
        try:
            self._read_all(output, cancel)
        except Exception as exc:  # noqa: BLE001 - the stream ends cleanly with the reason
            logger.warning("reading %s failed: %s", self.url, exc, exc_info=True)
            self._ended = f"the source failed: {exc}"
        finally:
            with self._cond:
                self._reading = False
                self._cond.notify_all()

    def _read_all(self, output: LiveOutput, cancel: threading.Event) -> None:
        clock = SourceClock(follow_jumps=not self.recording)
        attempts = 0
        first_reason: str | None = None
        source = self.source
        while True:
            if self._forward(source, clock, output, cancel):
                attempts = 0  # it came back: a later stall gets every reconnect again
            if cancel.is_set() or self._stop.is_set():
                return
            reason = source.error or "end of stream"
            if self.recording:
                self._ended = "the source ended" if source.error is None else f"the source failed: {reason}"
                return
            first_reason = first_reason if attempts else reason
            about = reason if reason.startswith(self.url) else f"{self.url}: {reason}"
            if attempts >= self.settings.reconnects:
                if attempts:
                    logger.warning("%s; no reconnect left", about.rstrip("."))
                gave_up = f"; gave up after {attempts} reconnect{'' if attempts == 1 else 's'}" if attempts else ""
                self._ended = f"the source stopped ({first_reason}){gave_up}"  # (none when --reconnects 0)
                return
            delay = self.settings.reconnect_delay * 2 ** attempts
            attempts += 1
            logger.warning("%s; reconnecting in %.1f s (attempt %d of %d)", about.rstrip("."), delay, attempts,
                           self.settings.reconnects)
            if self._stop.wait(delay) or cancel.is_set():
                return
            reopened = self._reopen(source)
            if reopened is None:
                self._ended = "the source ended (its HLS playlist is finished)"
                return
            source = reopened
            clock.reconnected()

    def _forward(self, source: LiveSource, clock: SourceClock, output: LiveOutput, cancel: threading.Event) -> bool:
        """Hand ``source``'s frames (to the engine's list) and audio (to the output) on, on the output's
        clock, until it ends or the stream stops; whether anything came."""
        came = False
        for item in source.read():
            if cancel.is_set() or self._stop.is_set():
                break
            came = True
            shift = clock.shift(item.time, "audio" if isinstance(item, LiveAudio) else "video")
            for jump in clock.jumps():
                self._jumped(jump)
            if self.settings.realtime and self.recording:
                clock.pace(item.time, self._stop)
            if isinstance(item, LiveAudio):
                output.put_audio(item, shift)
            else:
                self._put(LiveFrame(item.frame, item.time + shift, item.arrival, item.index, item.tags))
        return came

    def _jumped(self, jump: Jump) -> None:
        """The source's clock jumped while it streamed on (a sender restarted within the time-out, an HLS
        discontinuity): said, and its next picture is upscaled as a first frame, as after a reconnect."""
        way = f"back {-jump.seconds:.2f} s" if jump.seconds < 0 else f"ahead {jump.seconds:.1f} s"
        now = time.monotonic()
        # a small jump is timestamp jitter; a source that keeps jumping is warned of every so often, not each time
        said = self._jump_warned is not None and now - self._jump_warned < JUMP_WARN_EVERY_S
        level = logging.WARNING if abs(jump.seconds) >= 1 and not said else logging.INFO
        if level == logging.WARNING:
            self._jump_warned = now
        logger.log(level, "%s: the source's clock jumped %s (its sender restarted, or a discontinuity); the "
                   "output's clock goes on without the jump", self.url, way)
        with self._cond:
            self._new_source = True

    def _reopen(self, old: LiveSource) -> LiveSource | None:
        """The source opened again (a ``_Failed`` one when that fails: its next ``read`` ends at once); None
        when it is a recording now (a live HLS playlist that its publisher finished: read already)."""
        old.close()
        fresh = LiveSource(self.url, timeout=self.settings.timeout, decode_audio=old.decode_audio)
        try:
            fresh.open()
        except media.MediaError as exc:  # said by the loop, with the next attempt or the end
            return _Failed(self.url, str(exc))  # type: ignore[return-value]
        if not fresh.live:
            fresh.close()
            return None
        self.counters.reconnected()
        with self._cond:
            self._new_source = True  # _put marks the new source's first frame
        self.source = fresh
        return fresh

    def _put(self, frame: LiveFrame) -> None:
        with self._cond:
            if not self.live:  # a file as fast as possible: wait for the engine, drop nothing
                while len(self._pending) >= 2 and not self._stop.is_set():
                    self._cond.wait(_POLL)
            if self._stop.is_set():
                return
            self.counters.arrived(frame.arrival)
            # The frame interval from the source's timestamps: arrivals come in bursts (an HLS segment, a
            # network buffer) whose gaps say nothing of its rate; a reconnect's gap is no frame interval.
            gap = float(frame.time - self._last_time) if self._last_time is not None else 0.0
            if 0 < gap <= 1:
                self._interval = gap if self._interval == 0 else 0.9 * self._interval + 0.1 * gap
            self._last_time = frame.time
            if self._new_source:
                self._restart_from, self._new_source = frame.index, False
            self._pending.append(frame)
            cap = max(2, int(float(self.source.rate) * self.settings.max_latency) + 2)
            while len(self._pending) > cap:  # never piles up, whatever the engine does
                self._pending.popleft()
                self.counters.drop()
            self._cond.notify_all()


class _Preroll:
    """Reads a live source and skips what it reads, in a thread, until ``stop()`` (which returns how many
    frames were skipped). Decoding goes on, so the first frame after it decodes cleanly."""

    def __init__(self, source: LiveSource) -> None:
        self.source = source
        self.skipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._skip, name="vsr-live-preroll", daemon=True)
        self._thread.start()

    def _skip(self) -> None:
        items = self.source.read()
        try:
            for item in items:
                if self._stop.is_set():
                    return
                if isinstance(item, LiveFrame):
                    self.skipped += 1
        except Exception as exc:  # noqa: BLE001 - the stream's reader meets the same source and says why
            logger.debug("%s: while the model loaded: %s", self.source.url, exc)
        finally:
            items.close()  # in this thread, which ran it; the stream's reader reads on from here

    def stop(self, wait: float) -> int:
        self._stop.set()
        self._thread.join(wait)  # a silent source answers within its time-out
        return self.skipped


class _Failed:
    """A source that could not be opened again: reading it ends at once, with the reason."""

    def __init__(self, url: str, error: str) -> None:
        self.url, self.error, self.stalled, self.decode_audio = url, error, True, False

    def read(self) -> Any:
        return iter(())

    def close(self) -> None:
        pass


class _Timed:
    """The encode thread's writer: ``LiveOutput.write``, then the frame's latency counted."""

    def __init__(self, output: LiveOutput, arrivals: dict[Fraction, float], counters: LiveCounters) -> None:
        self._output, self._arrivals, self._counters = output, arrivals, counters

    def write(self, rgb: np.ndarray, pts: Fraction, duration: Fraction | None = None) -> None:
        written = self._output.write(rgb, pts, duration)
        arrival = self._arrivals.pop(pts, None)
        if arrival is not None:
            if written:
                self._counters.written(arrival)
            else:
                self._counters.drop()


def _remove_playlist(dest: str) -> None:
    """``--overwrite``: the old playlist and its segments go before the new ones are written."""
    from pathlib import Path

    from media.live_output import output_format, segment_pattern

    if output_format(dest) != "hls":
        return
    playlist = Path(dest)
    playlist.unlink(missing_ok=True)
    for old in playlist.parent.glob(segment_pattern(playlist).name.replace("%05d", "*")):
        old.unlink(missing_ok=True)
