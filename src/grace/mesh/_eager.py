"""Run a coroutine eagerly: no task and no timer unless it really has to wait.

Most mesh callbacks (trust scorers with a cache, validators, counting handlers) finish
without ever suspending. Wrapping each in a Task and an ``asyncio.timeout`` costs more
than the work itself. Here a coroutine is first stepped synchronously; only when it
suspends on a future is the rest driven — under a timeout — by the awaiting coroutine,
the way ``asyncio.Task`` would drive it (Python 3.12's eager tasks do the same).

Invariants: the coroutine sees exactly the results, exceptions and cancellations it
would see under a Task; a timeout cancels it at its current await point and raises
``TimeoutError`` to the caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Coroutine
from types import CoroutineType
from typing import Any, TypeVar

__all__ = ["call_with_timeout", "finish", "run_now", "start"]

T = TypeVar("T")

_PENDING: Any = object()


def start(coro: Coroutine[Any, Any, T]) -> tuple[Any, T | None]:
    """Step ``coro`` until it first suspends.

    Returns ``(None, result)`` if it finished, else ``(yielded, None)`` where ``yielded`` is
    what it waits on — pass both to :func:`finish`. Exceptions propagate.
    """
    try:
        yielded = coro.send(None)
    except StopIteration as stop:
        return None, stop.value
    return (_PENDING if yielded is None else yielded), None


async def finish(coro: Coroutine[Any, Any, T], yielded: Any) -> T:
    """Drive a started coroutine to its end, as a Task would."""
    while True:
        try:
            if yielded is _PENDING:
                await asyncio.sleep(0)  # a bare ``yield``: give the loop one turn
            else:
                # The coroutine yielded the future with its "blocking" flag set, for a Task
                # to take over; we take over, so clear it as Task.__step does.
                yielded._asyncio_future_blocking = False
                await yielded
        except BaseException as exc:  # noqa: BLE001 - re-raised inside the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        else:
            try:
                yielded = coro.send(None)
            except StopIteration as stop:
                return stop.value  # type: ignore[no-any-return]
        if yielded is None:
            yielded = _PENDING


def run_now(awaitable: Awaitable[T]) -> tuple[bool, Any]:
    """Run ``awaitable`` as far as it goes without waiting.

    ``(True, result)`` when it finished; ``(False, rest)`` when it has to wait, ``rest``
    being an awaitable that finishes it (await it — under a timeout if you like).
    Exceptions raised before the first wait propagate.
    """
    if type(awaitable) is not CoroutineType:
        return False, awaitable
    try:
        yielded = awaitable.send(None)
    except StopIteration as stop:
        return True, stop.value
    return False, finish(awaitable, _PENDING if yielded is None else yielded)


async def call_with_timeout(awaitable: Awaitable[T], seconds: float) -> T:
    """``await awaitable`` with a timeout that is only armed if it has to wait."""
    done, value = run_now(awaitable)
    if done:
        return value  # type: ignore[no-any-return]
    async with asyncio.timeout(seconds):
        return await value  # type: ignore[no-any-return]
