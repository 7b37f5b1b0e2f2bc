"""``vsr``: the command line (``python -m vsr`` or the ``vsr`` console script).

- ``vsr upscale INPUT -o OUTPUT [...]``: plan (printed first), one streaming job with a tqdm bar,
  then the verification report.
- ``vsr frames --in_path DIR --out_path DIR [...]``: the reference implementation's frame-folder
  interface (its flag names kept).
- ``vsr probe INPUT``: everything about a video, as JSON.

This is one of the two places where errors are translated for people: every error becomes one line
on stderr naming the problem and the fix, and an exit code from ``EXIT_CODES``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from tqdm import tqdm

from vsr import environment, logs
from vsr.formatting import duration_text, speed_text
from vsr.job.progress import counter_text, status_text
from vsr.options import (ATTENTIONS, CODECS, DEVICES, ENGINES, FLOW_SCALES, HEIGHT_PRESETS, PRECISIONS, OptionsError,
                         build_options)

if TYPE_CHECKING:
    from vsr.job.checkpoint import JobCheckpoint

logger = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_USAGE = 2
EXIT_INPUT = 3
EXIT_MODEL = 4
EXIT_JOB = 5
EXIT_CANCELLED = 130
EXIT_CODES: dict[int, str] = {
    EXIT_OK: "success",
    EXIT_INTERNAL: "unexpected internal error (a bug: run again with --log-level DEBUG and report it)",
    EXIT_USAGE: "bad command line: unknown flag, bad option value, output exists without --overwrite, a previous "
    "run's checkpoint without --resume or --overwrite, a checkpoint of another input or other options",
    EXIT_INPUT: "the input or output cannot be used: missing, unreadable, not a video, over a limit or the memory "
    "budget, "
    "a size above 4x, a trim outside the video, an unwritable output folder",
    EXIT_MODEL: "the model cannot be loaded: unknown model id, missing or corrupt weights, device unavailable",
    EXIT_JOB: "the job failed while running (engine or encoder error, out of memory) or the output failed verification",
    EXIT_CANCELLED: "cancelled with Ctrl-C; the work so far is kept as a checkpoint (run again with --resume), or "
    "nothing is left when no frame was done",
}


class _Parser(argparse.ArgumentParser):
    """argparse with one-line usage errors (exit code 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}. Run `{self.prog} --help` for the flags.\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``vsr`` argument parser with its ``upscale``, ``frames`` and ``probe`` sub-commands."""
    parser = _Parser(
        prog="vsr",
        description="Make a video 4x sharper with Stream-DiffVSR, streamed frame by frame.",
        epilog="exit codes:\n" + "\n".join(
            textwrap.fill(f"{code} {text}", width=100, initial_indent="  ", subsequent_indent="      ")
            for code, text in EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{upscale,batch,stream,frames,probe}",
                                     parser_class=_Parser)

    up = commands.add_parser("upscale", help="upscale a video into a new video (with its audio and subtitles)",
                             description="Upscale INPUT into OUTPUT in one streaming pass, then verify it.")
    up.add_argument("input", metavar="INPUT", help="the video to upscale")
    up.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                    help="the file to write (.mp4, .mov, .mkv, .webm), or a folder for NAME_4x.mp4; written atomically")
    up.add_argument("--overwrite", action="store_true",
                    help="replace OUTPUT if it exists, and start over instead of resuming a previous run")
    up.add_argument("--resume", action="store_true",
                    help="go on from the checkpoint a stopped run of the same command left (Ctrl-C, a crash)")
    _add_engine_flags(up)
    up.add_argument("--optimisations", metavar="LIST",
                    help="speed switches: auto (default), none, or a comma list like auto,compile,-flow-prefetch")
    up.add_argument("--height", metavar="4x|" + "|".join(str(h) for h in HEIGHT_PRESETS),
                    help="output size: 4x (default) or the output's short side as displayed")
    up.add_argument("--start", metavar="T", help="start time (seconds or HH:MM:SS.ff)")
    up.add_argument("--end", metavar="T", help="end time (seconds or HH:MM:SS.ff)")
    up.add_argument("--codec", metavar="|".join(CODECS),
                    help="video codec (default auto: h264, or hevc Main 10 for a source deeper than 8 bits or HDR)")
    up.add_argument("--crf", metavar="N", help="constant rate factor (default per codec; lower is better)")
    up.add_argument("--preset", metavar="NAME", help="encoder speed preset (x264/x265 names, SVT-AV1 0-13)")
    up.add_argument("--scene-cuts", metavar="on|off", help="reset temporal context at detected cuts (default on)")
    up.add_argument("--scene-threshold", metavar="X", help="content detector threshold (default 27)")
    up.add_argument("--tile", metavar="auto|off|N",
                    help="cut frames into latent tiles of N (default auto: only when a frame does not fit)")
    up.add_argument("--max-memory", metavar="SIZE",
                    help="memory the job may use on its device, e.g. 6GB (default: free GPU memory / 70%% of RAM)")
    _add_cluster_flags(up)
    up.add_argument("--segment-seconds", metavar="S",
                    help="with workers: seconds of video per part (default: from the length and the workers)")
    _add_log_level(up)
    up.set_defaults(handler=_upscale)

    _add_stream_command(commands)

    ba = commands.add_parser("batch", help="upscale many videos (files and folders) into a folder, with a report",
                             description="Upscale every INPUT (files; folders: their videos) into OUT_DIR, each a "
                             "job; an output there that verifies is skipped, so running again goes on. Ends with a "
                             "table and OUT_DIR/batch-report.json. Exit 0 when every input is done or skipped, "
                             "else the code of the worst failure.")
    ba.add_argument("inputs", nargs="+", metavar="INPUT", help="videos, or folders of videos")
    ba.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="the folder to write into")
    for action in up._actions:  # every job option of upscale, the same flags
        if action.dest not in ("help", "input", "output", "overwrite", "resume"):
            ba._add_action(action)
    ba.set_defaults(handler=_batch)

    fr = commands.add_parser("frames", help="upscale folders of frames into PNGs (the reference's interface)",
                             description="Upscale image sequences; each sub-folder of --in_path is one sequence.")
    fr.add_argument("--in_path", required=True, metavar="DIR", help="folder of sequence folders (or of frames)")
    fr.add_argument("--out_path", required=True, metavar="DIR", help="PNGs go to DIR/<sequence>/<name>.png")
    fr.add_argument("--model_id", metavar="ID", help="Hugging Face model id or local folder")
    fr.add_argument("--num_inference_steps", metavar="N", help="denoising steps (default 4)")
    fr.add_argument("--seed", metavar="S", help="noise seed (default: random; the seed used is printed)")
    fr.add_argument("--flow-weights", metavar="FILE", help="local RAFT large weights (.pth/.safetensors)")
    fr.add_argument("--device", metavar="|".join(DEVICES), help="where the model runs (default auto)")
    fr.add_argument("--precision", metavar="|".join(PRECISIONS), help="model precision (default auto)")
    _add_flow_scale(fr)
    _add_log_level(fr)
    fr.set_defaults(handler=_frames)

    pr = commands.add_parser("probe", help="print everything about a video as JSON")
    pr.add_argument("input", metavar="INPUT", help="the video to describe")
    _add_log_level(pr)
    pr.set_defaults(handler=_probe)
    return parser


def _add_stream_command(commands: Any) -> None:
    """``vsr stream SOURCE -o DEST``: the engine and encoder flags of ``vsr upscale``, and the live ones."""
    st = commands.add_parser("stream", help="upscale a live source into a live stream (HLS playlist or a URL)",
                             description="Upscale SOURCE (udp://, srt://, rtmp://, rtsp://, an HLS URL, /dev/video0 "
                             "or a file) frame by frame into DEST (an .m3u8 playlist, or udp://, srt://, rtmp://), "
                             "latency bounded: frames the engine cannot take in time are dropped and counted.")
    st.add_argument("source", metavar="SOURCE", help="anything FFmpeg opens as input")
    st.add_argument("-o", "--output", required=True, metavar="DEST",
                    help="a path ending in .m3u8 (HLS, segments beside it) or udp://, srt://, tcp:// (MPEG-TS), "
                    "rtmp:// (FLV)")
    st.add_argument("--overwrite", action="store_true", help="replace an existing playlist and its segments")
    _add_engine_flags(st)
    st.add_argument("--optimisations", metavar="LIST", help="speed switches: auto (default), none, or a comma list")
    st.add_argument("--tile", metavar="auto|off|N", help="cut frames into latent tiles of N (default auto)")
    st.add_argument("--max-memory", metavar="SIZE", help="memory the engine may use on its device, e.g. 6GB")
    st.add_argument("--codec", metavar="h264|hevc", help="video codec (default h264; rtmp:// takes only h264)")
    st.add_argument("--crf", metavar="N", help="constant rate factor (default per codec; lower is better)")
    st.add_argument("--preset", metavar="NAME", help="encoder speed preset (default veryfast for live)")
    st.add_argument("--realtime", action="store_true",
                    help="play a file source at its own rate (live sources always are); without it a file, a "
                    "finished HLS playlist or a video on a web server is read as fast as the engine goes, nothing "
                    "dropped")
    st.add_argument("--max-latency", metavar="SECONDS",
                    help="bound from a frame's arrival to its output being written; later frames are dropped "
                    "(default 1)")
    st.add_argument("--reconnects", metavar="N", help="times a stalled or ended live source is opened again (default 3)")
    st.add_argument("--reconnect-delay", metavar="SECONDS",
                    help="wait before the first reconnect, doubled each time (default 1)")
    st.add_argument("--timeout", metavar="SECONDS", help="seconds without data before the source counts as stalled "
                    "(default 5)")
    st.add_argument("--segment-seconds", metavar="S", help="HLS segment length (default 2)")
    st.add_argument("--keep-segments", metavar="N", help="HLS: list and keep only the newest N segments, deleting "
                    "older ones (a sliding window for a long stream; default: keep every segment)")
    _add_log_level(st)
    st.set_defaults(handler=_stream)


def _stream(args: argparse.Namespace) -> int:
    from vsr.cli_stream import stream_command

    return stream_command(args, _CtrlC)


def _add_engine_flags(parser: argparse.ArgumentParser) -> None:
    """The engine's flags, the same for `vsr upscale` and `vsr stream`."""
    parser.add_argument("--engine", metavar="|".join(ENGINES), help="upscaling engine (default stream-diffvsr)")
    parser.add_argument("--model-id", metavar="ID", help="Hugging Face model id or local folder")
    parser.add_argument("--flow-weights", metavar="FILE", help="local RAFT large weights (.pth/.safetensors)")
    parser.add_argument("--steps", metavar="N", help="denoising steps (default 4)")
    parser.add_argument("--seed", metavar="S", help="noise seed (default: random; the seed used is printed)")
    parser.add_argument("--device", metavar="|".join(DEVICES), help="where the model runs (default auto)")
    parser.add_argument("--precision", metavar="|".join(PRECISIONS), help="model precision (default auto)")
    parser.add_argument("--attention", metavar="|".join(ATTENTIONS), help="attention implementation (default sdpa)")
    _add_flow_scale(parser)


