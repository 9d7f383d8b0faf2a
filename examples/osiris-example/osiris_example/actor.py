"""The example actor: an echo service and an exactly-once SQLite ledger."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from osiris_core import Actor, EventMeta, PluginConfig, on_event, service

from .contracts import EchoReply, EchoRequest, Recorded
from .subjects import ECHO, RECORDED


class ExampleConfig(PluginConfig, frozen=True, kw_only=True):
    ledger: str = "example-ledger.sqlite3"
    """SQLite file (relative to data_dir) where recorded events land."""
    record_delay_s: float = 0.0
    """Artificial work per event, to make kill-mid-way tests easy."""


class ExampleActor(Actor[ExampleConfig]):
    name = "example"
    description = "echo service and exactly-once event ledger"

    async def on_start(self) -> None:
        path = Path(self.ctx.data_dir) / self.config.ledger
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS ledger (id TEXT PRIMARY KEY, value INTEGER)")
        self.db.execute("CREATE TABLE IF NOT EXISTS deliveries (id TEXT, delivered INTEGER)")
        self.db.commit()

    async def on_stop(self) -> None:
        self.db.close()

    @service(ECHO)
    async def echo(self, req: EchoRequest) -> EchoReply:
        return EchoReply(text=req.text.upper() if req.upper else req.text, node=self.ctx.node)

    @on_event(RECORDED)
    async def record(self, evt: Recorded, meta: EventMeta) -> None:
        if self.config.record_delay_s:
            await asyncio.sleep(self.config.record_delay_s)
        # Idempotent: the primary key makes a redelivered event a no-op.
        self.db.execute("INSERT INTO deliveries VALUES (?, ?)", (meta.msg_id, meta.delivered))
        self.db.execute("INSERT OR IGNORE INTO ledger VALUES (?, ?)", (meta.msg_id, evt.value))
        self.db.commit()

    def facts(self) -> dict[str, int]:
        (rows,) = self.db.execute("SELECT COUNT(*) FROM ledger").fetchone()
        return {"ledger_rows": rows}
