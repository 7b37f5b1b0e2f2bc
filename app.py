"""The web app: upload a video, see the plan, watch it upscale live, compare, download.

Layout and wiring only. The page's logic lives in ``vsr.web`` (``sessions``: planning with the
visible bicubic fallback, running, cancelling, job folders; ``texts``: what the page says;
``controls``: controls -> options), the work in ``vsr.job``. Errors become ``gr.Error`` in exactly
one place (``_user_errors``). Run it with ``python app.py``; it listens on
GRADIO_SERVER_NAME:GRADIO_SERVER_PORT (127.0.0.1:7860).

On a Hugging Face ZeroGPU Space the upscaling runs inside a ``spaces.GPU`` function whose reservation
comes from the plan (``JobPlan.gpu_seconds``); the model loads and runs only inside it.
"""

from __future__ import annotations

try:  # ZeroGPU needs ``spaces`` imported before torch initialises CUDA.
    import spaces
except ImportError:
    spaces = None

import functools
import inspect
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gradio as gr

from media import MediaError
from vsr import environment
from vsr.job.errors import JobError
from vsr.logs import configure_logging
from vsr.model.errors import ModelLoadError
from vsr.options import CODECS, CRF_RANGE, OptionsError, UpscaleOptions, build_options
from vsr.web import sessions, texts
from vsr.web.controls import SIZE_LABELS, display_size, size_choices

logger = logging.getLogger("app")

QUEUE_SIZE = 16
"""How many jobs may wait in line behind the running one; the next visitor is told to come back."""
JOB_CONCURRENCY = "upscale"  # one job at a time on this process's device
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
            message = texts.model_error_text(error) if isinstance(error, ModelLoadError) else str(error)
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


JOB_EVENTS = sessions.gpu_function(spaces) if spaces is not None else sessions.job_events
"""The job generator: under ZeroGPU the ``spaces.GPU`` function (decorated at import, as ZeroGPU
requires); elsewhere ``spaces.GPU`` changes nothing, or ``spaces`` is not installed."""


def _page_update(ui: dict, update: sessions.JobUpdate, progress: gr.Progress) -> dict:
    """A ``JobUpdate`` of the running job as component updates."""
    out: dict = {}
    if update.notice is not None:
        out[ui["notice"]] = gr.update(value=update.notice, visible=True)
        out[ui["engine"]] = "bicubic"
    if update.starting:
        out.update({ui["slider"]: None, ui["result"]: None, ui["report"]: "",
                    ui["download"]: gr.update(value=None, visible=False)})
    if update.progress is not None:
        progress(update.progress, desc="Upscaling", unit="frames")
    if update.status is not None:
        out[ui["status"]] = update.status
    if update.pictures is not None:
        out[ui["slider"]] = update.pictures
    if update.result is not None:
        result = update.result
        out.update({ui["result"]: str(result.preview or result.output), ui["report"]: update.report,
                    ui["download"]: gr.update(value=str(result.output), visible=True,
                                              label=f"Download {result.output.name}")})
    elif update.status is not None and update.status.startswith("Cancelled"):
        out[ui["slider"]] = None
    return out


def _session(request: gr.Request | None) -> str:
    return (request.session_hash if request is not None else None) or "anonymous"


def _crf_control(codec: str) -> dict:
    """The quality slider for ``codec``: its CRF range and default, hidden when it has no CRF."""
    spec = CRF_RANGE.get(codec)
    if spec is None:
        return gr.update(visible=False)  # its value is ignored for this codec (vsr.web.controls.control_overrides)
    low, high, default = spec
    return gr.update(visible=True, minimum=low, maximum=high, value=default,
                     info=f"{low} = best and largest, {high} = smallest; {default} is the default for {codec}.")


# ---------------------------------------------------------------------------------------------
# Layout and wiring.


def build_demo(settings: UpscaleOptions | None = None, *, jobs: sessions.WebJobs | None = None) -> gr.Blocks:
    """The whole page, wired to its handlers, with the queue set up. ``settings`` defaults to the
    environment's (``build_options()``); ``jobs`` (the page's state) to a new ``WebJobs`` on them."""
    settings = settings or build_options()
    jobs = jobs or sessions.WebJobs(settings, events=JOB_EVENTS)
    with gr.Blocks(title="Stream-DiffVSR video upscaler", analytics_enabled=False,
                   delete_cache=(3600, sessions.KEEP_SECONDS)) as demo:
        gr.Markdown("# Stream-DiffVSR video upscaler\nMake a small or blurry video **4x sharper**. "
                    "Sound, subtitles and timing are kept exactly.")
        gr.Markdown(texts.limits_text(settings, QUEUE_SIZE, zero_gpu=jobs.zero_gpu), elem_id="limits")
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
                    size = gr.Radio(list(SIZE_LABELS), value=settings.height_label.removesuffix("p"),
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
            planned = jobs.plan(video, values)
            width, height = display_size(planned.plan)
            sizes = size_choices(width, height, planned.options.max_output_pixels)
            chosen = size if size in [value for _, value in sizes.allowed] else "4x"
            text = jobs.model.notice()
            update = {ui["plan"]: texts.plan_markdown(planned.plan),
                      ui["size"]: gr.update(choices=list(sizes.allowed), value=chosen,
                                            info=sizes.note or "4x keeps the exact shape; presets set the height."),
                      ui["notice"]: gr.update(value=text, visible=bool(text))}
            if planned.fell_back:
                update[ui["engine"]] = "bicubic"
            return update

        def job_handler(sample: bool) -> Callable:
            @_user_errors
            def handler(video: str | None, engine: str, size: str, start: str, end: str, steps: float, seed: str,
                        codec: str, crf: float, scene_cuts: bool, request: gr.Request,
                        progress: gr.Progress = gr.Progress(track_tqdm=True)) -> Iterator[dict]:
                values = (engine, size, start, end, steps, seed, codec, crf, scene_cuts)
                for update in jobs.run(video, values, sample, _session(request)):
                    yield _page_update(ui, update, progress)

            handler.__name__ = "sample" if sample else "upscale"
            return handler

        @_user_errors
        def cancel(request: gr.Request) -> str:
            return "Cancelling…" if jobs.cancel(_session(request)) else "Nothing is running."

        def on_load() -> tuple:
            text = jobs.model.notice()
            return (gr.update(value=text, visible=bool(text)), "bicubic" if text else settings.engine,
                    texts.device_text(settings))

        def on_unload(request: gr.Request) -> None:
            if jobs.cancel(_session(request)):  # the visitor closed the tab: stop their job
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
