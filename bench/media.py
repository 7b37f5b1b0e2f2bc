"""Media-layer benchmark: decode + encode + mux throughput with an identity processor.

Side by side, on the same generated clips (moving texture + AAC stereo audio) and the same
encoder settings (libx264, our defaults: CRF 18, preset medium, yuv420p):

- ``stream``: this project's path: ``probe`` -> ``FrameReader`` (decode thread, bounded queue)
  -> identity -> ``VideoWriter`` (encode, audio stream copy, atomic rename).
- ``png``: the reference approach of many upscaling scripts, reproduced with the same libraries:
  every frame decoded and written to a PNG file (PIL), read back, the "result" written as another
  PNG, read back and encoded; the audio decoded to WAV and re-encoded to AAC.

Memory: the streaming path's peak RSS for 1080p clips of two lengths (each run in a fresh process),
to show that memory does not grow with the video's length.

Run: ``.venv/bin/python bench/media.py`` (``--quick`` for a smoke run). Prints a markdown table and
writes ``bench/results/media.json``.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

# Run as a script (``python bench/media.py``, as ``make bench`` does), Python puts bench/ first on
# the path, where this file would shadow the ``media`` package it measures. Drop exactly that entry.
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's vsr and media, installed or not

import av  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from media import EncodeSettings, FrameReader, VideoWriter, probe  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)

RESULTS = Path(__file__).resolve().parent / "results" / "media.json"
RATE = Fraction(30000, 1001)
SIZES = {"480p": (854, 480), "1080p": (1920, 1080), "4K": (3840, 2160)}


def make_clip(path: Path, width: int, height: int, frames: int) -> Path:
    """A deterministic clip: a noise texture panning 3 px/frame (hard to compress, like film grain
    on real footage), H.264 CRF 18 + a 48 kHz stereo AAC tone of the same length."""
    rng = np.random.default_rng(0)
    texture = rng.integers(0, 256, (height // 4 + 1, (width + 3 * frames) // 4 + 2, 3), dtype=np.uint8)
    texture = np.repeat(np.repeat(texture, 4, axis=0), 4, axis=1)
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE, options={"crf": "18", "preset": "veryfast"})
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = out.add_stream("aac", rate=48000)
        audio.layout = "stereo"
        for i in range(frames):
            rgb = np.ascontiguousarray(texture[:height, 3 * i : 3 * i + width])
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        samples = int(frames / RATE * 48000)
        t = np.arange(samples) / 48000
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for start in range(0, samples, 1024):
            chunk = np.stack([tone[start : start + 1024]] * 2)
            aframe = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="stereo")
            aframe.sample_rate, aframe.pts = 48000, start
            out.mux(audio.encode(aframe))
        out.mux(audio.encode(None))
    return path


def run_stream(src: Path, dest: Path) -> int:
    """This project's streaming path; returns the number of frames written."""
    info = probe(src)
    v = info.video
    with FrameReader(src, info=info) as frames, VideoWriter(dest, info, v.width, v.height, EncodeSettings()) as out:
        for frame in frames:
            out.write(frame.rgb, frame.pts, frame.duration)  # identity processor
        return out.finish().frames


