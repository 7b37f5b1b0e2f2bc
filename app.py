"""The web app: upload a video, see the plan, watch it upscale live, compare, download.

Layout and wiring only. The work is ``vsr.job.runner`` (plan, run); the texts and the job folders are
``vsr.web.texts``. Errors become ``gr.Error`` in exactly one place (``_user_errors``). Run it with
``python app.py``; it listens on GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (127.0.0.1:7860).

On a Hugging Face ZeroGPU Space the upscaling runs inside a ``spaces.GPU`` function whose reservation
is computed from the plan (``JobPlan.gpu_seconds``); the model loads and runs only inside it (plans
there never touch the model, see ``vsr.job.planning``), and a video that cannot finish in one call is refused
by the plan with the longest length that fits. Elsewhere ``spaces.GPU`` changes nothing (or ``spaces``
is not installed).
"""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch initialises CUDA.
    import spaces
except ImportError:
    spaces = None

import contextlib
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gradio as gr

from media import MediaError
from vsr import environment, job
from vsr.web import texts as web
from vsr.model.errors import ModelLoadError
from vsr.job.errors import JobCancelled, JobError, VerificationFailed
from vsr.logs import configure_logging
from vsr.options import CODECS, CRF_RANGE, OptionsError, UpscaleOptions, build_options

logger = logging.getLogger("app")

QUEUE_SIZE = 16
"""How many jobs may wait in line behind the running one; the next visitor is told to come back."""
KEEP_SECONDS = 24 * 3600
"""Uploads, cached results and job folders older than this are deleted (checked every hour)."""
SAMPLE_SECONDS = 2.0
JOB_CONCURRENCY = "upscale"  # one job at a time on this process's device
PREVIEW_INTERVAL_S = 0.5  # newest before/after picture sent at most this often
EXPECTED_ERRORS = (JobError, MediaError, OptionsError, ModelLoadError)
PLAN_HINT = "Upload a video (or pick an example) to see what will happen."
PLAN_FAILED = "**This video cannot be processed as asked.** The message that popped up says why and what to do."
JOB_FAILED = "**The job stopped.** The message that popped up says why and what to do."

ENGINE_CHOICES = [
    ("Stream-DiffVSR: diffusion model, restores detail", "stream-diffvsr"),
    ("Bicubic: plain 4x resize, fast, for comparison", "bicubic"),
]
CODEC_CHOICES = [
    ("H.264 (MP4, plays everywhere)", "h264"),
    ("HEVC / H.265 (MP4, smaller)", "hevc"),
    ("AV1 (MP4, smallest, slow to encode)", "av1"),
    ("ProRes 422 HQ (MOV, for editing)", "prores"),
    ("FFV1 (MKV, lossless, large)", "ffv1"),
]
assert [value for _, value in CODEC_CHOICES] == list(CODECS)

THEME = gr.themes.Soft(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])
CSS = """
#model-notice {border: 2px solid #d97706; border-radius: 8px; padding: 0 12px; background: #fffbeb;}
#status {min-height: 2.5em;}
"""


# ---------------------------------------------------------------------------------------------
# The one place where errors become what a person sees.


def _user_errors(fn: Callable) -> Callable:
    """Wrap an event handler (function or generator) so every error reaches the page as ``gr.Error``.

    Errors of the job, the media layer, the options and the model loader carry a message written for
    people (file, problem, fix) and are shown as they are, with the server's path of an uploaded file
    replaced by the file's own name. Anything else is a bug: it is logged with its traceback on the
    server and the page gets a short notice, never the traceback.
    """

    def translate(error: Exception, args: tuple) -> gr.Error:
        if isinstance(error, gr.Error):
            return error
        if isinstance(error, EXPECTED_ERRORS):
            logger.info("refused or failed: %s", error)
            message = str(error)
            for arg in args:
                if isinstance(arg, str) and len(arg) > 1 and Path(arg).is_absolute():
                    message = message.replace(arg, Path(arg).name)
            return gr.Error(message, duration=None, print_exception=False)
        logger.error("unexpected error in %s", fn.__name__, exc_info=error)
        return gr.Error(
            f"Something went wrong on the server ({type(error).__name__}). The details are in the server log; "
            "please report it with the video's properties shown in the plan.",
            duration=None, print_exception=False,
        )

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - translated for the page right here
                raise translate(error, args) from None

        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - translated for the page right here
            raise translate(error, args) from None

    return function


