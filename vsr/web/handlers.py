"""Event handlers whose errors are handed to one translator (``app.py`` words them for the page).

``translating(fn, translate)`` wraps a handler, a plain function or a generator (a streaming job),
so that any exception it raises goes through ``translate(error, args, name)`` and the result is raised in
its place (``from None``: the page gets the translated error, the server log the original, which
``translate`` logs). Gradio needs the wrapper to keep the handler's signature: ``functools.wraps``.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any

Translate = Callable[[Exception, tuple, str], Exception]  # (error, the handler's arguments, its name)


def translating(fn: Callable, translate: Translate) -> Callable:
    """``fn`` with every ``Exception`` it raises replaced by ``translate(error, args, fn.__name__)``."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as error:  # noqa: BLE001 - every error is translated
                raise translate(error, args, fn.__name__) from None

        return generator

    @functools.wraps(fn)
    def function(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - every error is translated
            raise translate(error, args, fn.__name__) from None

    return function