def run_png(src: Path, dest: Path, work: Path) -> int:
    """The PNG round trip, step by step, as the reference scripts do it."""
    frames_in, frames_out = work / "frames_in", work / "frames_out"
    frames_in.mkdir()
    frames_out.mkdir()
    wav = work / "audio.wav"
    # 1. Decode every frame to a PNG; decode the audio to WAV.
    with av.open(str(src)) as c:
        rate = c.streams.video[0].average_rate
        for n, frame in enumerate(c.decode(video=0)):
            frame.to_image().save(frames_in / f"{n:06d}.png")
    with av.open(str(src)) as c, av.open(str(wav), "w") as w:
        a_in = c.streams.audio[0]
        a_out = w.add_stream("pcm_s16le", rate=a_in.sample_rate)
        a_out.layout = a_in.layout
        resampler = av.AudioResampler(format="s16", layout=a_in.layout, rate=a_in.sample_rate)
        for frame in c.decode(a_in):
            for r in resampler.resample(frame):
                w.mux(a_out.encode(r))
        w.mux(a_out.encode(None))
    # 2. "Process": read each PNG, identity, write the result as a PNG.
    names = sorted(p.name for p in frames_in.iterdir())
    for name in names:
        rgb = np.asarray(Image.open(frames_in / name).convert("RGB"))
        Image.fromarray(rgb).save(frames_out / name)
    # 3. Encode the result PNGs and re-encode the audio to AAC.
    with av.open(str(dest), "w") as out, av.open(str(wav)) as audio_in:
        first = Image.open(frames_out / names[0])
        video = out.add_stream("libx264", rate=rate, options=EncodeSettings().codec_options())
        video.width, video.height, video.pix_fmt = first.width, first.height, "yuv420p"
        a_in = audio_in.streams.audio[0]
        aac = out.add_stream("aac", rate=a_in.sample_rate)
        aac.layout = "stereo"  # the WAV reads back as "2 channels" (no channel mask)
        for n, name in enumerate(names):
            frame = av.VideoFrame.from_ndarray(np.asarray(Image.open(frames_out / name).convert("RGB")), format="rgb24")
            frame.pts = n
            out.mux(video.encode(frame))
        out.mux(video.encode(None))
        resampler = av.AudioResampler(format="fltp", layout="stereo", rate=a_in.sample_rate, frame_size=1024)
        for frame in audio_in.decode(a_in):
            for r in resampler.resample(frame):
                out.mux(aac.encode(r))
        for r in resampler.resample(None):
            out.mux(aac.encode(r))
        out.mux(aac.encode(None))
    return len(names)


def child(args: argparse.Namespace) -> None:
    """One measurement in this (fresh) process; prints a JSON line."""
    src, dest = Path(args.src), Path(args.dest)
    t0 = time.perf_counter()
    if args.child == "stream":
        frames = run_stream(src, dest)
    else:
        with tempfile.TemporaryDirectory(dir=dest.parent) as work:
            frames = run_png(src, dest, Path(work))
    seconds = time.perf_counter() - t0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"frames": frames, "seconds": seconds, "fps": frames / seconds, "peak_rss_mb": peak_mb}))


def measure(mode: str, src: Path, dest: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--src", str(src), "--dest", str(dest)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the {mode} run on {src.name} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny clips, to check the bench runs")
    parser.add_argument("--child", choices=["stream", "png"], help=argparse.SUPPRESS)
    parser.add_argument("--src", help=argparse.SUPPRESS)
    parser.add_argument("--dest", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    frames = {"480p": 60, "1080p": 24, "4K": 6} if not args.quick else {"480p": 8, "1080p": 4, "4K": 2}
    memory_lengths = (24, 96) if not args.quick else (4, 8)
    rows, memory = [], []
    with tempfile.TemporaryDirectory(prefix="bench-media-") as tmp:
        work = Path(tmp)
        for label, (w, h) in SIZES.items():
            src = make_clip(work / f"{label}.mp4", w, h, frames[label])
            stream = measure("stream", src, work / f"{label}-stream.mp4")
            png = measure("png", src, work / f"{label}-png.mp4")
            rows.append({"size": label, "width": w, "height": h, "frames": frames[label], "stream": stream, "png": png,
                         "speedup": stream["fps"] / png["fps"]})
            print(f"{label}: stream {stream['fps']:.2f} fps, png {png['fps']:.2f} fps", file=sys.stderr)
        for n in memory_lengths:
            src = make_clip(work / f"mem-{n}.mp4", 1920, 1080, n)
            memory.append({"frames": n, **measure("stream", src, work / f"mem-{n}-out.mp4")})
    result = {
        "machine": {**machine.describe(), "pyav": av.__version__},
        "encoder": "libx264 CRF 18 preset medium yuv420p (both paths)",
        "throughput": rows,
        "memory_1080p": memory,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Measured on {machine.label(result['machine'])}.\n")
    print("| input | frames | streaming (fps) | PNG round trip (fps) | speed-up | streaming peak RSS | PNG peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} {r['width']}x{r['height']} | {r['frames']} | {r['stream']['fps']:.2f} | "
              f"{r['png']['fps']:.2f} | {r['speedup']:.1f}x | {r['stream']['peak_rss_mb']:.0f} MB | "
              f"{r['png']['peak_rss_mb']:.0f} MB |")
    print()
    print("| 1080p length | streaming peak RSS |")
    print("|---|---|")
    for m in memory:
        print(f"| {m['frames']} frames | {m['peak_rss_mb']:.0f} MB |")


if __name__ == "__main__":
    main()
