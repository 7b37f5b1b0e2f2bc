"""The web app: upload a video, see the plan, watch it upscale live, compare, download.

Layout and wiring only: the page's logic is in ``vsr.web`` (``sessions``: plan, run, cancel;
``texts``: what the page says; ``controls``: the controls' choices -> options; ``examples``), the
work in ``vsr.job``. Errors become ``gr.Error`` in one place (``_page_error``). ``python app.py``
listens on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (127.0.0.1:7860). On a ZeroGPU Space the job runs
in a ``spaces.GPU`` function reserved for ``JobPlan.gpu_seconds``; the model loads only inside it.
"""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch initialises CUDA.
    import spaces
except ImportError:
    spaces = None

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import gradio as gr

from media import MediaError
from media.ts_chunks import chunk_of, continue_counters
from vsr import environment
from vsr.job.errors import JobError
from vsr.logs import configure_logging
from vsr.model.errors import ModelLoadError
from vsr.options import OptionsError, UpscaleOptions, build_options, server_logins
from vsr.web import controls as choices
from vsr.web import examples, handlers, live, resume, sessions, texts, views
from vsr.web.controls import SIZE_LABELS

logger = logging.getLogger("app")

QUEUE_SIZE = 16
"""How many jobs may wait in line behind the running one; the next visitor is told to come back."""
SESSION_CAPACITY = 256
"""How many visitors' sessions Gradio keeps in memory (``launch(state_session_capacity=...)``), the least
recently used beyond are dropped. Each is a copy of the page's layout and its values (about 0.3 MB);
Gradio's default, 10,000, let a long-running server grow by that much per new visitor until 3 GB
(bench/soak.py, docs/performance.md). A dropped session only loses what the page shows; a running job
and its resume code are kept elsewhere."""
JOB_CONCURRENCY = "upscale"  # one job at a time on this process's device, or one per worker of a cluster
EXPECTED_ERRORS = (JobError, MediaError, OptionsError, ModelLoadError)
THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
#model-notice {border: 2px solid #d97706; border-radius: 8px; padding: 0 12px; background: #fffbeb;}
#limits, #device {font-size: 0.85em; opacity: 0.8;}
#status {min-height: 2.2em;}
#plan ul, #report ul {margin-top: 0.2em;}
#plan li, #report li {margin: 0;}
#sample, #upscale, #cancel {white-space: nowrap;}
"""
VIDEO_HEIGHT = 280  # px: the input, the before/after and the result sit side by side at this height


def _page_error(error: Exception, args: tuple, handler: str) -> gr.Error:
    """Any error of an event handler as the page shows it (``gr.Error``, the pop-up message).

    Expected errors (job, media, options, model) carry a message for people, shown with an upload's
    server path replaced by its file name; a model error is worded for the page (the server's
    settings, not CLI flags: ``texts.model_error_text``). Anything else is a bug: logged with its
    traceback on the server, a short notice on the page.
    """
    if isinstance(error, gr.Error):
        return error
    if isinstance(error, EXPECTED_ERRORS):
        logger.info("refused or failed: %s", error)
        message = texts.model_error_text(error) if isinstance(error, ModelLoadError) else str(error)
        for arg in args:
            if isinstance(arg, str) and len(arg) > 1 and Path(arg).is_absolute():
                message = message.replace(arg, Path(arg).name)
        return gr.Error(message, duration=None, print_exception=False)
    logger.error("unexpected error in %s", handler, exc_info=error)
    return gr.Error(
        f"Something went wrong on the server ({type(error).__name__}). The details are in the server log; "
        "please report it with the video's properties shown in the plan.",
        duration=None, print_exception=False,
    )


def _user_errors(fn: Callable) -> Callable:
    """An event handler (function or generator) whose every error reaches the page as ``_page_error``."""
    return handlers.translating(fn, _page_error)


JOB_EVENTS = sessions.gpu_function(spaces) if spaces is not None else sessions.job_events
"""The job generator: under ZeroGPU the ``spaces.GPU`` function (decorated at import, as ZeroGPU
requires); elsewhere ``spaces.GPU`` changes nothing, or ``spaces`` is not installed."""


class StreamedResult(gr.Video):
    """``gr.Video(streaming=True)`` for chunks that are already playable MPEG-TS (H.264 + AAC, made in
    process by ``media.ts_chunks``): each chunk goes into Gradio's HLS playlist as it is, its
    continuity counters following on. ``gr.Video``'s own streaming path probes and remuxes every chunk
    with the ``ffprobe`` and ``ffmpeg`` executables, which this project does not need (docs/streaming.md)."""

    is_template = True  # the browser side is gr.Video's (built with streaming=True)

    @property
    def skip_api(self) -> bool:  # for the page only: /upscale's outputs stay as they were
        return True

    @property
    def _counters(self) -> dict[str, dict[int, int]]:
        """Per stream (its playlist id), the continuity counters its next chunk follows on from."""
        return self.__dict__.setdefault("_stream_counters", {})

    async def stream_output(self, value: Any, output_id: str, first_chunk: bool) -> tuple[Any, dict]:
        playlist = {"path": output_id, "is_stream": True, "orig_name": "result.ts", "meta": {"_type": "gradio.FileData"}}
        if first_chunk:
            self._counters[output_id] = {}
        chunk = chunk_of(Path(value)) if value else None
        if chunk is None:
            return None, playlist
        data = await anyio.to_thread.run_sync(chunk.path.read_bytes)
        counters = self._counters.setdefault(output_id, {})
        return {"data": continue_counters(data, counters), "duration": chunk.duration, "extension": ".ts"}, playlist

    def end_stream_output(self, output_id: str) -> None:
        self._counters.pop(output_id, None)

    async def combine_stream(self, stream: list[bytes], desired_output_format: str | None = None,
                             only_file: bool = False) -> Any:
        """The chunks as one ``.ts`` (one MPEG-TS stream; no download button asks for it)."""
        from gradio import processing_utils
        from gradio.data_classes import FileData

        path = processing_utils.save_bytes_to_cache(b"".join(stream), "result.ts", cache_dir=self.GRADIO_CACHE)
        return FileData(path=path, orig_name="result.ts")


class PageNote(gr.Markdown):
    """A ``gr.Markdown`` for the page only, left out of the API's outputs (the stream's note)."""

    is_template = True

    @property
    def skip_api(self) -> bool:
        return True


def _updates(ui: dict, view: dict[str, Any]) -> dict:
    """A ``vsr.web.views`` view as component updates."""
    return {ui[name]: gr.update(**value) if isinstance(value, dict) else value for name, value in view.items()}


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "anonymous"


def _main_choices(settings: UpscaleOptions) -> dict[str, gr.components.Component]:
    """The two choices every job makes: the engine and the output size."""
    return {"engine": gr.Radio(list(choices.ENGINE_CHOICES), value=settings.engine, label="Engine",
                               info=choices.ENGINE_INFO),
            "size": gr.Radio(list(SIZE_LABELS), value=settings.height_label.removesuffix("p"), label="Output size",
                             info=texts.SIZE_INFO)}


def _settings(settings: UpscaleOptions) -> dict[str, Any]:
    """The other settings, laid out compactly (``choices.CONTROLS`` names them all)."""
    temporal = choices.temporal_controls(settings.engine)
    crf = choices.crf_slider(settings.codec)
    c: dict[str, Any] = {}  # the controls by name, and the row of the diffusion engine's own ("temporal")
    with gr.Row():
        c["start"] = gr.Textbox(label="Start", placeholder="0 (s or m:ss)", elem_id="start", min_width=90)
        c["end"] = gr.Textbox(label="End", placeholder="end (s or m:ss)", elem_id="end", min_width=90)
    with gr.Row(visible=temporal) as c["temporal"]:  # only the diffusion engine uses these
        c["steps"] = gr.Slider(1, 50, value=settings.steps, step=1, label="Denoising steps", min_width=120,
                               info="4 = as trained")
        c["seed"] = gr.Textbox(label="Seed", value="" if settings.seed is None else str(settings.seed),
                               placeholder="random", info="same seed, same result", min_width=90)
    c["scene_cuts"] = gr.Checkbox(value=settings.scene_cuts, label="Reset at scene cuts (start afresh at hard cuts)",
                                  visible=temporal)
    c["codec"] = gr.Dropdown(list(choices.CODEC_CHOICES), value=settings.codec, label="Codec",
                             info=choices.CODEC_INFO, elem_id="codec")
    c["crf"] = gr.Slider(0, 63, value=settings.effective_crf or 0, step=1, label="Quality (CRF)",
                         visible=crf is not None, info=crf.info if crf else None)
    return c


def build_demo(settings: UpscaleOptions | None = None, *, jobs: sessions.WebJobs | None = None) -> gr.Blocks:
    """The whole page, wired to its handlers, with the queue set up. ``settings`` defaults to the
    environment's (``build_options()``); ``jobs`` (the page's state) to a new ``WebJobs`` on them."""
    settings = settings or build_options()
    jobs = jobs or sessions.WebJobs(settings, events=JOB_EVENTS)
    with gr.Blocks(title=texts.TITLE, analytics_enabled=False, delete_cache=(3600, sessions.KEEP_SECONDS)) as demo:
        gr.Markdown(texts.INTRO + ("" if jobs.zero_gpu else texts.LIVE_LINK))
        gr.Markdown(texts.limits_text(settings, QUEUE_SIZE, zero_gpu=jobs.zero_gpu), elem_id="limits")
        notice = gr.Markdown(visible=False, elem_id="model-notice")
        with gr.Row():  # what goes in, the newest frame before/after, what comes out: side by side
            video = gr.Video(label="Your video", sources=["upload"], height=VIDEO_HEIGHT, elem_id="input-video")
            slider = gr.ImageSlider(label="Before (bicubic) / after (upscaled)", type="numpy", height=VIDEO_HEIGHT,
                                    interactive=False, elem_id="compare")
            # While the job runs its result streams in the first; then the verified file is in the second.
            stream = StreamedResult(label="Result (playing while it is made)", height=VIDEO_HEIGHT, streaming=True,
                                    autoplay=True, interactive=False, buttons=[], visible=False, elem_id="stream")
            result = gr.Video(label="Result", interactive=False, height=VIDEO_HEIGHT, elem_id="result")
        with gr.Row(equal_height=False):
            with gr.Column(scale=1):
                found = examples.example_videos()
                if found:
                    gr.Examples([[str(path)] for path, _ in found], inputs=[video], label="Or try an example",
                                example_labels=[caption for _, caption in found], elem_id="examples")
                c = _main_choices(settings)
                with gr.Row():
                    sample_btn = gr.Button("Sample (2 s)", elem_id="sample", size="md", min_width=80)
                    run_btn = gr.Button("Upscale", variant="primary", elem_id="upscale", size="md", min_width=80)
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel", size="md", min_width=80)
                resume_note = gr.Markdown(visible=False, elem_id="resume-note")
                resume_btn = gr.Button("Resume the interrupted job", visible=False, elem_id="resume")
                code = gr.State(None)  # the resume code of this page's next job (vsr.web.resume)
                kept = gr.BrowserState(None, storage_key=resume.STORAGE_KEY,
                                       secret=resume.browser_secret(settings.cache_dir))
                status = gr.Markdown("", elem_id="status")
                stream_note = PageNote("", visible=False, elem_id="stream-note")
            with gr.Column(scale=1):
                c.update(_settings(settings))
                device = gr.Markdown("", elem_id="device")
            with gr.Column(scale=1):
                plan = gr.Markdown(texts.PLAN_HINT, elem_id="plan")
                download = gr.DownloadButton("Download", visible=False, elem_id="download")
                report = gr.Markdown("", elem_id="report")

        controls = [c[name] for name in choices.CONTROLS]
        ui = {"status": status, "slider": slider, "result": result, "download": download, "report": report,
              "notice": notice, "engine": c["engine"], "plan": plan, "size": c["size"], "device": device,
              "stream": stream, "stream_note": stream_note}

        @_user_errors
        def show_plan(video: str | None, engine: str, size: str, start: str, end: str, steps: float, seed: str,
                      codec: str, crf: float, scene_cuts: bool,
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:
            """Upload or a changed control: the plan in words and the sizes this video allows."""
            progress(0, desc="Reading the video (and loading the model the first time)")
            return _updates(ui, views.plan_view(jobs, video, (engine, size, start, end, steps, seed, codec, crf,
                                                              scene_cuts)))

        def job_handler(sample: bool) -> Callable:
            @_user_errors
            def handler(video: str | None, engine: str, size: str, start: str, end: str, steps: float, seed: str,
                        codec: str, crf: float, scene_cuts: bool, code: str | None,
                        request: gr.Request) -> Iterator[dict]:
                values = (engine, size, start, end, steps, seed, codec, crf, scene_cuts)
                for update in jobs.run(video, values, sample, _session(request), code):
                    yield _updates(ui, views.job_view(update))

            handler.__name__ = "sample" if sample else "upscale"
            return handler

        @_user_errors
        def resume_job(video: str | None, kept_code: str | None, request: gr.Request) -> Iterator[dict]:
            for update in jobs.resume(video, kept_code, _session(request)):
                yield _updates(ui, views.job_view(update))

        def offer_resume(kept_code: str | None) -> tuple:
            text = jobs.interrupted(kept_code)
            return gr.update(value=text, visible=bool(text)), gr.update(visible=bool(text))

        @_user_errors
        def cancel(request: gr.Request) -> str:
            return "Cancelling…" if jobs.cancel(_session(request)) else "Nothing is running."

        def on_load() -> dict:
            return _updates(ui, views.load_view(jobs, settings))

        def on_unload(request: gr.Request) -> None:
            if jobs.left(_session(request)):  # the visitor closed the tab: stop their job, keep nothing
                logger.info("a visitor left during their job: it is cancelled")

        plan_outputs = [plan, c["size"], notice, c["engine"]]
        job_outputs = [status, slider, result, download, report, notice, c["engine"], stream, stream_note]
        # When a handler fails, its message pops up (gr.Error); the panel it would have filled says so.
        planned = video.change(show_plan, [video, *controls], plan_outputs, concurrency_limit=4,
                               concurrency_id="plan", show_progress_on=[plan], api_name="plan")
        # A changed control plans again: choices at once, sliders when let go, times when left or submitted.
        triggers = [c["engine"].input, c["size"].input, c["codec"].input, c["steps"].release, c["crf"].release,
                    c["start"].blur, c["start"].submit, c["end"].blur, c["end"].submit]
        replanned = gr.on(triggers, show_plan, [video, *controls], plan_outputs, concurrency_limit=4,
                          concurrency_id="plan", show_progress_on=[plan], trigger_mode="always_last",
                          api_visibility="private")
        for event in (planned, replanned):
            event.failure(lambda: texts.PLAN_FAILED, None, plan, queue=False, api_visibility="private")
        c["codec"].input(lambda codec: gr.update(**views.crf_view(codec)), c["codec"], c["crf"], queue=False,
                         api_visibility="private")
        c["engine"].change(lambda engine: [gr.update(visible=choices.temporal_controls(engine))] * 2, c["engine"],
                           [c["temporal"], c["scene_cuts"]], queue=False, api_visibility="private")
        for button, is_sample in ((run_btn, False), (sample_btn, True)):
            # The status line is the one progress display; Gradio's overlay there shows only the queue.
            coded = button.click(lambda: (jobs.new_code(),) * 2, None, [code, kept], queue=False,
                                 api_visibility="private")  # the browser keeps the code before the job starts
            started = coded.then(job_handler(is_sample), [video, *controls, code], job_outputs,
                                 concurrency_limit=jobs.concurrency, concurrency_id=JOB_CONCURRENCY,
                                 show_progress_on=[status],
                                 api_name="sample" if is_sample else "upscale")
            started.failure(lambda: texts.JOB_FAILED, None, status, queue=False, api_visibility="private")
        resumed = resume_btn.click(resume_job, [video, kept], job_outputs, concurrency_limit=jobs.concurrency,
                                   concurrency_id=JOB_CONCURRENCY, show_progress_on=[status], api_name="resume")
        resumed.failure(lambda: texts.JOB_FAILED, None, status, queue=False, api_visibility="private")
        resume_btn.click(lambda: (gr.update(visible=False),) * 2, None, [resume_note, resume_btn], queue=False,
                         api_visibility="private")
        demo.load(offer_resume, [kept], [resume_note, resume_btn], queue=False, api_visibility="private")
        cancel_btn.click(cancel, None, status, queue=False, api_name="cancel")
        demo.load(on_load, None, [notice, c["engine"], device], queue=False, api_visibility="private")
        demo.unload(on_unload)
    with demo.route("Live", "/live"):
        _live_page(settings, jobs)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def _live_page(settings: UpscaleOptions, jobs: sessions.WebJobs) -> None:
    """The Live page: the camera in, the upscaled picture out (``vsr.web.live``). It shares the file
    jobs' concurrency group: one live visitor or job per device at a time, the others wait in line."""
    gr.Markdown(f"## Live\nYour camera in, the picture upscaled 4x out, frame by frame (each visitor up to "
                f"{live.LIVE_SECONDS} s; others wait and see their place). Frames that arrive while the engine is "
                "busy are dropped, so what you see stays current.")
    if jobs.zero_gpu:
        gr.Markdown(live.ZERO_GPU_TEXT, elem_id="live-figures")
        return
    desk = live.desk_for(settings)
    engine = gr.Radio(list(choices.ENGINE_CHOICES), value=settings.engine, label="Engine", elem_id="live-engine")
    with gr.Row():
        camera = gr.Image(sources=["webcam"], streaming=True, type="numpy", label="Camera", elem_id="live-camera")
        upscaled = gr.Image(label="Upscaled", type="numpy", interactive=False, elem_id="live-output")
    figures = gr.Markdown("", elem_id="live-figures")

    @_user_errors
    def live_frame(frame: Any, engine: str, request: gr.Request) -> tuple:
        picture, text = desk.frame(_session(request), engine, frame)
        return (gr.skip() if picture is None else picture), text

    @_user_errors
    def one_frame(frame: Any, engine: str, request: gr.Request) -> tuple:
        """The API's equivalent (gradio_client has no streaming inputs): one frame in, its picture out."""
        picture, text = desk.frame(_session(request), engine, frame, wait=True)
        return (gr.skip() if picture is None else picture), text

    camera.stream(live_frame, [camera, engine], [upscaled, figures], stream_every=0.1, time_limit=live.LIVE_SECONDS,
                  concurrency_limit=jobs.concurrency, concurrency_id=JOB_CONCURRENCY, api_visibility="private",
                  show_progress="hidden")
    gr.Button("Upscale one frame", visible=False).click(
        one_frame, [camera, engine], [upscaled, figures], concurrency_limit=jobs.concurrency,
        concurrency_id=JOB_CONCURRENCY, api_name="live")


