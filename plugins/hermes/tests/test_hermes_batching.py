"""Batched generation: requests waiting for the model run as one batch, each answered with
exactly the text it gets alone, the short ones before the long ones of their batch; a
cancelled row stops without touching the others. The Batcher's own rules (grouping by
sampling settings, order, cancel before start, errors) are checked without a model."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_hermes.batching import Batcher
from osiris_hermes.engine import Row

from osiris_contracts.messages import GenerateChunk, GenerateReply
from osiris_contracts.subjects import HERMES_GENERATE
from osiris_core.errors import ServiceError, Unavailable
from osiris_core.protocol import ControlReply
from osiris_core.subjects import REQUEST_ID_HEADER, cancel, control

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

# different lengths, so the batch is left-padded
REQUESTS = [
    {"prompt": "Assess this proposal: AAPL LONG, stop 3%, target 9%.", "max_length": 24},
    {"prompt": "Assess NVDA", "max_length": 40},
    {"prompt": "Short TSLA now? The market looks weak after the earnings call.", "max_length": 8},
    {"prompt": "Hi", "max_length": 32},
    {"prompt": "Why would a desk cut MSFT exposure before the Fed?", "max_length": 16},
    {"prompt": "Rate this: GOOG LONG, stop 2%, target 5%.", "max_length": 28},
]


HOLD = {"prompt": "Hold the model while the next requests queue", "max_length": 600}
"""A first request that keeps the model busy (about 2 s on the tiny model) while the next
requests arrive and wait: they then run as one batch."""


def _cfg(osiris_config: Any, model: Path, **extra: Any) -> Any:
    return osiris_config(plugins=["hermes"], tables={"hermes": {
        "model": str(model), "device": "cpu", "max_concurrency": 32, **extra}})


async def _facts(bus: Any) -> dict[str, Any]:
    reply = await bus.request(control("hermes"), {"op": "status", "args": {}},
                              reply_type=ControlReply, timeout=60)
    return reply.status.facts


async def _gen(bus: Any, req: dict[str, Any]) -> GenerateReply:
    return await bus.request(HERMES_GENERATE, req, reply_type=GenerateReply, timeout=60)


async def test_concurrent_requests_are_batched_and_each_gets_its_own_text(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes", batch_size=4)):
        alone = [await _gen(bus, r) for r in REQUESTS]  # one at a time: batches of one
        before = await _facts(bus)
        assert before["batch_largest"] == 1 and before["batches"] == len(REQUESTS)
        together = await asyncio.gather(*(_gen(bus, r) for r in REQUESTS * 2))
        facts = await _facts(bus)
        ran = facts["batches"] - before["batches"]
        assert facts["batch_largest"] == 4, facts  # the limit is kept, and reached
        assert ran < 2 * len(REQUESTS), facts
        for i, reply in enumerate(together):
            expected = alone[i % len(REQUESTS)]
            assert reply.generated_text == expected.generated_text, REQUESTS[i % len(REQUESTS)]
            assert reply.usage == expected.usage
        # streamed rows of a batch get the same text, chunk by chunk
        streams = await asyncio.gather(*(_chunks(bus, r) for r in REQUESTS[:4]))
        for chunks, expected in zip(streams, alone, strict=False):
            assert "".join(c.text for c in chunks) == expected.generated_text
            assert chunks[-1].done and chunks[-1].usage == expected.usage


async def _chunks(bus: Any, req: dict[str, Any]) -> list[GenerateChunk]:
    return [c async for c in bus.stream(HERMES_GENERATE, {**req, "stream": True},
                                        item_type=GenerateChunk, timeout=60)]


async def test_a_short_row_is_answered_before_the_long_rows_of_its_batch(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes", batch_size=8)):
        await _gen(bus, {"prompt": "warm", "max_length": 1})
        # the first request holds the model; the next two wait for it and then run together
        first = asyncio.ensure_future(_gen(bus, HOLD))
        await _until(bus, lambda f: f["batches"] >= 2)
        seen: list[GenerateChunk] = []
        at_short: list[int] = []

        async def long_stream() -> None:
            async for c in bus.stream(HERMES_GENERATE, {"prompt": "Assess NVDA",
                                                        "max_length": 400, "stream": True},
                                      item_type=GenerateChunk, timeout=60):
                seen.append(c)

        async def short() -> None:
            await _gen(bus, {"prompt": "Assess AAPL", "max_length": 2})
            at_short.append(len(seen))

        await asyncio.gather(first, long_stream(), short())
        facts = await _facts(bus)
        assert facts["batches"] == 3 and facts["batch_largest"] == 2, facts
        # the short row was answered while its batch-mate was still generating, not at the end
        assert seen[-1].done and len(seen) - at_short[0] > 50, (at_short, len(seen))


async def _until(bus: Any, ok: Any, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while not ok(await _facts(bus)):
        assert time.monotonic() < end
        await asyncio.sleep(0.01)


async def test_a_cancelled_row_stops_and_its_batch_finishes_for_the_others(
        tiny_models, osiris_config, osiris_runtime, bus):
    async with osiris_runtime(_cfg(osiris_config, tiny_models / "hermes", batch_size=8)):
        other_req = {"prompt": "Assess AAPL", "max_length": 300}
        alone = await _gen(bus, other_req)
        first = asyncio.ensure_future(_gen(bus, HOLD))
        await _until(bus, lambda f: f["batches"] >= 2)
        inbox = bus.nc.new_inbox()
        sub = await bus.nc.subscribe(inbox)
        await bus.nc.publish(str(HERMES_GENERATE), msgspec.json.encode(
            {"prompt": "Assess NVDA", "max_length": 2000, "stream": True}), reply=inbox,
            headers={REQUEST_ID_HEADER: "r-cancel"})
        other = asyncio.ensure_future(_gen(bus, other_req))
        chunk = msgspec.json.decode((await sub.next_msg(timeout=60)).data, type=GenerateChunk)
        assert not chunk.done
        await bus.publish(cancel("hermes"), {"request_id": "r-cancel"})
        while not chunk.done:
            chunk = msgspec.json.decode((await sub.next_msg(timeout=60)).data,
                                        type=GenerateChunk)
        assert chunk.usage is not None and chunk.usage["completion_tokens"] < 2000
        reply = await other  # its batch-mate ran on: the same text as alone
        assert reply.generated_text == alone.generated_text and reply.usage == alone.usage
        await first
        facts = await _facts(bus)
        assert facts["cancelled"] == 1 and facts["batch_largest"] == 2, facts


# --- the Batcher's rules, without a model ------------------------------------------------
class _Model:
    """Records each batch; each row gets `len(prompt)` tokens unless its flag stops it."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[list[int]], Hashable]] = []
        self.release = threading.Event()
        self.fail: Exception | None = None

    def run(self, rows: list[Row], key: Hashable) -> None:
        self.batches.append(([r.prompt_ids for r in rows], key))
        self.release.wait(10)
        if self.fail is not None:
            rows[0].out = [0]
            rows[0].finish()  # answered before the failure: keeps its answer
            raise self.fail
        for r in rows:
            r.out = list(r.prompt_ids[: r.max_new_tokens])
            r.finish()


