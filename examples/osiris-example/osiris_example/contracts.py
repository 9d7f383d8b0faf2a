"""Messages of the example plugin."""

from __future__ import annotations

import msgspec


class EchoRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    text: str
    upper: bool = False


class EchoReply(msgspec.Struct, kw_only=True):
    text: str
    node: str


class Recorded(msgspec.Struct, kw_only=True):
    id: str
    value: int = 0
