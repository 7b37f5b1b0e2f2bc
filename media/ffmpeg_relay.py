"""``SrtRelay``: SRT through an FFmpeg program, for the PyAV builds whose FFmpeg has no ``srt`` protocol.

PyAV's wheel carries FFmpeg's libraries without libsrt; the ``imageio-ffmpeg`` wheel (requirements-app.txt)
carries an FFmpeg program that has it. A relay is that program copying MPEG-TS packets unchanged
(``-c copy``) between the SRT URL and a UDP port on the loopback address, which PyAV reads or writes as
any ``udp://`` stream: ``SrtRelay.receive`` for a source, ``SrtRelay.publish`` for a destination. The
program's own error (a refused or timed-out connection) is kept and given by ``failure()``.
"""

from __future__ import annotations

import logging
import socket
import subprocess
import threading
import time
from collections.abc import Callable

import av

from media.errors import MediaError

log = logging.getLogger(__name__)

RELAYED = ("srt",)
"""Protocols a relay carries when PyAV's FFmpeg lacks them."""
UDP_FIFO_PACKETS = 100_000  # the publishing relay's input buffer (188-byte packets), as LiveSource's
BIND_WAIT_S = 10.0  # a bound on the program's start (it binds its UDP port within milliseconds)
STOP_WAIT_S = 5.0
DRAIN_S = 0.5  # after the last packet, time for the publishing relay to send what it holds


class RelayUnavailable(MediaError):
    """No FFmpeg program to relay with (the imageio-ffmpeg package is missing)."""


def pyav_has_protocol(kind: str) -> bool:
    """Whether PyAV's FFmpeg opens ``kind://`` URLs itself (probed once per protocol)."""
    if kind not in _PROTOCOLS:
        try:
            av.open(f"{kind}://127.0.0.1:9", "r", timeout=(0.01, 0.01)).close()
            _PROTOCOLS[kind] = True
        except av.error.ProtocolNotFoundError:
            _PROTOCOLS[kind] = False
        except (av.FFmpegError, OSError):
            _PROTOCOLS[kind] = True  # the protocol is there; nothing answers on the probe address
    return _PROTOCOLS[kind]


_PROTOCOLS: dict[str, bool] = {}


def needs_relay(kind: str) -> bool:
    """Whether URLs of scheme ``kind`` (``media.live_source.scheme``) go through a relay (SRT, where PyAV's
    FFmpeg has no SRT)."""
    return kind in RELAYED and not pyav_has_protocol(kind)


def ffmpeg_program() -> str:
    """The FFmpeg program of the imageio-ffmpeg package; ``RelayUnavailable`` naming the install."""
    try:
        import imageio_ffmpeg
    except ImportError:
        raise RelayUnavailable("SRT needs the FFmpeg program of the imageio-ffmpeg package, which is not "
                               "installed: pip install -r requirements-app.txt") from None
    return imageio_ffmpeg.get_ffmpeg_exe()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def udp_bound(port: int) -> bool:
    """Whether a socket of this machine has bound UDP ``port`` (Linux's socket table, so that looking
    never takes the port from the program about to bind it)."""
    wanted = f":{port:04X}"
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        try:
            with open(table, encoding="ascii") as lines:
                if any(line.split()[1].endswith(wanted) for line in list(lines)[1:]):
                    return True
        except OSError:
            continue
    return False