def _add_flow_scale(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--flow-scale", metavar="|".join(f"{s:g}" for s in FLOW_SCALES),
                        help="optical flow on frames downscaled by this factor (default 1: exact; smaller is faster)")


def _add_cluster_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that spread work over Ray workers (the optional cluster extra, docs/cluster.md)."""
    parser.add_argument("--workers", metavar="N", type=int,
                        help="upscale on N workers of a local Ray (one per GPU; on a CPU a share of the cores each)")
    parser.add_argument("--cluster", metavar="ADDRESS", nargs="?", const="auto",
                        help="use a running Ray cluster: auto (default; RAY_ADDRESS), or ray://host:10001")
    parser.add_argument("--shared-dir", metavar="DIR",
                        help="a folder every worker can write: parts go there instead of through Ray's object store")
    parser.add_argument("--warmup-frames", metavar="K", type=int,
                        help="frames upscaled and thrown away before a part that does not start at a scene cut "
                             "(default 8)")


def _add_log_level(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--log-level", metavar="LEVEL",
                        help="DEBUG, INFO, WARNING or ERROR (default WARNING, or STREAM_DIFFVSR_LOG_LEVEL)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (see ``EXIT_CODES``)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error already printed by argparse
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    try:
        _configure_logging(args.log_level)
        return int(args.handler(args))
    except BaseException as exc:  # noqa: BLE001 - the one place errors become a line and an exit code
        code, message = describe_error(exc)
        if code == EXIT_INTERNAL:
            logger.error("unexpected error", exc_info=exc)
        else:
            logger.debug("error details", exc_info=exc)
        print(f"vsr: error: {message}", file=sys.stderr, flush=True)
        return code


def describe_error(exc: BaseException) -> tuple[int, str]:
    """(exit code, one-line message) for an error that reached the command line."""
    import media
    from vsr.job.errors import CheckpointError, JobCancelled, JobFailed, JobRefused
    from vsr.model.errors import ModelLoadError

    text = " ".join([str(exc), *getattr(exc, "__notes__", ())]).split()
    text = " ".join(text) or type(exc).__name__
    if isinstance(exc, JobCancelled) and exc.checkpoint is not None:
        return EXIT_CANCELLED, (f"stopped at frame {exc.done} of {exc.total}; the work so far is kept in "
                                f"{exc.checkpoint}. Run the same command with --resume to go on (or --overwrite to "
                                "start over).")
    if isinstance(exc, (JobCancelled, KeyboardInterrupt)):
        return EXIT_CANCELLED, "cancelled; partial output and temporary files were removed."
    if isinstance(exc, (CheckpointError, OptionsError)):
        return EXIT_USAGE, text
    if isinstance(exc, ModelLoadError):
        return EXIT_MODEL, text
    if isinstance(exc, JobFailed) or isinstance(exc, media.VerificationFailed):
        return EXIT_JOB, text
    if isinstance(exc, (JobRefused, media.MediaError)):
        return EXIT_INPUT, text
    if isinstance(exc, _UsageError):
        return EXIT_USAGE, text
    if isinstance(exc, OSError):
        return EXIT_INPUT, f"{text}. Check the path and its permissions."
    return EXIT_INTERNAL, (f"unexpected {type(exc).__name__}: {text}. This is a bug; rerun with --log-level DEBUG "
                           "and report it.")


class _UsageError(ValueError):
    """A command-line mistake found after parsing (e.g. the output exists without --overwrite)."""


def _configure_logging(level: str | None) -> None:
    from vsr.logs import configure_logging

    if level is None and "STREAM_DIFFVSR_LOG_LEVEL" not in environment.read():
        level = "WARNING"
    try:
        configure_logging(level)
    except ValueError as exc:
        raise OptionsError(f"--log-level: {exc}") from None


# ---------------------------------------------------------------------------------------------
# Sub-commands.


def _upscale(args: argparse.Namespace) -> int:
    from media import MediaError
    from vsr.job import checkpoint, estimator_for, plan, run
    from vsr.job.errors import JobError

    options = _job_options(args)
    if args.workers is not None or args.cluster is not None:
        from vsr.job.cluster import require_ray

        require_ray("--cluster" if args.cluster else "--workers")
    output = _output_file(args, options)
    if output.exists() and not args.overwrite:
        raise _UsageError(f"{output} already exists. Pass --overwrite to replace it, or choose another name.")
    folder = checkpoint.checkpoint_dir_for(output)
    _leftover_checkpoint(folder, resume=args.resume, overwrite=args.overwrite)
    zero_gpu = environment.on_zero_gpu()
    estimator = estimator_for(options, zero_gpu=zero_gpu, on_measure=_say_measuring)
    job = plan(Path(args.input), options, estimator=estimator, output=output, zero_gpu=zero_gpu)
    if args.workers is not None or args.cluster is not None:
        return _upscale_on_workers(args, job, output, folder)
    resume = None
    if args.resume and checkpoint.exists(folder):
        resume = checkpoint.load(folder)
        checkpoint.check(resume, job, folder)
    print(job.to_text(), flush=True)
    if args.resume:
        print(f"Resume:   going on from {resume.where()} ({folder})" if resume is not None else
              "Resume:   no checkpoint of a previous run; starting from the beginning", flush=True)
    with _progress(job.frames, scene_cuts=job.temporal) as bar, _CtrlC() as cancel:
        try:
            result = run(job, output, on_progress=bar.update, cancel=cancel, checkpoint_dir=folder, resume=resume)
        except KeyboardInterrupt:
            raise _interrupted(folder) from None
        except (JobError, MediaError) as error:
            _note_checkpoint(error, folder)
            raise
    print(done_line(result, job), flush=True)
    print(result.report.to_text(), flush=True)
    return EXIT_OK


def _output_file(args: argparse.Namespace, options: Any) -> Path:
    """``-o`` as given, or, when it names a folder (one that exists, or a path ending in ``/``), the file in
    it named as ``vsr batch`` names it: ``<input name>_4x<the codec's container>``."""
    import media
    from vsr.job import batch, estimator_for, plan

    output = Path(args.output)
    if not output.is_dir() and not args.output.endswith(("/", os.sep)):
        return output
    if not output.is_dir():
        raise media.OutputNotWritable(f"{output}: the output folder does not exist. Create it or choose another "
                                      "output path.", output)
    job = plan(Path(args.input), options, estimator=estimator_for(options, on_measure=_say_measuring))
    return batch.output_for(Path(args.input), output, job.container_suffix, set())


