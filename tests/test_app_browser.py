"""The web app in a real browser: Playwright driving Debian's chromium against the real server.

A person's path through the page: load, upload, read the plan, start, watch the progress and the
before/after picture change, download and check the file; cancel a job; pick a bundled example.
Screenshots go to each test's temporary folder (look at them there); the README's picture
(docs/screenshot.png) is written only when VSR_SCREENSHOT names it (``make screenshot``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
from fractions import Fraction
from pathlib import Path

import av
import pytest
from playwright.sync_api import sync_playwright

from app_harness import AppServer
from media_factory import make_video

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
RATE = Fraction(30000, 1001)
LAPTOP = {"width": 1366, "height": 768}
"""A common laptop screen: the whole page, results included, should fit in about 1.7 of its heights."""
MAX_PAGE_HEIGHT = 1350  # (with Gradio's navbar of the Home and Live pages, about 48 px)
GRADIO_PROGRESS = ".progress-text, .meta-text, .meta-text-center, .progress-level, .eta-bar, .progress-bar"
"""Gradio's own progress overlay (gr.Progress and the queue's timer): the page shows its own status line instead."""


@pytest.fixture(scope="module")
def server(tmp_path_factory, fixture_dir):
    app = AppServer(base=tmp_path_factory.mktemp("app-browser"), fixture_dir=fixture_dir,
                    cache_dir=tmp_path_factory.getbasetemp() / "app-calibration").start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    if not CHROMIUM.exists():
        pytest.fail("Debian chromium is missing: run 'apt-get install -y chromium' (make test does it).")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server.url)
    page.wait_for_selector("#input-video")
    yield page
    context.close()


def text_of(page, selector: str) -> str:
    return page.locator(selector).inner_text()


def wait_for_text(page, selector: str, text: str, timeout_ms: int = 120_000) -> None:
    page.wait_for_function(
        "([selector, text]) => (document.querySelector(selector)?.innerText || '').includes(text)",
        arg=[selector, text], timeout=timeout_ms,
    )


def upload(page, clip: Path, output_size: str) -> None:
    page.locator("#input-video input[type=file]").set_input_files(str(clip))
    wait_for_text(page, "#plan", f"→ {output_size}")


def slider_sources(page) -> tuple[str | None, ...]:
    images = page.locator("#compare img")
    return tuple(images.nth(i).get_attribute("src") for i in range(images.count()))


def test_upload_upscale_watch_and_download(page, server, tmp_path):
    clip = make_video(tmp_path / "walk.mp4", 64, 48, RATE, 6)
    upload(page, clip, "256x192")
    plan = text_of(page, "#plan")
    assert "6 frames" in plan and "audio #1: aac, copied unchanged" in plan and "on this machine" in plan
    assert "at most 192p" in text_of(page, "body")  # the sizes it cannot reach are refused, with the reason

    page.locator("#upscale").click()
    wait_for_text(page, "#status", "Upscaling frame")
    assert " of 6 · " in text_of(page, "#status") and "frames/s" in text_of(page, "#status")
    pictures = set()
    while not page.locator("#download").is_visible():
        sources = slider_sources(page)
        if len(sources) == 2 and all(sources):
            pictures.add(sources)
        time.sleep(0.2)
    assert len(pictures) >= 2, "the before/after picture changes while the job runs"
    assert text_of(page, "#status").startswith("Done in")
    assert "Verification passed: walk_4x.mp4" in text_of(page, "#report")

    with page.expect_download() as download:
        page.locator("#download").click()
    assert download.value.suggested_filename == "walk_4x.mp4"
    saved = tmp_path / "downloaded.mp4"
    download.value.save_as(saved)
    with av.open(str(saved)) as result:
        video = result.streams.video[0]
        assert (video.width, video.height) == (256, 192)
        assert video.average_rate == RATE
        assert len(result.streams.audio) == 1
        assert sum(1 for _ in result.decode(video=0)) == 6
    assert page.locator("#result video").count() == 1  # the result plays in the page


def test_cancel_in_the_browser_leaves_nothing(page, server, tmp_path):
    clip = make_video(tmp_path / "long.mp4", 64, 48, RATE, 60)
    before = set(server.job_dirs())
    upload(page, clip, "256x192")
    page.locator("#upscale").click()
    wait_for_text(page, "#status", "Upscaling frame")
    page.locator("#cancel").click()
    wait_for_text(page, "#status", "Cancelled. Nothing was kept.", timeout_ms=60_000)
    assert not page.locator("#download").is_visible()
    assert set(server.job_dirs()) == before
    assert server.leftovers() == []


def test_a_file_that_is_not_a_video_gets_a_message_and_no_traceback(page, tmp_path):
    bad = tmp_path / "letter.mp4"
    bad.write_text("Dear visitor, this is a letter, not a video.\n" * 50)
    page.locator("#input-video input[type=file]").set_input_files(str(bad))
    toast = page.locator(".toast-body").filter(has_text="letter.mp4")
    toast.wait_for()
    assert "not a video FFmpeg can read" in toast.inner_text()
    assert "Check that it is a complete video file" in toast.inner_text()
    wait_for_text(page, "#plan", "This video cannot be processed")
    assert "Traceback" not in page.locator("body").inner_text()


def test_closing_the_tab_stops_the_job(browser, server, tmp_path):
    clip = make_video(tmp_path / "left.mp4", 64, 48, RATE, 60)
    before = set(server.job_dirs())
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server.url)
    upload(page, clip, "256x192")
    page.locator("#upscale").click()
    wait_for_text(page, "#status", "Upscaling frame")
    context.close()  # the visitor leaves in the middle of the job
    deadline = time.monotonic() + 60
    while set(server.job_dirs()) != before or server.leftovers():
        assert time.monotonic() < deadline, f"the job went on after the tab closed:\n{server.log()[-3000:]}"
        time.sleep(0.5)
    assert "a visitor left during their job: it is cancelled" in server.log()


def visible_gradio_progress(page, selector: str) -> list[str]:
    """Texts of Gradio's own progress elements that are visible inside ``selector``."""
    return page.evaluate(
        """([selector, progress]) => [...document.querySelector(selector).querySelectorAll(progress)]
            .filter(e => e.getClientRects().length && getComputedStyle(e).visibility !== 'hidden'
                         && getComputedStyle(e).opacity !== '0')
            .map(e => e.innerText.trim() || e.className)""",
        [selector, GRADIO_PROGRESS],
    )


