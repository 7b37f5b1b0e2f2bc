"""The web app end to end through gradio_client: the real server in a subprocess, real uploads.

The server is configured like an operator would (environment variables): the golden tiny model,
folders under the test's tmp dir, and small limits (uploads up to 1 MB, 3 s of video) so the
limit errors can be reached with tiny files.
"""

from __future__ import annotations

import os
import re
import threading
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx
import numpy as np
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_harness import AppServer
from media_factory import make_video
from vsr.model.bicubic import BicubicUpscaler

pytestmark = pytest.mark.slow  # starts the server (about 10 s) once for the module

RATE = Fraction(30000, 1001)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_dir):
    app = AppServer(
        base=tmp_path_factory.mktemp("app-client"),
        fixture_dir=fixture_dir,
        cache_dir=tmp_path_factory.getbasetemp() / "app-calibration",
        extra_env={"STREAM_DIFFVSR_MAX_UPLOAD_MB": "1", "STREAM_DIFFVSR_MAX_DURATION": "3"},
    ).start()
    yield app
    app.stop()


@pytest.fixture
def client(server):
    return Client(server.url, verbose=False, download_files=str(server.base / "downloads"))


def job_args(video: Path, engine: str = "bicubic", seed: str = "", size: str = "4x") -> tuple:
    """The /upscale, /sample and /plan inputs: video, engine, size, start, end, steps, seed, codec, crf, scene cuts."""
    return (handle_file(str(video)), engine, size, "", "", 4, seed, "h264", 18, True)


def decode(path: Path) -> tuple[list[np.ndarray], av.video.stream.VideoStream, list]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        rate = video.average_rate
        audio = [(s.codec_context.name, float(s.duration * s.time_base)) for s in container.streams.audio]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
        return frames, (video.width, video.height, rate), audio


def check_file(server: AppServer, downloaded: str, frames: int, size: tuple[int, int]) -> list[np.ndarray]:
    """The downloaded file: its size, frames, exact rate, audio; and it is the job folder's file."""
    path = Path(downloaded)
    pictures, (width, height, rate), audio = decode(path)
    assert (width, height) == size
    assert len(pictures) == frames
    assert rate == RATE
    assert [codec for codec, _ in audio] == ["aac"]
    assert abs(audio[0][1] - frames / RATE) < 0.05, "the audio track lasts as long as the video"
    content = path.read_bytes()
    served = [d / path.name for d in server.job_dirs() if (d / path.name).is_file()]
    assert any(file.read_bytes() == content for file in served), "the download is the job folder's file"
    return pictures


