"""The two-lane queue: priority first, FIFO within a lane, bounded, closable."""

from __future__ import annotations

import asyncio

import pytest

from grace.mesh.queue import EventQueue, QueueClosed


async def test_priority_lane_is_served_first_and_lanes_are_fifo() -> None:
    """Priority items come out before normal ones, each lane in order."""
    q: EventQueue[int] = EventQueue(10)
    for i in range(3):
        assert q.put_nowait(i)
    assert q.put_nowait(100, priority=True)
    assert q.put_nowait(101, priority=True)
    assert [await q.get() for _ in range(5)] == [100, 101, 0, 1, 2]


async def test_full_lane_pushes_back_until_a_get() -> None:
    """put waits while its lane is full and resumes when an item is taken."""
    q: EventQueue[int] = EventQueue(1)
    await q.put(1)
    assert not q.put_nowait(2)
    assert q.put_nowait(9, priority=True)  # the other lane has its own room
    waiting = asyncio.create_task(q.put(2))
    await asyncio.sleep(0)
    assert not waiting.done()
    assert await q.get() == 9
    await asyncio.sleep(0)
    assert not waiting.done()  # the priority slot freed, not the normal one
    assert await q.get() == 1
    await asyncio.wait_for(waiting, 1)
    assert await q.get() == 2


async def test_close_drains_then_signals_the_end() -> None:
    """After close, queued items are still taken, then get raises and put refuses."""
    q: EventQueue[int] = EventQueue(5)
    q.put_nowait(1)
    getter = asyncio.create_task(q.get())
    assert await getter == 1
    blocked_get = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.close()
    with pytest.raises(QueueClosed):
        await blocked_get
    with pytest.raises(QueueClosed):
        await q.put(2)
    assert not q.put_nowait(2)


async def test_cancelled_waiter_does_not_swallow_a_wake_up() -> None:
    """A getter cancelled after being woken hands the wake-up to the next getter."""
    q: EventQueue[int] = EventQueue(5)
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait(7)
    first.cancel()
    assert await asyncio.wait_for(second, 1) == 7


def test_capacity_must_be_positive() -> None:
    """A queue without room is a configuration error."""
    with pytest.raises(ValueError, match="at least 1"):
        EventQueue(0)
