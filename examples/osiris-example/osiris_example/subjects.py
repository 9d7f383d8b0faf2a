"""The example plugin's subjects, defined once and imported wherever they are used."""

from __future__ import annotations

from osiris_core import Subject

from .contracts import EchoReply, EchoRequest, Recorded

__all__ = ["ECHO", "RECORDED"]

ECHO = Subject("osiris.example.echo", "service", "example", EchoRequest, EchoReply,
               description="echo a text back, upper-cased on request")
RECORDED = Subject("example.recorded", "event", "example", Recorded, durable=True,
                   description="an event the example ledger records exactly once")
