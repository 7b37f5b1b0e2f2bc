"""``vsr stream SOURCE -o DEST``: the command line's side of a live stream (``vsr.job.live``).

Builds the options as ``vsr upscale`` does, checks DEST and opens SOURCE before the model loads (so a bad
one is one error line and exit 3 at once), upscales through the Python API's ``Upscaler`` (the
process's shared engine), shows one status line on stderr (redrawn on a terminal, a plain line every
few seconds otherwise) and ends with the summary on stdout. Errors are worded by ``vsr.cli``.
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import AbstractContextManager
from typing import Any, Callable

from vsr.options import build_options

EXIT_CANCELLED = 130  # vsr.cli.EXIT_CANCELLED (this module cannot import vsr.cli, which imports it)
STATUS_EVERY_TTY = 1.0  # seconds between redraws on a terminal; also the wait for a log's first plain line
STATUS_EVERY_LOG = 5.0  # seconds between plain status lines when stderr is a file or a pipe


def stream_command(args: argparse.Namespace, ctrl_c: Callable[[], AbstractContextManager]) -> int:
    """Run ``vsr stream``; ``ctrl_c`` is the CLI's Ctrl-C handler (first press: stop cleanly)."""
    from media.live_source import SourceUnavailable
    from vsr.api import Upscaler
    from vsr.job.live import LiveStream, live_settings

    options = build_options({
        "engine": args.engine, "model_id": args.model_id, "flow_weights": args.flow_weights, "steps": args.steps,
        "seed": args.seed, "device": args.device, "precision": args.precision, "attention": args.attention,
        "flow_scale": args.flow_scale, "optimisations": args.optimisations, "tile": args.tile,
        "max_memory": args.max_memory, "codec": args.codec, "crf": args.crf, "preset": args.preset,
    })
    settings = live_settings(realtime=args.realtime, max_latency=args.max_latency, reconnects=args.reconnects,
                             reconnect_delay=args.reconnect_delay, timeout=args.timeout,
                             segment_seconds=args.segment_seconds, keep_segments=args.keep_segments,
                             overwrite=args.overwrite)
    stream = LiveStream(args.source, args.output, options, settings)
    try:
        width, height = stream.size
        audio = stream.source.audio
        print(f"Source:   {args.source}: {width}x{height} at {float(stream.source.rate):g} fps, "
              f"{'audio ' + audio.codec_context.name if audio is not None else 'no audio'}"
              f"{', played in real time' if stream.live else ', read as fast as the engine goes'}", flush=True)
        upscaler = Upscaler.from_options(options)
        out_w, out_h = upscaler.output_size(width, height)
        engine = upscaler.describe()
        print(f"Engine:   {engine.get('engine')} on {engine.get('device')} ({engine.get('precision')}), seed "
              f"{upscaler.seed}", flush=True)
        print(f"Output:   {args.output}: {out_w}x{out_h}, latency bound {settings.max_latency:g} s "
              "(Ctrl-C ends the stream cleanly)", flush=True)
        with ctrl_c() as cancel, _StatusLine() as status:
            final = stream.run(upscaler, on_status=status.show, status_every=STATUS_EVERY_TTY, cancel=cancel)
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, the output still finished by run()
        print(f"vsr: interrupted at once; what was written to {args.output} is finished.", file=sys.stderr,
              flush=True)
        return EXIT_CANCELLED
    finally:
        stream.close()
    print(final.summary(), flush=True)
    if final.frames_in == 0:
        raise SourceUnavailable(f"{args.source}: no video frame came from the source ({final.ended}).")
    return 0


class _StatusLine:
    """One status line on stderr: redrawn in place on a terminal every second; otherwise a plain line after
    the first second (so a log shows at once that the stream runs), then one every few seconds."""

    def __init__(self) -> None:
        tty = getattr(sys.stderr, "isatty", None)
        self.tty = bool(tty is not None and tty())
        self._drawn = False
        self._printed: float | None = None  # when the last plain line was printed

    def show(self, status: Any) -> None:
        line = f"live: {status.to_text()}"
        if self.tty:
            sys.stderr.write("\r" + line + "\x1b[K")
            sys.stderr.flush()
            self._drawn = True
        elif self._printed is None or time.monotonic() - self._printed >= STATUS_EVERY_LOG:
            self._printed = time.monotonic()
            print(f"{time.strftime('%H:%M:%S')} {line}", file=sys.stderr, flush=True)

    def __enter__(self) -> "_StatusLine":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