def launch_arguments(settings: UpscaleOptions) -> dict[str, Any]:
    """``demo.launch`` keyword arguments from the environment and the settings (``auth``: Gradio's own
    login for the page and its API when STREAM_DIFFVSR_AUTH is set, ``vsr.options.server_logins``)."""
    env = environment.read()
    return {"server_name": env.get("GRADIO_SERVER_NAME", "127.0.0.1"), "auth": server_logins(),
            "state_session_capacity": SESSION_CAPACITY,
            "server_port": int(env.get("GRADIO_SERVER_PORT", "7860")), "max_file_size": f"{settings.max_upload_mb}mb",
            "allowed_paths": [str(settings.output_dir.resolve()), *(str(p) for p in examples.example_dirs())],
            "show_error": False, "ssr_mode": False, "footer_links": ["gradio"], "theme": THEME, "css": CSS}


def main() -> None:
    configure_logging()
    environment.limit_malloc_arenas()  # a long-running server's RSS stays flat (docs/performance.md)
    try:
        settings = build_options()
        arguments = launch_arguments(settings)
    except OptionsError as exc:  # a bad environment variable: one line naming it and the fix
        raise SystemExit(f"app.py: error: {exc}") from None
    build_demo(settings).launch(**arguments)


if __name__ == "__main__":
    main()
