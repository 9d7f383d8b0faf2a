"""The JetStream streams of the catalogue's durable subjects: what exists, what to change.

Every runtime declares the streams at start (`ensure_streams`), so any process may come up
first. Declaring never weakens a stream an operator already has: it adds missing subjects and
raises the replica count to `[osiris].stream_replicas`, and never removes a subject, lowers
the replicas or touches limits and retention. Creating is allowed to every runtime role of
`osiris nats-config`; changing an existing stream only to the operator (`osiris streams
--apply`), so a compromised actor cannot shrink the feedback stream.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from nats.js.api import StorageType, StreamConfig
from nats.js.errors import BadRequestError, NotFoundError

from osiris_core.errors import ConfigError
from osiris_core.nats.bus import Bus

__all__ = ["DUPLICATE_WINDOW_S", "StreamPlan", "apply", "ensure_streams", "plan"]

DUPLICATE_WINDOW_S = 120.0


@dataclass
class StreamPlan:
    """One stream: what the catalogue wants against what the server has."""

    name: str
    subjects: list[str]
    replicas: int
    exists: bool = False
    have_subjects: list[str] = field(default_factory=list)
    have_replicas: int = 0
    messages: int = 0
    bytes: int = 0
    config: StreamConfig | None = None  # the server's, when it exists

    @property
    def missing_subjects(self) -> list[str]:
        return [s for s in self.subjects if s not in self.have_subjects]

    @property
    def raise_replicas(self) -> bool:
        return self.exists and self.have_replicas < self.replicas

    @property
    def action(self) -> str:
        """`create`, `update` or `ok`."""
        if not self.exists:
            return "create"
        return "update" if self.missing_subjects or self.raise_replicas else "ok"

    def describe(self) -> str:
        if self.action == "create":
            return f"create with {len(self.subjects)} subjects, {self.replicas} replicas"
        changes = []
        if self.missing_subjects:
            changes.append("add " + ", ".join(self.missing_subjects))
        if self.raise_replicas:
            changes.append(f"replicas {self.have_replicas} → {self.replicas}")
        return "; ".join(changes) or "up to date"

    def wanted(self) -> StreamConfig:
        """The config to create, or the server's with the subjects and replicas raised."""
        if self.config is None:
            return StreamConfig(name=self.name, subjects=list(self.subjects),
                                storage=StorageType.FILE, duplicate_window=DUPLICATE_WINDOW_S,
                                num_replicas=self.replicas)
        return dataclasses.replace(
            self.config, subjects=[*self.have_subjects, *self.missing_subjects],
            num_replicas=max(self.have_replicas, self.replicas))


async def plan(bus: Bus, streams: dict[str, list[str]], replicas: int) -> list[StreamPlan]:
    """Each stream of `streams` (name → subjects) as the server has it."""
    out = []
    for name, subjects in streams.items():
        p = StreamPlan(name, list(subjects), replicas)
        try:
            info = await bus.js.stream_info(name)
        except NotFoundError:
            out.append(p)
            continue
        p.exists, p.config = True, info.config
        p.have_subjects = list(info.config.subjects or [])
        p.have_replicas = info.config.num_replicas or 1
        p.messages, p.bytes = info.state.messages, info.state.bytes
        out.append(p)
    return out


async def apply(bus: Bus, p: StreamPlan) -> None:
    """Create or update one stream; `ConfigError` naming the change when it is refused."""
    if p.action == "ok":
        return
    try:
        if p.action == "create":
            await bus.js.add_stream(p.wanted())
        else:
            await bus.js.update_stream(p.wanted())
    except Exception as e:  # noqa: BLE001 - a refusal shows as a timeout (permissions)
        raise ConfigError(
            f"JetStream stream {p.name} needs a change this NATS user could not make "
            f"({p.describe()}): {type(e).__name__}: {e}. Under `osiris nats-config` only the "
            "operator changes existing streams: run `osiris streams --apply` as the "
            "operator") from None


async def ensure_streams(bus: Bus, streams: dict[str, list[str]], replicas: int = 1) -> list[str]:
    """Create what is missing and raise what falls short (see the module doc); returns the
    names of every stream, now ready. Creating first: the meta leader answers it (a stream
    that exists exactly so is a no-op), so a start during a stream's leader election does
    not wait on it; only a stream configured otherwise is looked at (`plan`)."""
    for name, subjects in streams.items():
        try:
            await bus.js.add_stream(StreamPlan(name, list(subjects), replicas).wanted())
            continue
        except BadRequestError:  # it exists, configured otherwise: raise what falls short
            pass
        (p,) = await plan(bus, {name: subjects}, replicas)
        await apply(bus, p)
    return list(streams)