def test_one_progress_display_while_the_job_runs(page, server, tmp_path):
    """Mid-job the status line is the only progress display, and it counts the frames."""
    clip = make_video(tmp_path / "steady.mp4", 64, 48, RATE, 1800)  # a minute of video: it is cancelled
    page.get_by_label("Bicubic", exact=True).check()
    upload(page, clip, "256x192")
    page.locator("#upscale").click()
    wait_for_text(page, "#status", " frames/s · about ")  # running, its speed measured
    page.screenshot(path=str(tmp_path / "mid-job.png"))
    assert re.fullmatch(r"Upscaling frame \d+ of 1800 · [\d.]+ frames/s · about .+ left",
                        text_of(page, "#status").strip())
    assert visible_gradio_progress(page, "#status") == []
    assert visible_gradio_progress(page, "body") == []  # nor anywhere else on the page
    page.locator("#cancel").click()
    wait_for_text(page, "#status", "Cancelled. Nothing was kept.", timeout_ms=60_000)


def test_example_bicubic_finished_page_screenshot(browser, server, tmp_path):
    """On a laptop screen: pick the Earth example, trim it to one second, upscale with bicubic; the
    finished page fits, nothing is cut off, and a full-page screenshot is saved (see the module doc)."""
    context = browser.new_context(viewport=LAPTOP)
    page = context.new_page()
    page.set_default_timeout(120_000)
    page.goto(server.url)
    page.wait_for_selector("#input-video")
    examples = page.locator("#examples")
    assert "Earth at night" in examples.inner_text() and "Title card" in examples.inner_text()  # two, captioned
    assert height(page) < MAX_PAGE_HEIGHT
    page.get_by_label("Bicubic", exact=True).check()
    examples.get_by_text("Earth at night").click()  # b.mp4: 480x270, 5 s, with sound
    wait_for_text(page, "#plan", "480x270 → 1920x1080, 4x")
    page.locator("#end textarea").fill("1")
    page.locator("#end textarea").press("Enter")
    wait_for_text(page, "#plan", "30 frames")
    codec = page.locator("#codec input")
    assert codec.evaluate("e => e.scrollWidth <= e.clientWidth"), "the codec's label runs under the arrow"
    page.locator("#upscale").click()
    page.locator("#download").wait_for(state="visible")
    assert "30 frames" in text_of(page, "#status") and "Seed" not in text_of(page, "#status")
    assert "Verification passed" in text_of(page, "#report")
    page.wait_for_function("document.querySelector('#result video')?.readyState >= 2")
    shot = tmp_path / "finished-page.png"
    page.screenshot(path=str(shot), full_page=True)
    assert height(page) < MAX_PAGE_HEIGHT, f"the finished page is {height(page)} px tall at 1366 px wide"
    if os.environ.get("VSR_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["VSR_SCREENSHOT"])
    context.close()


def height(page) -> int:
    return int(page.evaluate("document.documentElement.scrollHeight"))


def stream_player(page) -> dict:
    """The streamed result's <video>: its time, whether it plays, and its picture size."""
    return page.evaluate("""() => { const v = document.querySelector('#stream video');
        return v ? {time: v.currentTime, paused: v.paused, width: v.videoWidth, height: v.videoHeight,
                    visible: !!v.getClientRects().length} : null; }""")


def test_the_result_plays_while_the_job_runs(page, server, tmp_path):
    """Issue 19: a long job's result plays in the page (its <video> time grows, at the stream's size)
    before the job ends; the page says how fast the upscaler goes against real time."""
    clip = make_video(tmp_path / "film.mp4", 160, 120, Fraction(25), 1500)  # a minute: it is cancelled
    page.get_by_label("Bicubic", exact=True).check()
    upload(page, clip, "640x480")
    page.locator("#upscale").click()
    page.wait_for_function("() => (document.querySelector('#stream video')?.currentTime || 0) > 0.5",
                           timeout=90_000)
    first = stream_player(page)
    # Playing on: its time grows (on a slow machine the player waits for the next piece meanwhile).
    page.wait_for_function("t => (document.querySelector('#stream video')?.currentTime || 0) > t + 1",
                           arg=first["time"], timeout=60_000)
    later = stream_player(page)
    status = text_of(page, "#status")
    page.screenshot(path=str(tmp_path / "streaming.png"))
    assert status.startswith("Upscaling frame"), f"the job ended before the check: {status}"
    assert not later["paused"] and (later["width"], later["height"]) == (640, 480) and later["visible"]
    assert re.search(r"of 1 min ready", text_of(page, "#stream-note")) and "real time" in text_of(page, "#stream-note")
    page.locator("#cancel").click()
    wait_for_text(page, "#status", "Cancelled. Nothing was kept.", timeout_ms=60_000)
    assert stream_player(page) is None or not stream_player(page)["visible"]


def fake_camera_clip(path: Path, frames: int = 30) -> Path:
    """A small y4m clip for Chromium's fake camera (--use-file-for-fake-video-capture)."""
    from media_factory import pattern

    with av.open(str(path), "w", format="yuv4mpegpipe") as out:
        stream = out.add_stream("rawvideo", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(pattern(64, 48, index), format="rgb24").reformat(format="yuv420p")
            frame.pts = index
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return path


def test_the_live_page_upscales_the_camera(browser, server, tmp_path):
    """Issue 19 item 2: Chromium's fake camera into the Live page; the upscaled picture (4x) comes out
    and the figures (frame rates, dropped frames, latency, the input size) are on the page."""
    clip = fake_camera_clip(tmp_path / "camera.y4m")
    args = [*CHROMIUM_ARGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-video-capture={clip}"]
    camera_browser = browser.browser_type.launch(executable_path=str(CHROMIUM), args=args)  # a camera of its own
    try:
        page = camera_browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()
        page.set_default_timeout(120_000)
        page.goto(server.url + "live")
        page.get_by_label("Bicubic", exact=True).check()
        page.get_by_role("button", name="Click to Access Webcam").click()
        page.get_by_role("button", name="capture photo").click()  # Record: the stream starts
        page.wait_for_function("() => /out [1-9][0-9.]* frames\\/s/.test("
                               "document.querySelector('#live-figures')?.innerText || '')", timeout=90_000)
        # The picture is replaced by every frame: its size is read in the same step that finds it loaded.
        size = page.wait_for_function("() => { const i = document.querySelector('#live-output img');"
                                      " return i && i.naturalWidth > 0 ? [i.naturalWidth, i.naturalHeight] : null; }"
                                      ).json_value()
        figures = text_of(page, "#live-figures")
        page.screenshot(path=str(tmp_path / "live.png"))
    finally:
        camera_browser.close()
    rates = re.search(r"In ([\d.]+) frames/s · out ([\d.]+) frames/s · dropped (\d+) of (\d+) · latency (\d+) ms",
                      figures)
    assert rates and float(rates[1]) > 0 and float(rates[2]) > 0 and int(rates[4]) > 0, figures
    sizes = re.search(r"input scaled to (\d+)x(\d+) .* -> (\d+)x(\d+)", figures)  # 64x48 unless this device is slow
    assert sizes and int(sizes[1]) <= 64 and [int(sizes[3]), int(sizes[4])] == [4 * int(sizes[1]), 4 * int(sizes[2])]
    assert size == [int(sizes[3]), int(sizes[4])], (size, figures)  # the picture shown is 4x its input