def _wait_bound(port: int, give_up: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + BIND_WAIT_S
    while not udp_bound(port):
        if give_up() or time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class SrtRelay:
    """One FFmpeg program relaying ``url`` to or from ``local`` (``udp://127.0.0.1:PORT``)."""

    def __init__(self, url: str, args: list[str], port: int) -> None:
        self.url, self.local, self._args = url, f"udp://127.0.0.1:{port}", args
        self._errors: list[str] = []
        self._process: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def _start(self) -> None:
        with self._lock:
            if self._closed.is_set():
                return
            self._process = subprocess.Popen(self._args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=subprocess.PIPE, text=True, errors="replace")
        self._reader = threading.Thread(target=self._read_errors, name="vsr-srt-relay", daemon=True)
        self._reader.start()
        log.info("%s: relayed through %s by FFmpeg's program (pid %d)", self.url, self.local, self._process.pid)

    @classmethod
    def receive(cls, url: str, analyze_seconds: float) -> "SrtRelay":
        """Read ``url`` and send its packets to a loopback UDP port for PyAV to read. The program starts
        once PyAV has bound that port (a packet sent before would be refused); it looks at the first
        ``analyze_seconds`` of the stream before it sends."""
        port = free_udp_port()
        # Not -fflags nobuffer: with it the program held the packets back until the stream ended.
        args = [ffmpeg_program(), "-nostdin", "-hide_banner", "-loglevel", "error",
                "-analyzeduration", str(int(analyze_seconds * 1_000_000)), "-i", url, "-map", "0", "-c", "copy",
                "-flush_packets", "1", "-f", "mpegts", f"udp://127.0.0.1:{port}?pkt_size=1316"]
        relay = cls(url, args, port)
        threading.Thread(target=lambda: _wait_bound(port, relay._closed.is_set) and relay._start(),
                         name="vsr-srt-relay-start", daemon=True).start()
        return relay

    @classmethod
    def publish(cls, url: str) -> "SrtRelay":
        """Read MPEG-TS from a loopback UDP port (PyAV writes there) and publish it to ``url``; returns once
        the program has bound the port, so that no packet is sent before."""
        port = free_udp_port()
        source = f"udp://127.0.0.1:{port}?fifo_size={UDP_FIFO_PACKETS}&overrun_nonfatal=1"
        args = [ffmpeg_program(), "-nostdin", "-hide_banner", "-loglevel", "error", "-analyzeduration", "1000000",
                "-f", "mpegts", "-i", source, "-map", "0", "-c", "copy", "-flush_packets", "1", "-f", "mpegts", url]
        relay = cls(url, args, port)
        relay._start()
        if not _wait_bound(port, lambda: relay.failure() is not None):
            relay.close()
            raise MediaError(f"{url}: the SRT relay did not start: {relay.failure() or 'no answer'}")
        return relay

    def _read_errors(self) -> None:
        assert self._process is not None and self._process.stderr is not None
        for line in self._process.stderr:
            if line.strip() and len(self._errors) < 20:
                self._errors.append(line.strip())
                log.debug("srt relay: %s", line.strip())

    def failure(self) -> str | None:
        """Why the program stopped (its first error line), or None while it runs or has yet to start."""
        code = self._process.poll() if self._process is not None else None
        if code is None:
            return None
        if self._reader is not None:
            self._reader.join(1.0)
        if self._errors:
            return _reason(self._errors[0])
        return "the other side closed the connection" if code == 0 else f"FFmpeg's program ended (exit status {code})"

    def close(self, drain: bool = False) -> None:
        """Stop the program (after ``DRAIN_S`` for what it still holds, with ``drain``); safe to call twice."""
        with self._lock:
            self._closed.set()  # a program not started yet never starts
        process = self._process
        if process is None:
            return
        if drain and process.poll() is None:
            time.sleep(DRAIN_S)
        if process.poll() is None:
            process.terminate()  # FFmpeg finishes its output on SIGTERM
            try:
                process.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(STOP_WAIT_S)
        if self._reader is not None:
            self._reader.join(1.0)
        if process.stderr is not None and not (self._reader and self._reader.is_alive()):
            process.stderr.close()


def _reason(line: str) -> str:
    """FFmpeg's first error line (the cause; later ones repeat it) without the program's prefix
    (``[srt @ 0x...]``) and the URL: ``connection failed: Input/output error``."""
    text = line.split("]", 1)[1].strip() if line.startswith("[") and "]" in line else line
    if text.startswith("Connection to ") and " failed: " in text:
        return "connection failed: " + text.split(" failed: ", 1)[1]
    if text.startswith("Error during demuxing: "):  # what the program says when the sender closes
        return f"the connection ended ({text.split(': ', 1)[1]})"
    return text
