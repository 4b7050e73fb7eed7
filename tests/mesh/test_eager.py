"""Eager calls behave exactly like awaiting under a Task, timers only when waiting."""

from __future__ import annotations

import asyncio

import pytest

from grace.mesh._eager import call_with_timeout


async def immediate(x: int) -> int:
    """Returns without suspending."""
    return x * 2


async def waits(x: int) -> int:
    """Suspends on a real future, a bare yield and a sleep before returning."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[int] = loop.create_future()
    loop.call_soon(fut.set_result, x)
    value = await fut
    await asyncio.sleep(0)
    await asyncio.sleep(0.001)
    return value + 1


async def fails_after_wait() -> None:
    """Raises from a future's exception after suspending."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()
    loop.call_soon(fut.set_exception, ValueError("late"))
    await fut


async def test_results_with_and_without_suspension() -> None:
    """Values come back whether or not the coroutine had to wait."""
    assert await call_with_timeout(immediate(21), 1) == 42
    assert await call_with_timeout(waits(41), 1) == 42


async def test_exceptions_propagate_from_both_paths() -> None:
    """An immediate raise and a raise after waiting both reach the caller."""

    async def boom() -> None:
        raise KeyError("now")

    with pytest.raises(KeyError, match="now"):
        await call_with_timeout(boom(), 1)
    with pytest.raises(ValueError, match="late"):
        await call_with_timeout(fails_after_wait(), 1)


async def test_timeout_cancels_the_coroutine_at_its_await() -> None:
    """A slow coroutine is cancelled (its cleanup runs) and the caller gets TimeoutError."""
    cleaned: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        finally:
            cleaned.append("done")

    with pytest.raises(TimeoutError):
        await call_with_timeout(slow(), 0.02)
    assert cleaned == ["done"]


async def test_caller_cancellation_reaches_the_coroutine() -> None:
    """Cancelling the caller cancels the eagerly started coroutine too."""
    seen: list[str] = []

    async def slow() -> None:
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = asyncio.create_task(call_with_timeout(slow(), 10))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]


async def test_plain_awaitables_are_supported() -> None:
    """A future (not a coroutine) works, with the timeout armed."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    loop.call_later(0.001, fut.set_result, "ok")
    assert await call_with_timeout(fut, 1) == "ok"
    never: asyncio.Future[str] = loop.create_future()
    with pytest.raises(TimeoutError):
        await call_with_timeout(never, 0.01)