def test_bicubic_job_keeps_frames_rate_and_audio(server, client, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", 64, 48, RATE, 12)
    status, _slider, video, download, report, _notice, _engine = client.predict(*job_args(clip),
                                                                               api_name="/upscale")
    assert status.startswith("Done in") and "12 frames" in status
    pictures = check_file(server, download["value"], 12, (256, 192))
    assert Path(video).name == "clip_4x.mp4"  # H.264 plays in browsers: no separate preview
    assert report.startswith("### Verification passed: clip_4x.mp4")
    for check in ("frames", "frame rate", "audio track 1 sync"):
        assert f"✓ **{check}**" in report
    assert "FAILED" not in report
    # The pixels are the input's, enlarged 4x (within the two lossy encodes).
    with av.open(str(clip)) as source:
        inputs = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    engine = BicubicUpscaler()
    for low, high in zip(inputs, pictures):
        assert np.abs(engine.process(low).astype(int) - high.astype(int)).mean() < 4.0


def _system_temp_folders() -> set[str]:
    root = Path(os.environ.get("TMPDIR") or "/tmp")
    return {entry.name for entry in root.iterdir() if re.fullmatch(r"[0-9a-f]{40}", entry.name)}


def test_downloads_leave_nothing_in_the_system_temp_folder(server, client, tmp_path):
    """gradio_client downloads each file through a new folder in the system temp folder and leaves it
    there, empty; the tests' temp files stay in pytest's own folder (tests/conftest.py)."""
    clip = make_video(tmp_path / "temp.mp4", 64, 48, RATE, 6)
    before = _system_temp_folders()
    status, *_ = client.predict(*job_args(clip), api_name="/upscale")
    assert status.startswith("Done in")
    assert not _system_temp_folders() - before


def test_job_folders_have_unguessable_names(server, client, tmp_path):
    clip = make_video(tmp_path / "again.mp4", 64, 48, RATE, 6)
    before = set(server.job_dirs())
    client.predict(*job_args(clip), api_name="/upscale")
    new = set(server.job_dirs()) - before
    assert len(new) == 1
    assert re.fullmatch(r"job-[A-Za-z0-9_-]{22}", new.pop().name)


def test_plan_offers_only_sizes_the_model_can_reach(client, tmp_path):
    clip = make_video(tmp_path / "wide.mp4", 320, 180, RATE, 6)
    plan, sizes, notice, _engine = client.predict(*job_args(clip), api_name="/plan")
    assert "**320x180** → **1280x720**, 4x" in plan and "6 frames" in plan
    assert "on this machine" in plan and "audio #1: aac, copied unchanged" in plan
    assert [value for _, value in sizes["choices"]] == ["4x", "720"]
    assert "1080p, 1440p, 4K" in sizes["info"] and "at most 720p" in sizes["info"]
    assert notice["visible"] is False


def test_plan_with_a_preset_size(client, tmp_path):
    clip = make_video(tmp_path / "wide.mp4", 320, 180, RATE, 6)
    plan, sizes, _notice, _engine = client.predict(*job_args(clip, size="720"), api_name="/plan")
    assert "**320x180** → **1280x720**," in plan and "resized with Lanczos" not in plan
    assert sizes["value"] == "720"


@pytest.mark.parametrize("kind", ["text", "zero-frames", "too-long"])
def test_bad_uploads_get_a_clear_error(client, tmp_path, kind):
    if kind == "text":
        bad = tmp_path / "notes.mp4"
        bad.write_text("this is a shopping list, not a video\n" * 20)
        expected = r"notes\.mp4: not a video FFmpeg can read .* Check that it is a complete video file"
    elif kind == "zero-frames":
        bad = make_video(tmp_path / "empty.mp4", 64, 48, RATE, 0, audio=None)
        expected = r"empty\.mp4: .*(no video|no frame|no streams)"
    elif kind == "too-long":
        bad = make_video(tmp_path / "long.mp4", 64, 48, 10, 40)  # 4 s, the server allows 3 s
        expected = r"long\.mp4: 4\.0 s of video is over the limit of 3\.0 s\. Trim it"
    with pytest.raises(AppError) as caught:
        client.predict(*job_args(bad), api_name="/plan")
    message = str(caught.value)
    assert re.search(expected, message), message
    assert "Traceback" not in message and "/gradio/" not in message  # no server paths, no traceback
    with pytest.raises(AppError):  # the job refuses the same file the same way
        client.predict(*job_args(bad), api_name="/upscale")


def test_uploads_over_the_limit_are_refused(server, client, tmp_path):
    huge = tmp_path / "huge.mp4"
    huge.write_bytes(os.urandom(1_300_000))  # the server accepts uploads up to 1 MB
    with pytest.raises(ValueError, match="exceeds the maximum file size of 1048576 bytes"):
        client.predict(*job_args(huge), api_name="/plan")  # the client reads the limit from the server
    with huge.open("rb") as data:  # and the server itself refuses a client that does not check
        response = httpx.post(f"{server.url}gradio_api/upload", files={"files": ("huge.mp4", data, "video/mp4")})
    assert response.status_code == 413, response.text
    assert "1 MB" in response.text or "1mb" in response.text.lower() or "1048576" in response.text


def test_tiny_model_job_is_seeded_and_repeatable(server, client, tmp_path):
    clip = make_video(tmp_path / "model.mp4", 64, 48, RATE, 4)
    outputs = []
    for _ in range(2):
        status, _slider, _video, download, report, notice, _engine = client.predict(
            *job_args(clip, engine="stream-diffvsr", seed="7"), api_name="/upscale")
        assert "Seed 7" in status and report.startswith("### Verification passed")
        outputs.append(check_file(server, download["value"], 4, (256, 192)))
    assert all(np.array_equal(a, b) for a, b in zip(*outputs)), "the same seed gives the same video"
    # It is the diffusion model's output (random weights here), not a bicubic enlargement.
    with av.open(str(clip)) as source:
        first = next(source.decode(video=0)).to_ndarray(format="rgb24")
    assert np.abs(BicubicUpscaler().process(first).astype(int) - outputs[0][0].astype(int)).mean() > 10


def test_trimmed_lossless_job_plays_through_a_browser_preview(server, client, tmp_path):
    clip = make_video(tmp_path / "trim.mp4", 64, 48, RATE, 24)
    args = (handle_file(str(clip)), "bicubic", "4x", "0.2", "0.5", 4, "", "ffv1", 18, True)  # crf: no use in FFV1
    status, _slider, video, download, report, _notice, _engine = client.predict(*args, api_name="/upscale")
    assert report.startswith("### Verification passed: trim_4x.mkv")
    real = Path(download["value"])
    assert real.name == "trim_4x.mkv"
    with av.open(str(real)) as result:
        stream = result.streams.video[0]
        assert stream.codec_context.name == "ffv1" and stream.average_rate == RATE
        frames = sum(1 for _ in result.decode(video=0))
    assert frames == round(Fraction(3, 10) * RATE) == 9 and f"{frames} frames" in status
    with av.open(video) as preview:  # FFV1 does not play in browsers: the page shows an H.264 copy
        assert preview.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in preview.decode(video=0)) == frames