async def test_batcher_groups_by_key_in_order_up_to_the_size() -> None:
    model = _Model()
    b = Batcher(model.run, asyncio.Semaphore(1), parallel=1, size=2)
    jobs = [asyncio.ensure_future(b.submit(Row([i], 5), key))
            for i, key in enumerate(["g", "g", "s", "g", "g", "s"])]
    await asyncio.sleep(0.05)
    model.release.set()
    assert await asyncio.gather(*jobs) == [[i] for i in range(6)]
    # first come first served: the first waiting job picks its batch-mates by key
    assert model.batches == [([[0], [1]], "g"), ([[2], [5]], "s"), ([[3], [4]], "g")]
    assert b.facts()["batch_largest"] == 2 and b.runners == 0


async def test_batcher_drops_a_cancelled_waiter_and_fails_only_open_rows() -> None:
    model = _Model()
    b = Batcher(model.run, asyncio.Semaphore(1), parallel=1, size=4)
    head = asyncio.ensure_future(b.submit(Row([0], 5), "g"))
    await asyncio.sleep(0.02)
    gone = asyncio.ensure_future(b.submit(Row([1], 5), "g"))
    flagged = Row([2], 5)
    told = asyncio.ensure_future(b.submit(flagged, "g"))
    kept = asyncio.ensure_future(b.submit(Row([3], 5), "g"))
    await asyncio.sleep(0.02)
    gone.cancel()
    flagged.stop_flag.set()  # a cancel notice before it started
    model.release.set()
    assert await head == [0] and await kept == [3]
    with pytest.raises(asyncio.CancelledError):
        await gone
    with pytest.raises(Unavailable, match="cancelled by the caller before it started"):
        await told
    assert model.batches[1][0] == [[3]]

    model.release.clear()
    model.fail = ServiceError("out of memory", code=503)
    a = asyncio.ensure_future(b.submit(Row([7], 5), "g"))
    c = asyncio.ensure_future(b.submit(Row([8], 5), "g"))
    await asyncio.sleep(0.02)
    model.release.set()
    assert await a == [0]  # finished before the failure
    with pytest.raises(ServiceError, match="out of memory"):
        await c


async def test_batcher_keeps_apart_rows_that_do_not_fit_together() -> None:
    """A batch runs every row to its longest prompt plus its largest max_new_tokens, so two
    requests that each fit the model's context may not fit as one batch."""
    model = _Model()
    context = 10
    b = Batcher(model.run, asyncio.Semaphore(1), parallel=1, size=8,
                fits=lambda rows: (max(len(r.prompt_ids) for r in rows)
                                   + max(r.max_new_tokens for r in rows)) <= context)
    long_prompt = asyncio.ensure_future(b.submit(Row(list(range(8)), 2), "g"))   # 8 + 2
    long_output = asyncio.ensure_future(b.submit(Row([1], 9), "g"))             # 1 + 9
    small = asyncio.ensure_future(b.submit(Row([2], 2), "g"))                   # fits both
    await asyncio.sleep(0.02)
    model.release.set()
    await asyncio.gather(long_prompt, long_output, small)
    assert [prompts for prompts, _ in model.batches] == [[list(range(8)), [2]], [[1]]]