# ---------------------------------------------------------------------------------------------
# Process-wide state, owned by the app: the model's load status and the running jobs' cancel flags.


@dataclass
class ModelStatus:
    """Whether the diffusion model failed to load in this process, and the message that says why."""

    error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def failed(self, message: str) -> None:
        with self.lock:
            self.error = message

    def loaded(self) -> None:
        with self.lock:
            self.error = None

    def notice(self) -> str:
        """Markdown for the notice box ("" when the model is fine or not tried yet)."""
        with self.lock:
            if self.error is None:
                return ""
            return ("### The Stream-DiffVSR model could not be loaded\n\n"
                    f"{self.error}\n\nThe **Bicubic** engine still works; it has been selected for you.")


MODEL = ModelStatus()
JOBS = web.ActiveJobs()


# ---------------------------------------------------------------------------------------------
# The job, run in a worker thread; under ZeroGPU this generator is the GPU function.


def _job_events(plan: Any, output: str, session: str) -> Iterator[tuple[str, Any]]:
    """Run ``plan`` into ``output`` and yield ``("progress", (event, newest_frames_event))`` while it
    runs, then ``("result", JobResult)``. Errors of the job re-raise here.

    Arguments are picklable (ZeroGPU runs this in a worker process). The cancel flag is the one the
    session registered in ``JOBS``; closing this generator (the visitor left) also cancels.
    """
    cancel = JOBS.flag(session) or threading.Event()
    newest = web.NewestEvent()
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["result"] = job.run(plan, Path(output), on_progress=newest.put, cancel=cancel,
                                        preview_dir=Path(output).parent)
        except BaseException as error:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = error
        finally:
            newest.close()

    # copy_context: gr.Progress(track_tqdm=True) then also sees the model download's tqdm bars.
    worker = threading.Thread(target=contextvars.copy_context().run, args=(work,), name="upscale-job", daemon=True)
    worker.start()
    try:
        for update in newest.updates(PREVIEW_INTERVAL_S):
            yield "progress", update
        worker.join()
    finally:
        if worker.is_alive():  # the generator was closed early: the visitor is gone
            cancel.set()
            worker.join()
    if "error" in outcome:
        raise outcome["error"]
    yield "result", outcome["result"]


def _gpu_duration(plan: Any, output: str, session: str) -> int:
    """ZeroGPU reservation (seconds) for ``plan``: its time estimate with a margin and loading time
    (``JobPlan.gpu_seconds``; the plan already refused a job whose reservation is over the limit)."""
    return int(plan.gpu_seconds)


def gpu_function(spaces_module: Any, events: Callable = _job_events) -> Callable:
    """``events`` as ``spaces_module``'s GPU function, its duration from the plan (``_gpu_duration``).
    ``spaces.GPU`` returns it unchanged outside ZeroGPU."""
    return spaces_module.GPU(duration=_gpu_duration)(events)


if spaces is not None:
    _job_events = gpu_function(spaces)


# ---------------------------------------------------------------------------------------------
# Handlers. ``controls`` is the tuple of the settings controls' values, in CONTROLS order.

CONTROLS = ("engine", "size", "start", "end", "steps", "seed", "codec", "crf", "scene_cuts")


def _options(settings: UpscaleOptions, controls: tuple) -> UpscaleOptions:
    """The job's options: the server's settings with the visitor's control values on top."""
    overrides = web.control_overrides(**dict(zip(CONTROLS, controls)))
    return settings.replace(**{k: v for k, v in overrides.items() if v is not None})


def _plan(settings: UpscaleOptions, video: str, controls: tuple,
          sample: bool = False) -> tuple[Any, UpscaleOptions, bool]:
    """Plan the job; when the diffusion model cannot load, record why and plan with bicubic instead.

    Returns (plan, options, fell_back). The fallback is never silent: the page shows the notice and
    switches the engine control to bicubic. With ``sample`` only a piece will run (``preview_plan``),
    so a whole video too long for one ZeroGPU call is not refused here (the piece's plan checks).
    """
    options = _options(settings, controls)
    zero_gpu = environment.on_zero_gpu()

    def planned_with(options: UpscaleOptions) -> Any:
        estimator = job.estimator_for(options, zero_gpu=zero_gpu)
        return job.plan(Path(video), options, estimator=estimator, zero_gpu=zero_gpu, piece_only=sample)

    try:
        planned = planned_with(options)
    except ModelLoadError as error:
        if options.engine == "bicubic":
            raise
        MODEL.failed(str(error))
        options = options.replace(engine="bicubic")
        return planned_with(options), options, True
    if options.engine != "bicubic":
        MODEL.loaded()
    return planned, options, False