def _job_options(args: argparse.Namespace) -> Any:
    """The job's options from ``upscale``'s (and ``batch``'s) flags."""
    return build_options({
        "engine": args.engine, "model_id": args.model_id, "flow_weights": args.flow_weights,
        "steps": args.steps, "seed": args.seed, "device": args.device, "precision": args.precision,
        "attention": args.attention, "flow_scale": args.flow_scale, "height": args.height, "start": args.start,
        "end": args.end, "codec": args.codec, "crf": args.crf, "preset": args.preset, "scene_cuts": args.scene_cuts,
        "scene_threshold": args.scene_threshold, "tile": args.tile, "max_memory": args.max_memory,
        "optimisations": args.optimisations,
    })


_SEVERITY = (EXIT_INTERNAL, EXIT_JOB, EXIT_MODEL, EXIT_INPUT, EXIT_USAGE)
"""The worst first: the exit code of a batch with failures is its worst input's."""


def _batch(args: argparse.Namespace) -> int:
    """``vsr batch``: every input a job (see ``vsr.job.batch``); one bad input never stops the others."""
    from vsr.job import batch
    from vsr.job.cluster import connect, require_ray

    options = _job_options(args)
    on_workers = args.workers is not None or args.cluster is not None
    if on_workers:
        require_ray("--cluster" if args.cluster else "--workers")
    out_dir = Path(args.output)
    out_dir.mkdir(parents=True, exist_ok=True)
    inputs = batch.find_inputs(args.inputs)
    connected = (connect(args.cluster, args.workers, verbose=logging.getLogger().level <= logging.INFO)
                 if on_workers else None)
    entries: list[Any] = []
    taken: set[Path] = set()
    try:
        for source in inputs:
            entries.append(_batch_one(args, options, source, out_dir, taken, connected))
            print(f"Batch:    {source.name}: {entries[-1].status} {entries[-1].reason}".rstrip(), flush=True)
            if entries[-1].status == "cancelled":
                break
    finally:
        if connected is not None:
            connected.close()
    print(batch.table(entries), flush=True)
    print(f"Report:   {batch.write_report(out_dir, entries)}", flush=True)
    if any(e.status == "cancelled" for e in entries):
        return EXIT_CANCELLED
    codes = {e.code for e in entries if e.code}
    return next((code for code in _SEVERITY if code in codes), EXIT_OK)


