"""`start_eagerly`: a request runs at once and becomes a task only when it suspends, in a
context of its own; a suspended one is cancelled like any task."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from osiris_core.runtime.eager import start_eagerly

VAR: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller")


async def test_a_coroutine_that_never_suspends_needs_no_task() -> None:
    done: list[str] = []

    async def quick() -> None:
        VAR.set("request")
        done.append(VAR.get())

    assert start_eagerly(asyncio.get_running_loop(), quick()) is None
    assert done == ["request"] and VAR.get() == "caller"  # its context was its own


async def test_one_that_suspends_goes_on_as_a_task_in_its_own_context() -> None:
    gate = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def slow() -> None:
        VAR.set("request")
        seen.append(f"before {await gate}")
        seen.append(VAR.get())

    task = start_eagerly(asyncio.get_running_loop(), slow())
    assert task is not None and seen == [] and VAR.get() == "caller"
    gate.set_result("go")
    await task
    assert seen == ["before go", "request"]


async def test_a_suspended_one_is_cancelled_into_its_own_handlers() -> None:
    cleaned: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cleaned.append("cut off")
            raise

    task = start_eagerly(asyncio.get_running_loop(), waits())
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["cut off"]


async def test_its_exception_after_suspending_is_the_tasks() -> None:
    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    task = start_eagerly(asyncio.get_running_loop(), fails())
    assert task is not None
    with pytest.raises(ValueError, match="boom"):
        await task
