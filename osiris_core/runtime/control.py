"""The control protocol of one actor: `osiris.<actor>.control`.

The core's own ops (status, pause, resume, restart, profile) are typed (`protocol.CoreOp`), so
are the ops an actor declares with `@control_op`; any other op is passed to
`Actor.on_control(op, args)`. Every reply is a `ControlReply` carrying the actor's status after
the op and the op's result; a failed op is an error reply like any request's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from nats.aio.msg import Msg

from osiris_core.actor import Actor, ControlSpec
from osiris_core.errors import ServiceError, Unavailable
from osiris_core.nats.bus import encode
from osiris_core.protocol import (
    CORE_OPS,
    ControlOp,
    ControlReply,
    ControlRequest,
    CoreOp,
    NoResult,
    PauseOp,
    ProfileOp,
    ProfileResult,
    RestartOp,
    ResumeOp,
    StatusOp,
    decode_control,
    op_name,
    read_op_name,
)
from osiris_core.runtime.dispatch import bad_request, reply_budget, respond_error
from osiris_core.runtime.lifecycle import State
from osiris_core.subjects import control

if TYPE_CHECKING:
    from osiris_core.runtime.host import ControlledCell

__all__ = ["ControlServer"]


class ControlServer:
    """Answers one cell's control subject (up even while the actor is failed)."""

    def __init__(self, cell: ControlledCell, ops: dict[str, ControlSpec] | None = None) -> None:
        self.cell = cell
        self.ops = ops or {}
        """The actor's typed ops (`Actor.control_specs()`), by name."""

    async def on_msg(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(msg))
        self.cell.tasks.add(task)
        task.add_done_callback(self.cell.tasks.discard)

    async def handle(self, msg: Msg) -> None:
        cell = self.cell
        try:
            try:
                op = self.decode(msg.data)
            except (msgspec.ValidationError, msgspec.DecodeError) as e:
                raise bad_request(control(cell.name), e) from None
            result = await self.run(op)
            if msg.reply:
                await cell.bus.nc.publish(
                    msg.reply, encode(ControlReply(ok=True, status=cell.status(), result=result)))
        except ServiceError as e:
            await respond_error(cell.bus.nc, msg, e)
        except Exception as e:  # noqa: BLE001 - a failed op is that request's error
            cell.log.exception("%s: control op failed", cell.name)
            await respond_error(cell.bus.nc, msg, ServiceError(f"control failed: {e!r}"))

    def decode(self, data: bytes) -> CoreOp | ControlOp[Any] | ControlRequest:
        """A core op, one of the actor's typed ops, or an untyped request for on_control."""
        name = read_op_name(data)
        if name not in CORE_OPS and (spec := self.ops.get(name)) is not None:
            op: ControlOp[Any] = msgspec.json.decode(data, type=spec.op_type)
            return op
        return decode_control(data)

    async def run(self, op: CoreOp | ControlOp[Any] | ControlRequest) -> Any:
        """The op's result: a Struct (or the dict of an untyped op)."""
        cell = self.cell
        match op:
            case StatusOp():
                return NoResult()
            case PauseOp(args=args):
                return await cell.pause(force=args.force, timeout=args.timeout)
            case ResumeOp():
                return await cell.resume()
            case RestartOp():
                return await cell.restart()
            case ProfileOp(args=args):
                return await self.profile(args.seconds, args.format)
            case ControlRequest(op=name, args=args):
                return await self.actor().on_control(name, args)
            case ControlOp():
                return await getattr(self.actor(), self.ops[op_name(type(op))].attr)(op)
        raise AssertionError(op)  # pragma: no cover - the union is closed

    def actor(self) -> Actor[Any]:
        """The instance an actor-specific op runs on: only a running or paused one."""
        cell = self.cell
        if cell.actor is None or cell.lifecycle.state not in (State.RUNNING, State.PAUSED):
            raise Unavailable(f"{cell.name} is {cell.lifecycle.state.value}")
        return cell.actor

    async def profile(self, seconds: float, fmt: Literal["speedscope", "html"]) -> ProfileResult:
        """Profile the whole process hosting this actor (any state: a stuck or failed actor
        is what one wants to look at); the file travels gzip'ed within max_payload."""
        from osiris_core.observability.profiling import encode_result, profile_process

        cell = self.cell
        prof = await profile_process(seconds, target=f"{cell.name} on {cell.node}")
        budget = reply_budget(cell.bus.nc.max_payload)
        return await asyncio.to_thread(encode_result, prof, fmt, budget, node=cell.node)