def _batch_one(args: argparse.Namespace, options: Any, source: Path, out_dir: Path, taken: set[Path],
               connected: Any) -> Any:
    """One input of a batch: planned, skipped when its output is already finished, else run (resumed
    from its checkpoint when a previous batch stopped in it); its entry in the report."""
    import time

    from vsr.job import batch, checkpoint, estimator_for, plan, run

    started = time.monotonic()
    output: Path | None = None
    ran = False
    try:
        job = plan(source, options, estimator=estimator_for(options, on_measure=_say_measuring))
        output = batch.output_for(source, out_dir, job.container_suffix, taken)
        job = plan(source, options, estimator=estimator_for(options), output=output)
        if batch.finished(job, output):
            return batch.BatchEntry(str(source), str(output), "skipped", "already done (verified)",
                                    time.monotonic() - started)
        folder = checkpoint.checkpoint_dir_for(output)
        ran = True
        with _progress(job.frames, scene_cuts=job.temporal) as bar, _CtrlC() as cancel:
            if connected is not None:
                result = _batch_on_workers(args, job, output, folder, connected, bar, cancel)
            else:
                resume = checkpoint.load(folder) if checkpoint.exists(folder) else None
                result = run(job, output, on_progress=bar.update, cancel=cancel, checkpoint_dir=folder, resume=resume)
        return batch.BatchEntry(str(source), str(output), "done", f"{result.frames} frames, verified",
                                time.monotonic() - started)
    except BaseException as exc:  # noqa: BLE001 - every input gets its line; the batch goes on
        code, message = describe_error(exc)
        if code == EXIT_INTERNAL:
            logger.error("unexpected error on %s", source, exc_info=exc)
        status = "cancelled" if code == EXIT_CANCELLED else ("failed" if ran or code in (EXIT_INTERNAL, EXIT_JOB)
                                                             else "refused")
        return batch.BatchEntry(str(source), str(output) if output else None, status, message,
                                time.monotonic() - started, code)


