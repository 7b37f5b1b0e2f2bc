"""The web app's logic that needs no Gradio, tested without a browser; ``app.py`` is its layout.

- ``sessions``: the page's state and jobs (plan with the visible fallback, run, cancel, ZeroGPU call);
- ``controls``: the page's controls -> job options; the output sizes an input allows;
- ``handlers``: every handler's errors through ``app.py``'s one translator;
- ``texts``: what the page says; ``preview``: the before/after pictures; ``folders``: job folders.
- ``live``: the Live page (a camera in, the upscaled picture out; drops, figures, the input size).
"""
