"""A slow service, for graceful-shutdown and backpressure tests."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Annotated, Any

import msgspec

from osiris_contracts.messages import GenerateChunk
from osiris_core import Actor, PluginConfig, RequestContext, control_op, hookimpl, service
from osiris_core.protocol import ControlOp
from osiris_core.subjects import Subject


class SlowConfig(PluginConfig, frozen=True, kw_only=True):
    delay_s: float = 0.5
    start_delay_s: float = 0.0
    """on_start takes this long (a model loading)."""


class SlowRequest(msgspec.Struct):
    n: int
    pause_s: float = 0.0
    """`count` waits this long between chunks."""


SLOW_WORK = Subject("test.slow.work", "service", "slow", SlowRequest, None, idempotent=True,
                    description="sleeps delay_s, answers {n, pid}")
class BurnRequest(msgspec.Struct):
    seconds: float = 1.0


SLOW_BURN = Subject("test.slow.burn", "service", "slow", BurnRequest, None,
                    description="burns CPU in an executor thread for `seconds` (profiling tests)")
SLOW_COUNT = Subject("test.slow.count", "service", "slow", SlowRequest, GenerateChunk,
                     idempotent=True, description="streams chunks 0..n-1, then done")


class DelayArgs(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    delay_s: Annotated[float, msgspec.Meta(ge=0)]


class DelayResult(msgspec.Struct, kw_only=True):
    before: float
    delay_s: float


class SetDelayOp(ControlOp[DelayResult], tag="set_delay"):
    """A typed control op (`@control_op`): `work` sleeps `delay_s` from now on."""

    args: DelayArgs


class SlowActor(Actor[SlowConfig]):
    name = "slow"

    async def on_start(self) -> None:
        await asyncio.sleep(self.config.start_delay_s)
        self.delay_s = self.config.delay_s
        self.active = 0
        self.peak = 0
        self.ticking = True
        self.ended = ""
        self.ticker = self.spawn(self._tick(), "ticker")

    async def _tick(self) -> None:
        try:
            while self.ticking:
                await asyncio.sleep(0.01)
            self.ended = "gracefully"
        except asyncio.CancelledError:
            self.ended = "cancelled"
            raise

    async def on_stop(self) -> None:
        self.ticking = False  # ask our own task to finish; the framework cancels only leftovers
        await self.ticker

    @service(SLOW_WORK)
    async def work(self, req: SlowRequest) -> dict[str, int]:
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.active -= 1
        return {"n": req.n, "pid": os.getpid()}

    @service(SLOW_BURN)
    async def burn(self, req: BurnRequest) -> dict[str, int]:
        """CPU work off the loop, like a model's generation in its executor thread."""
        rounds = await asyncio.get_running_loop().run_in_executor(None, burn_cpu, req.seconds)
        return {"rounds": rounds}

    @service(SLOW_COUNT)
    async def count(self, req: SlowRequest, ctx: RequestContext) -> GenerateChunk:
        """Streams chunks 0..n-1 to the reply inbox, then a final done chunk."""
        for i in range(req.n):
            if req.pause_s:
                await asyncio.sleep(req.pause_s)
            await ctx.bus.nc.publish(ctx.reply, msgspec.json.encode(
                GenerateChunk(text=str(i), index=i)))
        return GenerateChunk(text="", index=req.n, done=True,
                             generated_text="".join(str(i) for i in range(req.n)))

    @control_op
    async def set_delay(self, op: SetDelayOp) -> DelayResult:
        before, self.delay_s = self.delay_s, op.args.delay_s
        return DelayResult(before=before, delay_s=self.delay_s)

    async def on_control(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        """An untyped op, as a third-party actor written before `@control_op` serves it."""
        if op == "peak":
            return {"peak": self.peak}
        return await super().on_control(op, args)

    def facts(self) -> dict[str, Any]:
        return {"peak": self.peak}


def burn_cpu(seconds: float) -> int:
    """Hash for `seconds` (the frame a profile of a busy `slow` must show)."""
    end, rounds, data = time.monotonic() + seconds, 0, b"osiris" * 100
    while time.monotonic() < end:
        data = hashlib.sha256(data).digest() * 20
        rounds += 1
    return rounds


@hookimpl
def register_config(register: Any) -> None:
    register(SlowConfig)


@hookimpl
def register_subjects(register: Any) -> None:
    register(SLOW_WORK)
    register(SLOW_COUNT)
    register(SLOW_BURN)


@hookimpl
def register_actors(register: Any) -> None:
    register(SlowActor)


@hookimpl
def register_commands(cli: Any) -> None:
    import click

    @cli.command(name="slow-hello")
    @click.argument("who")
    def slow_hello(who: str) -> None:
        """A verb contributed by the slow test plugin."""
        click.echo(f"hello {who} from the slow plugin")


def slow_route() -> str:
    """A stand-in route object; the gateway mounts whatever plugins register."""
    return "slow"


@hookimpl
def register_routes(register: Any) -> None:
    register(slow_route)


def prepare_demo(data_dir: Any) -> dict[str, Any]:
    """Demo preparation: writes a marker under data_dir, proposes a short delay."""
    (data_dir / "slow-demo-ready").write_text("ok")
    return {"delay_s": 0.01}


@hookimpl
def register_demo(register: Any) -> None:
    register(prepare_demo, hints=[("request test.slow.count '{\"n\": 3}'", "a token stream")])
