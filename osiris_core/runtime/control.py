"""The control protocol of one actor: `osiris.<actor>.control`.

The core's own ops (status, pause, resume, restart, profile) are typed (`protocol.CoreOp`); any other
op is passed to `Actor.on_control(op, args)`. Every reply is a `ControlReply` carrying the
actor's status after the op; a failed op is an error reply like any request's.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Literal

import msgspec
from nats.aio.msg import Msg

from osiris_core.errors import ServiceError, Unavailable
from osiris_core.nats.bus import encode
from osiris_core.protocol import (
    ControlReply,
    ControlRequest,
    CoreOp,
    PauseOp,
    ProfileOp,
    RestartOp,
    ResumeOp,
    StatusOp,
    decode_control,
)
from osiris_core.runtime.dispatch import bad_request, reply_budget, respond_error
from osiris_core.subjects import control

if TYPE_CHECKING:
    from osiris_core.runtime.host import ControlledCell

__all__ = ["ControlServer"]


class ControlServer:
    """Answers one cell's control subject (up even while the actor is failed)."""

    def __init__(self, cell: ControlledCell) -> None:
        self.cell = cell

    async def on_msg(self, msg: Msg) -> None:
        task = asyncio.get_running_loop().create_task(self.handle(msg))
        self.cell.tasks.add(task)
        task.add_done_callback(self.cell.tasks.discard)

    async def handle(self, msg: Msg) -> None:
        cell = self.cell
        try:
            try:
                op = decode_control(msg.data)
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

    async def run(self, op: CoreOp | ControlRequest) -> dict[str, Any]:
        cell = self.cell
        match op:
            case StatusOp():
                return {}
            case PauseOp(args=args):
                return await cell.pause(force=args.force, timeout=args.timeout)
            case ResumeOp():
                return await cell.resume()
            case RestartOp():
                return await cell.restart()
            case ProfileOp(args=args):
                return await self.profile(args.seconds, args.format)
            case ControlRequest(op=name, args=args):
                if cell.actor is None or cell.lifecycle.state.value not in ("running", "paused"):
                    raise Unavailable(f"{cell.name} is {cell.lifecycle.state.value}")
                return await cell.actor.on_control(name, args)
        raise AssertionError(op)  # pragma: no cover - the union is closed

    async def profile(self, seconds: float, fmt: Literal["speedscope", "html"]) -> dict[str, Any]:
        """Profile the whole process hosting this actor (any state: a stuck or failed actor
        is what one wants to look at); the file travels gzip'ed within max_payload."""
        from osiris_core.observability.profiling import encode_result, profile_process

        cell = self.cell
        prof = await profile_process(seconds, target=f"{cell.name} on {cell.node}")
        budget = reply_budget(cell.bus.nc.max_payload)
        result = await asyncio.to_thread(encode_result, prof, fmt, budget, node=cell.node)
        return msgspec.to_builtins(result)  # type: ignore[no-any-return]
