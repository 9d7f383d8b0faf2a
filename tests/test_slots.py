"""An actor's concurrency slots: bounded, first come first served, cancellation-safe."""

from __future__ import annotations

import asyncio

import pytest

from osiris_core.runtime.slots import Slots


async def test_slots_bound_concurrency_and_serve_waiters_in_order() -> None:
    slots = Slots(2)
    assert slots.take() and slots.take() and not slots.take()
    order: list[int] = []

    async def wait(i: int) -> None:
        await slots.acquire()
        order.append(i)

    waiters = [asyncio.ensure_future(wait(i)) for i in range(3)]
    await asyncio.sleep(0)
    assert order == []
    slots.release()
    slots.release()
    await asyncio.sleep(0)
    assert order == [0, 1]  # the two freed slots went to the first two, in arrival order
    assert not slots.take()  # a newcomer does not jump the queue of waiter 2
    slots.release()
    await asyncio.gather(*waiters)
    assert order == [0, 1, 2]


async def test_a_cancelled_waiter_holds_no_slot() -> None:
    slots = Slots(1)
    assert slots.take()
    gone = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    slots.release()
    assert slots.take()  # the slot came back: the cancelled waiter took none
    # handed a slot and cancelled before it ran: the slot is passed on, not lost
    late = asyncio.ensure_future(slots.acquire())
    await asyncio.sleep(0)
    slots.release()  # resolves late's future...
    late.cancel()  # ...but late is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await late
    assert slots.take() and not slots.take()


async def test_slots_as_a_context_manager_and_bad_size() -> None:
    slots = Slots(1)
    async with slots:
        assert not slots.take()  # held
    assert slots.take()  # given back
    with pytest.raises(ValueError):
        Slots(0)
