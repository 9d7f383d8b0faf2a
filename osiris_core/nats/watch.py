"""Watched requests: a caller learns within seconds that the replica serving its request died.

The protocol (opt-in per request, so plain NATS clients never see it):

- The caller sends the request with `Osiris-Watch: 1` and a reply subject of its own mux.
- While that request is in flight on a replica (waiting for a slot, waiting for the actor to
  start or resume, or running), the replica publishes an empty *notice* to the reply subject
  every `HEARTBEAT_S`, with `Osiris-Status: working` and the replica's node.
- The caller takes a notice as "still alive" and keeps waiting; the reply (or an error
  reply) ends the request. `LOST_AFTER_S` without a word means the replica is gone (a
  `kill -9`, a lost host): an idempotent request is re-sent once, to a live replica, with the
  same `Osiris-Request-Id`.

Replies and notices travel on one connection in order, so a notice never overtakes its reply.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from osiris_core.errors import (
    ERROR_CODE_HEADER,
    RETRY_ELSEWHERE_HEADER,
    Forbidden,
    RequestTimeout,
    Unavailable,
)
from osiris_core.subjects import REQUEST_ID_HEADER

__all__ = [
    "HEARTBEAT_S",
    "LOST_AFTER_S",
    "NODE_HEADER",
    "STATUS_HEADER",
    "WATCH_HEADER",
    "Heartbeats",
    "Pending",
    "ReplyMux",
    "is_cut_off",
    "is_no_responders",
    "is_notice",
    "watched_request",
]

log = logging.getLogger("osiris.watch")

WATCH_HEADER = "Osiris-Watch"
STATUS_HEADER = "Osiris-Status"
NODE_HEADER = "Osiris-Node"
ATTEMPT_HEADER = "Osiris-Attempt"
WORKING = "working"
HEARTBEAT_S = 1.0
"""How often a replica says "working" for each watched request in flight."""
LOST_AFTER_S = 3.5
"""Silence after which a caller takes the replica for dead (3 missed notices and a half)."""


def is_notice(msg: Msg) -> bool:
    """True for a replica's "working" notice (not a reply, not a chunk)."""
    headers = msg.headers
    return bool(headers) and headers.get(STATUS_HEADER) == WORKING  # type: ignore[union-attr]


class Heartbeats:
    """Replica side: the watched requests in flight, and the task that says "working" for
    them every `HEARTBEAT_S`. The task runs only while some request is watched."""

    def __init__(self, nc: NATS, node: str, interval: float = HEARTBEAT_S) -> None:
        self.nc = nc
        self.interval = interval
        self.headers = {STATUS_HEADER: WORKING, NODE_HEADER: node}
        self.watched: dict[int, str] = {}
        # (request id, reply) of the watched requests: unique, since every call has its own
        # reply subject and a re-send of one still served here is never taken (`serving`)
        self._serving: set[tuple[str, str]] = set()
        self._task: asyncio.Task[None] | None = None

    def watch(self, msg: Msg) -> bool:
        """Start saying "working" for `msg` if its caller asked; True when it did."""
        headers = msg.headers
        if not headers or WATCH_HEADER not in headers or not msg.reply:
            return False
        self.watched[id(msg)] = msg.reply
        rid = headers.get(REQUEST_ID_HEADER)
        if rid:
            self._serving.add((rid, msg.reply))
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return True

    def unwatch(self, msg: Msg) -> None:
        if self.watched.pop(id(msg), None) is not None:
            self._serving.discard(((msg.headers or {}).get(REQUEST_ID_HEADER, ""), msg.reply))

    def serving(self, msg: Msg) -> bool:
        """Whether `msg` is a re-send of a watched request this replica still serves: the
        same request id and reply subject. Its caller took a pause in the notices (a loop
        blocked for seconds, a stopped process) for a dead replica; the first run answers."""
        headers = msg.headers
        if not headers or not self._serving:
            return False
        return (headers.get(REQUEST_ID_HEADER), msg.reply) in self._serving

    async def notice(self, reply: str) -> None:
        """Say "working" on `reply` now (never raises)."""
        with contextlib.suppress(Exception):
            await self.nc.publish(reply, b"", headers=self.headers)

    async def _run(self) -> None:
        while self.watched:
            await asyncio.sleep(self.interval)
            for reply in list(self.watched.values()):
                await self.notice(reply)  # a closing connection: nothing to say

    async def close(self) -> None:
        self.watched.clear()
        self._serving.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


@dataclass
class Pending:
    """One watched request on the caller's side."""

    future: asyncio.Future[Msg]
    heard: float
    node: str = ""
    subject: str = ""


