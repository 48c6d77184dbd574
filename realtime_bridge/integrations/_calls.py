"""Calling an application's callback whether it was written ``def`` or ``async def``.

The integrations take the application's functions (find the user, authorise a
channel, handle a webhook) in either form, as Starlette and FastAPI take
endpoints. A plain function runs in a worker thread, as Starlette runs a
plain endpoint, so a blocking database lookup in it does not stall every
other request on the event loop.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["call", "is_async_callable"]


def is_async_callable(function: object) -> bool:
    """Whether calling ``function`` gives a coroutine (``async def``, partials, ``__call__``)."""
    while isinstance(function, functools.partial):
        function = function.func
    if inspect.iscoroutinefunction(function):
        return True
    return inspect.iscoroutinefunction(type(function).__call__)  # an object's async __call__


async def call(function: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``await function(...)`` if it is async, else run it in a worker thread."""
    if is_async_callable(function):
        return await function(*args, **kwargs)
    result = await asyncio.to_thread(function, *args, **kwargs)
    if inspect.isawaitable(result):  # a plain function that hands back a coroutine
        return await result
    return result