def _batch_on_workers(args: argparse.Namespace, job: Any, output: Path, folder: Path, connected: Any, bar: Any,
                      cancel: threading.Event) -> Any:
    """One batch video cut into parts on the batch's workers (resumed when a previous batch stopped in it)."""
    from vsr.job import parallel
    from vsr.job.parts import DEFAULT_WARMUP

    parts = parallel.plan_parallel(job, connected.workers, segment_seconds=_positive(args.segment_seconds,
                                   "--segment-seconds"), warmup=DEFAULT_WARMUP if args.warmup_frames is None
                                   else args.warmup_frames,
                                   shared_dir=Path(args.shared_dir) if args.shared_dir else None, cancel=cancel,
                                   seed=parallel.saved_seed(folder))
    return parallel.run_parallel(parts, connected, output, folder, on_progress=bar.update, cancel=cancel,
                                 resume=parallel.is_parallel(folder))


def _upscale_on_workers(args: argparse.Namespace, job: Any, output: Path, folder: Path) -> int:
    """``vsr upscale --workers/--cluster``: the video cut into parts on Ray workers (vsr.job.parallel)."""
    from vsr.job import cluster as ray_cluster
    from vsr.job import parallel
    from vsr.job.parts import DEFAULT_WARMUP

    seconds = _positive(args.segment_seconds, "--segment-seconds")
    warmup = DEFAULT_WARMUP if args.warmup_frames is None else args.warmup_frames
    if warmup < 0:
        raise OptionsError(f"--warmup-frames must be 0 or more; got {warmup}.")
    shared = Path(args.shared_dir) if args.shared_dir else None
    if shared is not None and not shared.is_dir():
        raise OptionsError(f"--shared-dir {shared}: no such folder. Create it (on a disk every worker mounts).")
    from vsr.model.engines import clear_processors

    clear_processors()  # the plan's timing run may have loaded the model here: the workers need the GPU memory
    connected = ray_cluster.connect(args.cluster, args.workers, verbose=logging.getLogger().level <= logging.INFO)
    try:
        with _CtrlC() as cancel:
            parts = parallel.plan_parallel(job, connected.workers, segment_seconds=seconds, warmup=warmup,
                                           shared_dir=shared, cancel=cancel,
                                           seed=parallel.saved_seed(folder) if args.resume else None)
            print(parts.job.to_text(), flush=True)
            print(parts.to_text(), flush=True)
            with _progress(job.frames, scene_cuts=False) as bar:
                try:
                    result = parallel.run_parallel(parts, connected, output, folder, on_progress=bar.update,
                                                   cancel=cancel, resume=args.resume)
                except KeyboardInterrupt:
                    raise _interrupted(folder) from None
    finally:
        connected.close()
    print(done_line(result, parts.job), flush=True)
    print(result.report.to_text(), flush=True)
    return EXIT_OK