class ReplyMux:
    """Caller side: one wildcard inbox subscription for every watched request of a
    connection; replies resolve their request, notices refresh its `heard` time."""

    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.prefix = ""
        self.pending: dict[str, Pending] = {}
        self._sub: Subscription | None = None
        self._lock = asyncio.Lock()
        self._seq = 0

    async def open(self, subject: str = "") -> tuple[str, Pending]:
        """A fresh reply subject and its pending entry for a request on `subject` (close it
        with `close`)."""
        if self._sub is None:
            async with self._lock:
                if self._sub is None:
                    self.prefix = self.nc.new_inbox()
                    self._sub = await self.nc.subscribe(f"{self.prefix}.*", cb=self._on_msg)
        self._seq += 1
        token = format(self._seq, "x")
        loop = asyncio.get_running_loop()
        entry = Pending(future=loop.create_future(), heard=loop.time(), subject=subject)
        self.pending[token] = entry
        return f"{self.prefix}.{token}", entry

    def close(self, reply: str) -> None:
        self.pending.pop(reply.rpartition(".")[2], None)

    def refused(self, subject: str) -> None:
        """The server refused a publish to `subject`: its pending requests fail now."""
        for entry in self.pending.values():
            if entry.subject == subject and not entry.future.done():
                entry.future.set_exception(refusal_error(subject))

    async def _on_msg(self, msg: Msg) -> None:
        entry = self.pending.get(msg.subject.rpartition(".")[2])
        if entry is None or entry.future.done():
            return
        if is_notice(msg):
            entry.heard = asyncio.get_running_loop().time()
            entry.node = (msg.headers or {}).get(NODE_HEADER, entry.node)
            return
        entry.future.set_result(msg)


def refusal_error(subject: str) -> Forbidden:
    return Forbidden(f"NATS refused this connection's user publishing to {subject} "
                     "(permissions violation): its role lacks the grant — see "
                     "`osiris nats-config` in docs/deploy.md")


def attempt_headers(headers: dict[str, str] | None, rid: str) -> dict[str, Any]:
    """The request's headers plus the watch flag and its request id."""
    out: dict[str, Any] = dict(headers or {})
    out[WATCH_HEADER] = "1"
    out.setdefault(REQUEST_ID_HEADER, rid)
    return out


def is_no_responders(msg: Msg) -> bool:
    """The server's own 503: nobody subscribes to the subject."""
    headers = msg.headers
    return bool(headers) and headers.get("Status") == "503" and not msg.data  # type: ignore[union-attr]


def is_cut_off(msg: Msg) -> bool:
    """An error reply saying another replica may serve the request: this one stopped before
    it could answer (a shutdown), or its actor has failed (`RETRY_ELSEWHERE_HEADER`; the
    body is never read)."""
    headers = msg.headers
    return (bool(headers) and headers.get(ERROR_CODE_HEADER) == "503"  # type: ignore[union-attr]
            and headers.get(RETRY_ELSEWHERE_HEADER) == "1")  # type: ignore[union-attr]


async def watched_request(
    mux: ReplyMux, name: str, data: bytes, headers: dict[str, str] | None, *,
    timeout: float, retry: bool, no_responders: Callable[[], Awaitable[None]],
) -> Msg:
    """Send one watched request and return its reply message (an error reply included).

    A replica that falls silent for `LOST_AFTER_S`, or that stops before it could answer,
    gets the request re-sent once to another replica when `retry` (the subject is
    idempotent); otherwise, or a second time, the caller gets a clear 503 at once instead of
    waiting out its timeout. No responders: `no_responders()` waits (or raises)."""
    nc, loop = mux.nc, asyncio.get_running_loop()
    deadline = loop.time() + timeout
    reply, entry = await mux.open(name)
    hdrs = attempt_headers(headers, uuid.uuid4().hex)
    resent = False

    async def send() -> None:
        entry.heard = loop.time()
        await nc.publish(name, data, reply=reply, headers=hdrs)

    try:
        await send()
        while True:
            now = loop.time()
            if now >= deadline:
                raise RequestTimeout(f"no reply on {name} within {timeout:g}s")
            if now - entry.heard >= LOST_AFTER_S:
                where = f" on node {entry.node}" if entry.node else ""
                if not retry or resent:
                    again = " again, after a retry" if resent else ""
                    raise Unavailable(f"the replica{where} serving {name} stopped answering"
                                      f"{again} (no word for {LOST_AFTER_S:g}s)", lost=True)
                log.warning("replica%s serving %s silent for %.1fs: re-sending request %s",
                            where, name, now - entry.heard, hdrs[REQUEST_ID_HEADER])
                resent = True
                hdrs[ATTEMPT_HEADER] = "2"
                entry.node = ""
                await send()
                continue
            done, _ = await asyncio.wait(
                (entry.future,), timeout=min(deadline - now, entry.heard + LOST_AFTER_S - now))
            if not done:
                continue
            msg = entry.future.result()
            elsewhere = retry and not resent and is_cut_off(msg)
            if elsewhere or is_no_responders(msg):
                if elsewhere:
                    resent = True
                    hdrs[ATTEMPT_HEADER] = "2"
                else:
                    await no_responders()  # raises when nobody comes
                entry.future = loop.create_future()
                await send()
                continue
            return msg
    finally:
        mux.close(reply)