def _run_job(settings: UpscaleOptions, ui: dict, video: str | None, sample: bool, controls: tuple,
             session: str, progress: gr.Progress) -> Iterator[dict]:
    """Run one job for the visitor and stream its progress to the page."""
    if not video:
        raise OptionsError("No video yet: upload one (or pick an example) first, then press Upscale.")
    plan, options, fell_back = _plan(settings, video, controls, sample)
    if fell_back:
        yield {ui["notice"]: gr.update(value=MODEL.notice(), visible=True), ui["engine"]: "bicubic"}
        raise ModelLoadError(f"{MODEL.error} Nothing was started; press the button again to upscale with Bicubic.")
    if sample:
        plan = job.preview_plan(plan, SAMPLE_SECONDS)
    web.prune_job_dirs(options.output_dir, KEEP_SECONDS)
    job_dir = web.new_job_dir(options.output_dir)
    output = job_dir / web.output_filename(Path(video).name, options, plan.container_suffix)
    flag = JOBS.start(session)
    keep = False
    try:
        yield {ui["status"]: "Starting…", ui["slider"]: None, ui["result"]: None,
               ui["download"]: gr.update(value=None, visible=False), ui["report"]: ""}
        result = None
        # Closing the events stops the job (its thread, or ZeroGPU's worker process, which cannot see
        # ``flag``) and waits for it, before the job folder is cleaned up: on Cancel, and when the
        # visitor leaves (gradio closes this generator).
        with contextlib.closing(_job_events(plan, str(output), session)) as events:
            for kind, payload in events:
                if flag.is_set():
                    break
                if kind == "result":
                    result = payload
                    continue
                event, frames = payload
                if event.stage == "upscaling" and event.total:
                    progress((event.done, event.total), desc="Upscaling", unit="frames")
                update = {ui["status"]: web.progress_text(event.stage, event.done, event.total, event.fps,
                                                          event.eta_seconds, event.message)}
                if frames is not None:
                    update[ui["slider"]] = web.before_after(frames.input_frame, frames.output_frame)
                yield update
        if result is None:
            raise JobCancelled("The job was cancelled; its partial output and temporary files were removed.")
        keep = True
        yield {ui["status"]: web.done_text(result), ui["result"]: str(result.preview or result.output),
               ui["download"]: gr.update(value=str(result.output), visible=True,
                                         label=f"Download {result.output.name}"),
               ui["report"]: web.report_markdown(result)}
    except JobCancelled:
        logger.info("job on %s cancelled; removing %s", Path(video).name, job_dir)
        yield {ui["status"]: "Cancelled. Nothing was kept.", ui["slider"]: None}
    except VerificationFailed:
        keep = True  # its message tells the operator where the file is, for inspection
        raise
    except ModelLoadError as error:
        # On ZeroGPU the model first loads here, inside the GPU call (plans there never load it):
        # the page's notice then says why and offers bicubic, as when a plan fails to load it.
        if options.engine != "bicubic":
            MODEL.failed(str(error))
        raise
    finally:
        JOBS.finish(session, flag)
        if not keep:
            web.remove_job_dir(job_dir)


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "anonymous"


def _crf_control(codec: str) -> dict:
    """The quality slider for ``codec``: its CRF range and default, hidden when it has no CRF."""
    spec = CRF_RANGE.get(codec)
    if spec is None:
        return gr.update(visible=False)  # its value is ignored for this codec (web.control_overrides)
    low, high, default = spec
    return gr.update(visible=True, minimum=low, maximum=high, value=default,
                     info=f"{low} = best and largest, {high} = smallest; {default} is the default for {codec}.")


# ---------------------------------------------------------------------------------------------
# Layout and wiring.