def _positive(value: str | None, flag: str) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = 0.0
    if not number > 0:
        raise OptionsError(f"{flag} must be a positive number of seconds; got {value!r}.")
    return number


def _saved(folder: Path) -> JobCheckpoint | None:
    """The checkpoint kept in ``folder``; None when there is none or it cannot be read."""
    from vsr.job import checkpoint
    from vsr.job.errors import JobError

    if not checkpoint.exists(folder):
        return None
    try:
        return checkpoint.load(folder)
    except JobError:
        return None


def _leftover_checkpoint(folder: Path, *, resume: bool, overwrite: bool) -> None:
    """A previous run's checkpoint: kept for --resume, removed with --overwrite, else exit 2 naming it."""
    from vsr.job import checkpoint
    from vsr.job.errors import CheckpointFound

    if resume or not folder.exists():
        return
    saved = _saved(folder)
    if saved is not None:
        where = f"a previous run stopped at {saved.where()}"
    elif checkpoint.exists(folder):
        where = "a previous run stopped (its checkpoint cannot be read)"
    else:
        where = "a previous run stopped"
    if overwrite:
        checkpoint.remove(folder)
        print(f"Removed:  the checkpoint in {folder} ({where}); starting over", flush=True)
        return
    raise CheckpointFound(f"{folder}: {where}; add --resume to continue, or --overwrite to start over.", folder)


