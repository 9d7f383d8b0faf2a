"""The sim actor: replays `[plugins.sim].csv` onto `market.ticks` inside a runtime."""

from __future__ import annotations

import asyncio
import time
from datetime import date
from pathlib import Path
from typing import Any

from osiris_core import Actor

from .config import SimConfig
from .csvdata import CsvError, LoadResult, load_bars
from .replay import ReplayStats, parse_speed, replay


def resolve_csv(csv: str, data_dir: Path) -> Path:
    """A relative CSV path is looked up in the working directory, then under data_dir."""
    path = Path(csv).expanduser()
    if not path.is_absolute() and not path.exists():
        return data_dir / path
    return path


class SimActor(Actor[SimConfig]):
    name = "sim"
    description = "replays an OHLCV CSV onto market.ticks"

    async def on_start(self) -> None:
        self.stats = ReplayStats()
        self.loaded: LoadResult | None = None
        self.problem: str | None = None
        self.done = False
        self.running = asyncio.Event()
        self.running.set()
        cfg = self.config
        if not cfg.csv:
            self.problem = "idle: no CSV configured ([plugins.sim] csv, or run 'osiris sim CSV')"
            return
        path = resolve_csv(cfg.csv, Path(self.ctx.data_dir))
        try:
            speed = parse_speed(cfg.speed)
            start = date.fromisoformat(cfg.from_date) if cfg.from_date else None
            self.loaded = await asyncio.to_thread(load_bars, path, from_date=start,
                                                  strict=cfg.strict, symbol=cfg.symbol)
        except (CsvError, ValueError, OSError) as e:
            self.problem = f"idle: {e}"
            self.log.error("sim: %s", e)
            return
        for bad in self.loaded.bad[:20]:
            self.log.warning("sim: %s line %d skipped: %s", path.name, bad.line, bad.reason)
        if len(self.loaded.bad) > 20:
            self.log.warning("sim: … %d more bad rows skipped", len(self.loaded.bad) - 20)
        self.spawn(self._run(speed), "replay")

    async def _run(self, speed: float | None) -> None:
        assert self.loaded is not None
        if self.config.start_delay_s:
            await asyncio.sleep(self.config.start_delay_s)
        nc = self.ctx.nc
        channel = self.config.channel

        async def publish(data: bytes) -> None:
            await nc.publish(channel, data)

        self.stats = ReplayStats()
        await replay(self.loaded.bars, publish, speed=speed, loop=self.config.loop,
                     stats=self.stats, flush=nc.flush, gate=self._unpaused)
        self.done = True
        self.log.info("sim: replay finished: %d ticks in %d pass(es)", self.stats.published,
                      self.stats.passes)

    async def on_pause(self) -> None:
        """Hold the replay (the trainer pauses the market while it trains on a shared
        machine); ticks resume where they stopped, on the same schedule."""
        self.running.clear()

    async def on_resume(self) -> None:
        self.running.set()

    async def _unpaused(self) -> float:
        if self.running.is_set():
            return 0.0
        t0 = time.perf_counter()
        await self.running.wait()
        return time.perf_counter() - t0

    def facts(self) -> dict[str, Any]:
        out: dict[str, Any] = {"csv": self.config.csv, "speed": self.config.speed,
                               "loop": self.config.loop, "published": self.stats.published,
                               "passes": self.stats.passes, "done": self.done,
                               "last_timestamp": self.stats.last_timestamp}
        if self.loaded is not None:
            out["bars"] = len(self.loaded.bars)
            out["bad_rows"] = len(self.loaded.bad)
            out["bad_lines"] = [b.line for b in self.loaded.bad[:20]]
        if self.problem:
            out["problem"] = self.problem
        if self.stats.errors:
            out["publish_errors"] = self.stats.errors
            out["last_error"] = self.stats.last_error
        return out
