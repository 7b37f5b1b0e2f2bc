"""Upscale a video with the Python API: frame by frame, then as a whole file.

Run: python docs/examples/python_api.py clip.mp4
"""

import sys
from pathlib import Path

import av
from PIL import Image

from vsr import Upscaler, upscale_file

clip = Path(sys.argv[1] if len(sys.argv) > 1 else "clip.mp4")

# Frame by frame: each call is the next frame of one video (the temporal context carries over).
# For the diffusion model: Upscaler.from_pretrained("Jamichsu/Stream-DiffVSR", device="cuda", precision="fp16")
up = Upscaler.from_pretrained(engine="bicubic", seed=0)
with av.open(str(clip)) as container:
    for frame in container.decode(video=0):
        lr = frame.to_ndarray(format="rgb24")  # numpy (H, W, 3) uint8
        hr = up(lr)  # numpy (4H, 4W, 3) uint8
        print(f"{lr.shape} -> {hr.shape}")
up.reset()  # a new video: the next frame is a first frame again

big = up(Image.new("RGB", (32, 24), "teal"))  # a PIL image in, a PIL image out
print(f"PIL {big.size}")

# A whole file: decode, upscale, encode with the audio, verify; returns the verification report.
report = upscale_file(clip, clip.with_name(f"{clip.stem}-4x.mp4"), engine="bicubic",
                      on_progress=lambda event: print(event.stage, event.done, event.total))
print(report.to_text())