def _interrupted(folder: Path) -> BaseException:
    """A second Ctrl-C: the job stopped at once, its last checkpoint (if any) kept."""
    from vsr.job.errors import JobCancelled

    saved = _saved(folder)
    if saved is not None:
        return JobCancelled("interrupted", checkpoint=folder, done=saved.next_index,
                            total=max(saved.total, saved.next_index))
    return KeyboardInterrupt()


def _note_checkpoint(error: BaseException, folder: Path) -> None:
    """Add to a failure's message that the work done so far is kept, when a readable checkpoint is (a
    damaged one must not replace the job's own error)."""
    saved = _saved(folder)
    if saved is not None:
        error.add_note(f"The work up to {saved.where()} is kept in {folder}: fix the cause and run the same "
                       "command with --resume to go on.")


def done_line(result: Any, job: Any) -> str:
    """The line after a finished job: frames, time, speed; the seed and the scene cuts only for an
    engine whose result depends on them (``JobPlan.temporal``)."""
    line = (f"Done:     {result.frames} frames in {duration_text(result.seconds)} "
            f"({speed_text(result.frames / result.seconds if result.seconds > 0 else None)})")
    if job.temporal:
        cuts = ", ".join(str(c) for c in result.scene_cuts) or "none"
        line += f"; seed {result.seed}; scene cuts at frames: {cuts}"
    return line


def _say_measuring() -> None:
    print("Measuring:  this device's speed for the time estimate (a few seconds, once; cached afterwards)",
          file=sys.stderr, flush=True)


def _frames(args: argparse.Namespace) -> int:
    from vsr.job.frames import find_sequences, upscale_sequences
    from vsr.model.engines import get_processor

    options = build_options({
        "model_id": args.model_id, "steps": args.num_inference_steps, "seed": args.seed,
        "flow_weights": args.flow_weights, "device": args.device, "precision": args.precision,
        "flow_scale": args.flow_scale,
    })
    in_path, out_path = Path(args.in_path), Path(args.out_path)
    total = sum(len(s.frames) for s in find_sequences(in_path))  # check the layout before loading the model
    processor = get_processor(options)
    print(f"Engine:   {processor.describe()}", flush=True)
    with tqdm(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr) as bar, _CtrlC() as cancel, \
            logs.through(lambda line: bar.write(line, file=sys.stderr)):
        results = upscale_sequences(in_path, out_path, processor, options.seed,
                                    on_frame=lambda name, done, total: bar.update(1), cancel=cancel)
    for result in results:
        print(f"Sequence: {result.name}: {result.frames} frames -> {result.out_dir} (seed {result.seed})", flush=True)
    return EXIT_OK


def _probe(args: argparse.Namespace) -> int:
    import media

    info = media.probe(Path(args.input))
    print(json.dumps(info.to_dict(), indent=2, ensure_ascii=False), flush=True)
    return EXIT_OK


# ---------------------------------------------------------------------------------------------
# Terminal plumbing: the progress bar and Ctrl-C.


class _CounterBar(tqdm):
    """tqdm whose line ends with the job's own numbers (``counter``), not tqdm's rate and ETA."""

    counter = ""

    @property
    def format_dict(self) -> dict:
        return {**super().format_dict, "counter": self.counter}