def test_sample_runs_two_seconds_from_the_middle(server, client, tmp_path):
    clip = make_video(tmp_path / "three.mp4", 64, 48, 10, 30)  # 3 s at 10 fps
    status, _slider, _video, download, report, _notice, _engine = client.predict(*job_args(clip),
                                                                                 api_name="/sample")
    assert "20 frames" in status
    pictures, (width, height, rate), audio = decode(Path(download["value"]))
    assert len(pictures) == 20 and (width, height, rate) == (256, 192, 10) and len(audio) == 1
    with av.open(str(clip)) as source:
        inputs = [frame.to_ndarray(format="rgb24") for frame in source.decode(video=0)]
    engine = BicubicUpscaler()

    def distance(index: int) -> float:
        return float(np.abs(engine.process(inputs[index]).astype(int) - pictures[0].astype(int)).mean())

    assert distance(5) < 4.0 < distance(0), "the sample starts at 0.5 s: the middle 2 s of 3 s"


def test_cancel_stops_the_job_and_leaves_no_files(server, client, tmp_path):
    clip = make_video(tmp_path / "cancel.mp4", 64, 48, RATE, 60)
    before = set(server.job_dirs())
    job = client.submit(*job_args(clip, engine="stream-diffvsr"), api_name="/upscale")
    deadline = time.monotonic() + 120
    while not any(str(out[0]).startswith("Upscaling frame 2") for out in job.outputs()):
        assert time.monotonic() < deadline and not job.done(), f"no progress: {job.outputs()}\n{server.log()}"
        time.sleep(0.1)
    assert client.predict(api_name="/cancel") == "Cancelling…"
    status = job.result()[0]
    assert status == "Cancelled. Nothing was kept."
    assert set(server.job_dirs()) == before
    assert server.leftovers() == []
    frames_done = max(int(m.group(1)) for out in job.outputs()
                      if (m := re.match(r"Upscaling frame (\d+)", str(out[0]))))
    assert frames_done < 10, "cancel stops within a frame or so, not at the end"


def test_cancel_without_a_job_says_so(client):
    assert client.predict(api_name="/cancel") == "Nothing is running."


def test_five_clients_at_once_all_finish_or_wait_with_a_position(server, tmp_path):
    clip = make_video(tmp_path / "crowd.mp4", 160, 120, RATE, 30)
    clients = [Client(server.url, verbose=False, download_files=str(tmp_path / f"dl{i}")) for i in range(5)]
    results: dict[int, object] = {}
    ranks: dict[int, list[int]] = {i: [] for i in range(5)}
    ready = threading.Barrier(5)

    def visitor(i: int) -> None:
        try:
            ready.wait(timeout=30)
            job = clients[i].submit(*job_args(clip, seed=str(i)), api_name="/upscale")
            while not job.done():
                status = job.status()
                if status.rank is not None:
                    ranks[i].append(status.rank)
                time.sleep(0.02)
            results[i] = job.result()
        except Exception as error:  # noqa: BLE001 - reported by the assertion below
            results[i] = error

    threads = [threading.Thread(target=visitor, args=(i,)) for i in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    errors = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert not errors, errors
    assert len(results) == 5
    for i, result in results.items():
        assert result[0].startswith("Done in") and "Seed" not in result[0]  # bicubic: no seed to repeat
        check_file(server, result[3]["value"], 30, (640, 480))
    assert len({result[3]["value"] for result in results.values()}) == 5  # each visitor got their own file
    waited = [i for i in ranks if any(rank >= 1 for rank in ranks[i])]
    assert waited, f"one job at a time: some visitors must have waited in line with a position ({ranks})"
