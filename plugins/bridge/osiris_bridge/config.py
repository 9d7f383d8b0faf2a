"""`[plugins.bridge]`: the Redis URL and, per channel, which way messages are mirrored."""

from __future__ import annotations

from typing import ClassVar, Literal

import msgspec

from osiris_core import PluginConfig

Direction = Literal["both", "to_redis", "from_redis", "off"]

DEFAULT_CHANNELS: dict[str, Direction] = {
    "market.ticks": "both",  # an outside simulator on Redis drives the orchestrator
    "phi3.proposal.created": "to_redis",
    "phi3.proposal.assessed": "to_redis",
    "phi3.feedback.submitted": "to_redis",
    "advice.generated": "to_redis",
    "audio.bytes": "to_redis",
}
TO_REDIS_ONLY = {"audio.bytes"}  # NATS carries chunks; Redis gets the seeds' bare base64 WAV


class BridgeConfig(PluginConfig, frozen=True, kw_only=True):
    redis_url: str = ""
    """redis://host:port/db. Empty: the bridge stays idle and says so (Redis is optional)."""
    channels: dict[str, Direction] = msgspec.field(default_factory=lambda: dict(DEFAULT_CHANNELS))
    """Channel (= NATS subject) → both | to_redis | from_redis | off. Channels left out keep
    their default; the defaults are the seeds' documented channels."""
    reconnect_initial_s: float = 0.2
    reconnect_max_s: float = 10.0

    __env__: ClassVar[dict[str, str]] = {"redis_url": "OSIRIS_REDIS_URL"}

    def __post_init__(self) -> None:
        for name, direction in self.channels.items():
            if name in TO_REDIS_ONLY and direction in ("both", "from_redis"):
                raise ValueError(f"channels.{name}: can only be bridged to_redis (or off)")
            if not name or any(c in name for c in " *>"):
                raise ValueError(f"channels: {name!r} is not a plain channel name")

    def directions(self) -> dict[str, Direction]:
        return {**DEFAULT_CHANNELS, **self.channels}