class _ProgressBar:
    """Render ``ProgressEvent``s with tqdm on stderr: the stage, a bar, and the same words and numbers
    as the web page's status line (``vsr.job.progress.counter_text``). While the bar is drawn, log
    lines are printed above it (``vsr.logs.through``), never into it. ``scene_cuts``: say where the
    engine's temporal context was reset (only engines that have one)."""

    def __init__(self, total: int, *, scene_cuts: bool = True) -> None:
        self._bar = _CounterBar(total=total, unit="frame", dynamic_ncols=True, file=sys.stderr, desc="loading:",
                                bar_format="{desc} {percentage:3.0f}%|{bar}| {counter}")
        self._stage = "loading"
        self._scene_cuts = scene_cuts
        self._logs = logs.through(self.write)

    def write(self, line: str) -> None:
        self._bar.write(line, file=sys.stderr)

    def update(self, event: Any) -> None:
        if event.stage != self._stage:
            self._stage = event.stage  # a new stage is drawn at once, whatever tqdm's refresh interval
            self._bar.set_description_str(f"{event.stage}:", refresh=False)
            self._bar.counter = ""
            self._bar.refresh()
        if event.total != self._bar.total:
            self._bar.total = event.total
        if event.stage == "upscaling":
            self._bar.counter = counter_text(event.done, event.total, event.fps, event.eta_seconds) + (
                f" · {event.workers}" if event.workers else "")
        elif event.stage != "loading":
            self._bar.counter = status_text(event.stage, event.done, event.total, event.fps, event.eta_seconds)
        if event.done > self._bar.n:
            self._bar.update(event.done - self._bar.n)
        else:
            self._bar.refresh()
        if event.scene_cut is not None and self._scene_cuts:
            self.write(f"scene cut at frame {event.scene_cut}: temporal context reset")

    def __enter__(self) -> "_ProgressBar":
        self._logs.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._logs.__exit__(None, None, None)
        self._bar.close()


class _ProgressLog:
    """``_ProgressBar``'s words as plain lines, for a stderr that is not a terminal (a log file, nohup,
    Docker, CI), where a bar would be one endless line of carriage returns: a line at each stage, and
    while upscaling every ``EVERY_SECONDS`` or ``EVERY_FRACTION`` of the frames, and the last count."""

    EVERY_SECONDS = 5.0
    EVERY_FRACTION = 0.1

    def __init__(self, total: int, *, scene_cuts: bool = True) -> None:
        self._stage: str | None = None
        self._scene_cuts = scene_cuts
        self._shown = (0.0, -1)  # (monotonic time, frames done) of the last upscaling line
        self._pending: str | None = None  # an upscaling line not printed yet

    def write(self, line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    def update(self, event: Any) -> None:
        percent = f"{100 * event.done / event.total:.0f}%" if event.total else ""
        if event.stage == "upscaling":
            line = f"upscaling: {percent} {counter_text(event.done, event.total, event.fps, event.eta_seconds)}" + (
                f" · {event.workers}" if event.workers else "")
            now, (shown_at, shown_done) = time.monotonic(), self._shown
            if (event.done >= event.total or now - shown_at >= self.EVERY_SECONDS
                    or event.done - shown_done >= self.EVERY_FRACTION * event.total or self._stage != "upscaling"):
                self._shown, self._pending = (now, event.done), None
                self.write(line)
            else:
                self._pending = line
        elif event.stage != self._stage:
            if self._pending is not None:
                self.write(self._pending)
                self._pending = None
            words = status_text(event.stage, event.done, event.total, event.fps, event.eta_seconds, event.message)
            self.write(f"{event.stage}: {percent} {words}".rstrip())
        self._stage = event.stage
        if event.scene_cut is not None and self._scene_cuts:
            self.write(f"scene cut at frame {event.scene_cut}: temporal context reset")

    def __enter__(self) -> "_ProgressLog":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pending is not None:
            self.write(self._pending)


def _progress(total: int, *, scene_cuts: bool) -> "_ProgressBar | _ProgressLog":
    """A tqdm bar on a terminal; plain lines when stderr is a file or a pipe."""
    tty = getattr(sys.stderr, "isatty", None)
    return (_ProgressBar if tty is not None and tty() else _ProgressLog)(total, scene_cuts=scene_cuts)


class _CtrlC:
    """The first Ctrl-C asks the job to stop cleanly (a ``threading.Event``); a second one interrupts."""

    def __init__(self) -> None:
        self.cancel = threading.Event()
        self._previous: Callable | int | None = None

    def _handle(self, signum: int, frame: object) -> None:
        if self.cancel.is_set():
            raise KeyboardInterrupt
        self.cancel.set()
        print("\nvsr: stopping after the current frame (Ctrl-C again to interrupt at once)...", file=sys.stderr,
              flush=True)

    def __enter__(self) -> threading.Event:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self.cancel

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