def build_demo(settings: UpscaleOptions | None = None) -> gr.Blocks:
    """The whole page, wired to its handlers, with the queue set up. ``settings`` defaults to the
    environment's (``build_options()``)."""
    settings = settings or build_options()
    with gr.Blocks(title="Stream-DiffVSR video upscaler", analytics_enabled=False,
                   delete_cache=(3600, KEEP_SECONDS)) as demo:
        gr.Markdown("# Stream-DiffVSR video upscaler\nMake a small or blurry video **4x sharper**. "
                    "Sound, subtitles and timing are kept exactly.")
        gr.Markdown(web.limits_text(settings, QUEUE_SIZE, zero_gpu=environment.on_zero_gpu()), elem_id="limits")
        notice = gr.Markdown(visible=False, elem_id="model-notice")
        with gr.Row():
            with gr.Column(scale=1):
                video = gr.Video(label="Your video", sources=["upload"], elem_id="input-video")
                examples = example_videos()
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=[video], label="Or try an example",
                                elem_id="examples")
                plan = gr.Markdown(PLAN_HINT, elem_id="plan")
                with gr.Row():
                    sample_btn = gr.Button("Try a 2-second sample", elem_id="sample")
                    run_btn = gr.Button("Upscale", variant="primary", elem_id="upscale")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="cancel")
                with gr.Accordion("Settings", open=True):
                    engine = gr.Radio(ENGINE_CHOICES, value=settings.engine, label="Engine")
                    size = gr.Radio(list(web.SIZE_LABELS), value=settings.height_label.removesuffix("p"),
                                    label="Output size", info="4x keeps the exact shape; presets set the height.")
                    with gr.Row():
                        start = gr.Textbox(label="Start", placeholder="0", info="seconds or m:ss; empty = beginning",
                                           elem_id="start")
                        end = gr.Textbox(label="End", placeholder="end", info="seconds or m:ss; empty = the end",
                                         elem_id="end")
                    with gr.Row():
                        steps = gr.Slider(1, 50, value=settings.steps, step=1, label="Denoising steps",
                                          info="4 is what the model was trained for; more is slower.")
                        seed = gr.Textbox(label="Seed", value="" if settings.seed is None else str(settings.seed),
                                          placeholder="random", info="Same seed, same result; empty = random.")
                    with gr.Row():
                        codec = gr.Dropdown(CODEC_CHOICES, value=settings.codec, label="Codec")
                        crf = gr.Slider(0, 63, value=settings.effective_crf, step=1, label="Quality (CRF)",
                                        visible=CRF_RANGE[settings.codec] is not None)
                    scene_cuts = gr.Checkbox(value=settings.scene_cuts, label="Reset at scene cuts",
                                             info="Start the model afresh at hard cuts so one shot does not "
                                                  "smear into the next.")
                    device = gr.Textbox(label="Runs on (chosen by the server)", interactive=False)
            with gr.Column(scale=1):
                status = gr.Markdown("", elem_id="status")
                slider = gr.ImageSlider(label="Before (bicubic) / after (upscaled)", type="numpy",
                                        interactive=False, elem_id="compare")
                result = gr.Video(label="Result", interactive=False, elem_id="result")
                download = gr.DownloadButton("Download", visible=False, elem_id="download")
                report = gr.Markdown("", elem_id="report")

        controls = [engine, size, start, end, steps, seed, codec, crf, scene_cuts]
        ui = {"status": status, "slider": slider, "result": result, "download": download, "report": report,
              "notice": notice, "engine": engine, "plan": plan, "size": size}

        @_user_errors
        def show_plan(video: str | None, engine: str, size: str, start: str, end: str, steps: float, seed: str,
                      codec: str, crf: float, scene_cuts: bool,
                      progress: gr.Progress = gr.Progress(track_tqdm=True)) -> dict:
            """Upload or a changed control: the plan in words and the sizes this video allows."""
            if not video:
                return {ui["plan"]: PLAN_HINT}
            values = (engine, size, start, end, steps, seed, codec, crf, scene_cuts)
            progress(0, desc="Reading the video (and loading the model the first time)")
            planned, options, fell_back = _plan(settings, video, values)
            width, height = web.display_size(planned)
            sizes = web.size_choices(width, height, options.max_output_pixels)
            chosen = size if size in [value for _, value in sizes.allowed] else "4x"
            text = MODEL.notice()
            update = {ui["plan"]: web.plan_markdown(planned),
                      ui["size"]: gr.update(choices=list(sizes.allowed), value=chosen,
                                            info=sizes.note or "4x keeps the exact shape; presets set the height."),
                      ui["notice"]: gr.update(value=text, visible=bool(text))}
            if fell_back:
                update[ui["engine"]] = "bicubic"
            return update

        def job_handler(sample: bool) -> Callable:
            @_user_errors
            def handler(video: str | None, engine: str, size: str, start: str, end: str, steps: float, seed: str,
                        codec: str, crf: float, scene_cuts: bool, request: gr.Request,
                        progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Iterator[dict]:
                values = (engine, size, start, end, steps, seed, codec, crf, scene_cuts)
                yield from _run_job(settings, ui, video, sample, values, _session(request), progress)

            handler.__name__ = "sample" if sample else "upscale"
            return handler

        @_user_errors
        def cancel(request: gr.Request) -> str:
            return "Cancelling…" if JOBS.cancel(_session(request)) else "Nothing is running."

        def on_load() -> tuple:
            text = MODEL.notice()
            return (gr.update(value=text, visible=bool(text)), "bicubic" if text else settings.engine,
                    web.device_text(settings))

        def on_unload(request: gr.Request) -> None:
            if JOBS.cancel(_session(request)):  # the visitor closed the tab: stop their job
                logger.info("a visitor left during their job: it is cancelled")

        plan_outputs = [plan, size, notice, engine]
        job_outputs = [status, slider, result, download, report, notice, engine]
        # When a handler fails, the error message pops up (gr.Error); the panel it would have filled says so
        # instead of showing what it showed before.
        planned = video.change(show_plan, [video, *controls], plan_outputs, concurrency_limit=4,
                               concurrency_id="plan", show_progress_on=[plan], api_name="plan")
        # A changed control plans again: choices at once, sliders when let go, times when left or submitted.
        triggers = [engine.input, size.input, codec.input, steps.release, crf.release, start.blur, start.submit,
                    end.blur, end.submit]
        replanned = gr.on(triggers, show_plan, [video, *controls], plan_outputs, concurrency_limit=4,
                          concurrency_id="plan", show_progress_on=[plan], trigger_mode="always_last",
                          api_visibility="private")
        for event in (planned, replanned):
            event.failure(lambda: PLAN_FAILED, None, plan, queue=False, api_visibility="private")
        codec.input(_crf_control, codec, crf, queue=False, api_visibility="private")
        for button, is_sample in ((run_btn, False), (sample_btn, True)):
            started = button.click(job_handler(is_sample), [video, *controls], job_outputs, concurrency_limit=1,
                                   concurrency_id=JOB_CONCURRENCY, show_progress_on=[status],
                                   api_name="sample" if is_sample else "upscale")
            started.failure(lambda: JOB_FAILED, None, status, queue=False, api_visibility="private")
        cancel_btn.click(cancel, None, status, queue=False, api_name="cancel")
        demo.load(on_load, None, [notice, engine, device], queue=False, api_visibility="private")
        demo.unload(on_unload)
    demo.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    return demo


def example_videos() -> list[Path]:
    """The bundled examples: two short clips with sound (480x270, 30 fps) that ship in the gradio wheel."""
    folder = Path(gr.__file__).resolve().parent / "media_assets" / "videos"
    return [folder / name for name in ("b.mp4", "world.mp4") if (folder / name).is_file()]


def example_dirs() -> list[Path]:
    """Folders holding the example videos (the server must be allowed to serve them)."""
    return sorted({path.parent for path in example_videos()})


def launch_arguments(settings: UpscaleOptions) -> dict[str, Any]:
    """``demo.launch`` keyword arguments from the environment and the settings."""
    env = environment.read()
    return {
        "server_name": env.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        "server_port": int(env.get("GRADIO_SERVER_PORT", "7860")),
        "max_file_size": f"{settings.max_upload_mb}mb",
        "allowed_paths": [str(settings.output_dir.resolve()), *(str(p) for p in example_dirs())],
        "show_error": False,
        "ssr_mode": False,
        "footer_links": ["gradio"],
        "theme": THEME,
        "css": CSS,
    }


def main() -> None:
    configure_logging()
    settings = build_options()
    build_demo(settings).launch(**launch_arguments(settings))


if __name__ == "__main__":
    main()
