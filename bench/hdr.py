"""What happens to the levels of a 10-bit PQ (HDR10) picture on its way through the job (issue 20).

A 64x48 HEVC Main 10 HDR10 gradient (``tests/hdr_factory.py``: PQ, BT.2020, mastering display and
content light level; every pixel another level) is read as the job reads it, upscaled 4x by bicubic
and by the tiny fixture model (``tests/fixtures/stream-diffvsr-tiny``, CPU, fp32), and the model's
frames are encoded as the job does (HEVC Main 10) and read back. For each step: the distinct
levels of the green channel (more than 256 means more than 8 bits survived), and, for the model,
the same frames rounded to 8 bits first (the old path) for comparison, and the distinct 10-bit luma
codes the HEVC Main 10 output really stores. It also gives how far the
model moved the PQ-coded values from bicubic's (mean and 99th percentile, in 10-bit PQ code
values), and what that is in cd/m2 at the gradient's middle: the model upscales the coded values as
they are, as any upscaler does; it never linearises or tone-maps them.

Run: ``.venv/bin/python bench/hdr.py``. Prints a markdown table and writes ``bench/results/hdr.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

# Run as a script, Python puts bench/ first on the path; drop exactly that entry (see bench/media.py).
if sys.path and Path(sys.path[0]).resolve() == Path(__file__).resolve().parent:
    sys.path.pop(0)
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # this checkout's vsr and media, installed or not
sys.path.insert(0, str(ROOT / "tests"))  # hdr_factory makes the clip, fixture_files finds the fixture

import av  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

import fixture_files  # noqa: E402
from bench import machine  # noqa: E402  (the CPU and the date beside every figure)
import media  # noqa: E402
from hdr_factory import make_hdr_video  # noqa: E402
from media.colour import to_8bit  # noqa: E402
from vsr.model.bicubic import BicubicUpscaler  # noqa: E402
from vsr.model.engines import load_engine  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "hdr.json"
WIDTH, HEIGHT, FRAMES, SEED = 64, 48, 3, 1234


def levels(rgb: np.ndarray) -> int:
    return int(np.unique(rgb[..., 1]).size)


def pq_nits(code: np.ndarray) -> np.ndarray:
    """SMPTE ST 2084 EOTF: full-range code values 0..1 -> cd/m2."""
    m1, m2, c1, c2, c3 = 2610 / 16384, 2523 / 4096 * 128, 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    p = np.power(np.clip(code, 0, 1), 1 / m2)
    return 10000 * np.power(np.maximum(p - c1, 0) / (c2 - c3 * p), 1 / m1)


def measure(work: Path) -> dict:
    torch.set_num_threads(2)
    source = make_hdr_video(work / "hdr10.mkv", WIDTH, HEIGHT, FRAMES)
    info = media.probe(source)
    with media.FrameReader(source, info=info) as reader:
        frames = [f for f in reader]
    fixture = fixture_files.fixture_dir()
    model = load_engine("stream-diffvsr", model_id=str(fixture / "model"),
                        flow_weights=fixture / "raft_large.safetensors", device="cpu", precision="fp32", seed=SEED)
    bicubic = BicubicUpscaler()
    model.start_stream(SEED)
    deep = [model.process(f.rgb) for f in frames]
    model.start_stream(SEED)
    rounded = [model.process(to_8bit(f.rgb)) for f in frames]
    smooth = [bicubic.process(f.rgb) for f in frames]
    out = work / "up.mp4"
    with media.VideoWriter(out, info, 4 * WIDTH, 4 * HEIGHT, media.EncodeSettings("hevc")) as writer:
        for frame, picture in zip(frames, deep):
            writer.write(picture, frame.pts, frame.duration)
        writer.finish()
    with media.FrameReader(out) as reader:
        encoded = next(iter(reader)).rgb
    with av.open(str(out)) as container:  # the stored 10-bit luma codes themselves
        luma = next(container.decode(video=0)).to_ndarray()[: 4 * HEIGHT]
    back = media.probe(out).video
    # How far the model moved the coded values from bicubic's, in 10-bit code values and in cd/m2.
    ten = 1023 / 65535
    moved = np.abs(deep[-1].astype(np.float64) - smooth[-1].astype(np.float64)) * ten
    middle = np.median(smooth[-1][..., 1]) / 65535
    step = pq_nits(np.array([middle + 1 / 1023]))[0] - pq_nits(np.array([middle]))[0]
    return {
        "source": f"{WIDTH}x{HEIGHT} {info.video.pix_fmt} {media.hdr_label(info.video)}",
        "levels_in": levels(frames[-1].rgb),
        "levels_bicubic": levels(smooth[-1]),
        "levels_model": levels(deep[-1]),
        "levels_model_from_8_bits": levels(rounded[-1]),
        "levels_after_hevc_main10": levels(encoded),
        "luma_codes_after_hevc_main10": int(np.unique(luma).size),
        "output": f"{back.codec} {back.pix_fmt} {back.color_transfer} {back.color_primaries}, "
                  f"HDR10 metadata {'kept' if back.hdr == info.video.hdr else 'CHANGED'}",
        "moved_mean_code10": float(moved.mean()),
        "moved_p99_code10": float(np.percentile(moved, 99)),
        "middle_nits": float(pq_nits(np.array([middle]))[0]),
        "nits_per_code10_at_middle": float(step),
        "torch": torch.__version__,
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="bench-hdr-") as folder:
        result = {"machine": machine.describe(), **measure(Path(folder))}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"Measured on {machine.label(result['machine'])}.")
    print(f"source: {result['source']}; output: {result['output']}")
    print("| step | distinct green levels |")
    print("|---|---|")
    for key, label in (("levels_in", "decoded 10-bit PQ source (uint16)"), ("levels_bicubic", "bicubic 4x"),
                       ("levels_model", "fixture model 4x"),
                       ("levels_model_from_8_bits", "fixture model 4x, input rounded to 8 bits (the old path)"),
                       ("levels_after_hevc_main10", "model output encoded HEVC Main 10 and decoded"),
                       ("luma_codes_after_hevc_main10", "... its distinct stored 10-bit luma codes")):
        print(f"| {label} | {result[key]} |")
    print()
    print(f"model vs bicubic, PQ-coded: mean {result['moved_mean_code10']:.1f}, 99th percentile "
          f"{result['moved_p99_code10']:.1f} 10-bit code values; one code value at the gradient's middle "
          f"({result['middle_nits']:.0f} cd/m2) is {result['nits_per_code10_at_middle']:.2f} cd/m2")


if __name__ == "__main__":
    main()
