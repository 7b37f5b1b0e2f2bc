"""What the page's parts show after a plan and at each step of a job, as plain data (no Gradio).

Each view maps a part's name (``app.build_demo``'s ``ui``) to its new value, or to a dict of the
properties to change (``app`` turns those into ``gr.update``); parts not named stay as they are.
"""

from __future__ import annotations

from typing import Any

from vsr.web import controls, texts


def load_view(jobs: Any, settings: Any) -> dict[str, Any]:
    """The page when it opens: the model notice (and bicubic) when the model failed to load, and
    where the server runs the model."""
    notice = jobs.model.notice()
    return {"notice": {"value": notice, "visible": bool(notice)}, "engine": "bicubic" if notice else settings.engine,
            "device": texts.device_text(settings)}


def plan_view(jobs: Any, video: str | None, values: tuple) -> dict[str, Any]:
    """The page after an upload or a changed control (``values`` in ``controls.CONTROLS`` order):
    the plan in words, the output sizes this video allows, the model notice, and the engine switched
    to bicubic when the diffusion model could not be loaded (``WebJobs.plan``'s visible fallback)."""
    if not video:
        return {"plan": texts.PLAN_HINT}
    planned = jobs.plan(video, values)
    size = dict(zip(controls.CONTROLS, values))["size"]
    sizes, chosen, info = controls.size_control(planned.plan, planned.options.max_output_pixels, size,
                                                texts.SIZE_INFO)
    notice = jobs.model.notice()
    view: dict[str, Any] = {"plan": texts.plan_markdown(planned.plan),
                            "size": {"choices": sizes, "value": chosen, "info": info},
                            "notice": {"value": notice, "visible": bool(notice)}}
    if planned.fell_back:
        view["engine"] = "bicubic"
    return view


def crf_view(codec: str) -> dict[str, Any]:
    """The quality slider for ``codec``: its range and default, or hidden when the codec has no CRF
    (then without a value: Gradio refuses a slider without a number; ``controls`` ignores it)."""
    spec = controls.crf_slider(codec)
    if spec is None:
        return {"visible": False}
    return {"visible": True, "minimum": spec.minimum, "maximum": spec.maximum, "value": spec.value, "info": spec.info}


def job_view(update: Any) -> dict[str, Any]:
    """The page for one ``sessions.JobUpdate`` of a running job. The status line is the job's only
    progress display; the previous result is cleared when a job starts. While the job runs, its
    result plays in the stream player (each chunk as it comes, and a note on the speed); the verified
    file replaces it at the end."""
    view: dict[str, Any] = {}
    if update.notice is not None:
        view.update(notice={"value": update.notice, "visible": True}, engine="bicubic")
    if update.starting:  # the streamed result takes the result's place until the verified file is there
        view.update(slider=None, result={"value": None, "visible": False}, report="",
                    download={"value": None, "visible": False}, stream={"visible": True},
                    stream_note={"value": "", "visible": True})
    if update.status is not None:
        view["status"] = update.status
    if update.pictures is not None:
        view["slider"] = update.pictures
    if update.chunk is not None:
        view["stream"] = update.chunk
    if update.stream_note is not None:
        view["stream_note"] = update.stream_note
    if update.stream_ended:  # (its own update: the result's last value stays a plain path for API callers)
        view.update(stream={"visible": False}, stream_note={"value": "", "visible": False}, result={"visible": True})
    if update.result is not None:
        result = update.result
        view.update(result=str(result.preview or result.output), report=update.report,
                    download={"value": str(result.output), "visible": True, "label": f"Download {result.output.name}"})
    elif update.status is not None and update.status.startswith("Cancelled"):
        view["slider"] = None
    return view
