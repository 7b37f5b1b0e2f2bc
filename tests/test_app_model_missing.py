"""A server whose model cannot load: the page says why and how to fix it, and bicubic keeps working."""

from __future__ import annotations

from fractions import Fraction

import av
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError

from app_harness import AppServer
from media_factory import make_video

pytestmark = pytest.mark.slow  # starts a server (about 10 s)


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_dir):
    base = tmp_path_factory.mktemp("app-no-model")
    app = AppServer(base=base, fixture_dir=fixture_dir, cache_dir=base / "cache",
                    extra_env={"STREAM_DIFFVSR_MODEL_ID": str(base / "no-such-model")}).start()
    yield app
    app.stop()


def args(video, engine):
    return (handle_file(str(video)), engine, "4x", "", "", 4, "", "h264", 18, True)


def test_the_plan_shows_the_notice_and_switches_to_bicubic(server, tmp_path):
    client = Client(server.url, verbose=False, download_files=str(tmp_path / "dl"))
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30000, 1001), 6)
    plan, _sizes, notice, engine = client.predict(*args(clip, "stream-diffvsr"), api_name="/plan")
    assert notice["visible"] is True
    assert "could not be loaded" in notice["value"] and "no-such-model" in notice["value"]
    assert "The **Bicubic** engine still works" in notice["value"]
    assert engine == "bicubic" and "bicubic on cpu" in plan


def test_asking_for_the_model_says_why_and_bicubic_still_upscales(server, tmp_path):
    client = Client(server.url, verbose=False, download_files=str(tmp_path / "dl"))
    clip = make_video(tmp_path / "clip.mp4", 64, 48, Fraction(30000, 1001), 6)
    with pytest.raises(AppError) as caught:
        client.predict(*args(clip, "stream-diffvsr"), api_name="/upscale")
    message = str(caught.value)
    assert "no-such-model" in message and "press the button again to upscale with Bicubic" in message
    assert server.job_dirs() == []
    status, _slider, _video, download, report, _notice, _engine = client.predict(*args(clip, "bicubic"),
                                                                                api_name="/upscale")
    assert status.startswith("Done in") and report.startswith("### Verification passed")
    with av.open(download["value"]) as result:
        assert (result.streams.video[0].width, result.streams.video[0].height) == (256, 192)
        assert sum(1 for _ in result.decode(video=0)) == 6
