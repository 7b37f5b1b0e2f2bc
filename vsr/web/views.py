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
    progress display; the previous result is cleared when a job starts."""
    view: dict[str, Any] = {}
    if update.notice is not None:
        view.update(notice={"value": update.notice, "visible": True}, engine="bicubic")
    if update.starting:
        view.update(slider=None, result=None, report="", download={"value": None, "visible": False})
    if update.status is not None:
        view["status"] = update.status
    if update.pictures is not None:
        view["slider"] = update.pictures
    if update.result is not None:
        result = update.result
        view.update(result=str(result.preview or result.output), report=update.report,
                    download={"value": str(result.output), "visible": True, "label": f"Download {result.output.name}"})
    elif update.status is not None and update.status.startswith("Cancelled"):
        view["slider"] = None
    return view
