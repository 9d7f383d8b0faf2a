"""osiris sim: CSV parsing, synthetic data, replay onto a real nats-server, the sim actor."""

from __future__ import annotations

import asyncio
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_sim.csvdata import CsvError, load_bars, make_data
from osiris_sim.replay import parse_speed

from osiris_contracts.messages import MarketTick
from osiris_core import Config
from osiris_core.nats.bus import Bus
from osiris_core.testing import write_config

OSIRIS = [sys.executable, "-c", "from osiris_core.cli import main; main()"]


def osiris(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OSIRIS, *args], capture_output=True, text=True, timeout=timeout)


def test_make_data_is_deterministic_consistent_and_clusters_volatility(tmp_path: Path) -> None:
    a = make_data(tmp_path / "a.csv", bars=4000, seed=3)
    b = make_data(tmp_path / "b.csv", bars=4000, seed=3)
    c = make_data(tmp_path / "c.csv", bars=4000, seed=4)
    assert a.read_text() == b.read_text() != c.read_text()
    loaded = load_bars(a)
    assert len(loaded.bars) == 4000 and not loaded.bad  # every bar passes the OHLC checks
    closes = [bar.close for bar in loaded.bars]
    r = [math.log(closes[i] / closes[i - 1]) for i in range(1, len(closes))]
    sq = [x * x for x in r]
    mean = sum(sq) / len(sq)
    num = sum((sq[i] - mean) * (sq[i - 1] - mean) for i in range(1, len(sq)))
    den = sum((x - mean) ** 2 for x in sq)
    # GARCH clustering: squared returns are autocorrelated (i.i.d. GBM would give ≈ 0)
    assert num / den > 0.05
    # plain returns are not (no free lunch in the synthetic market)
    rm = sum(r) / len(r)
    ac1 = sum((r[i] - rm) * (r[i - 1] - rm) for i in range(1, len(r))) / sum((x - rm) ** 2 for x in r)
    assert abs(ac1) < 0.1


def test_header_variants_and_bad_rows_reported_by_line(tmp_path: Path) -> None:
    p = tmp_path / "yahoo.csv"
    p.write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n"
        "2023-10-02,10,11,9,10.5,10.5,1000\n"
        "2023-10-03,10,oops,9,10.5,10.5,1000\n"        # line 3: not a number
        "2023-10-04,10,11,9,10.5,10.5,1000\n"
        "\n"
        "not-a-date,10,11,9,10.5,10.5,1000\n"          # line 6: bad timestamp
        "2023-10-06,10,9,9.5,10.5,10.5,1000\n"         # line 7: high below close
        "2023-10-09,10,11,9,10.5,10.5,1000\n")
    got = load_bars(p)
    assert [b.timestamp[:10] for b in got.bars] == ["2023-10-02", "2023-10-04", "2023-10-09"]
    assert [(b.line, b.reason.split(" ")[0]) for b in got.bad] == [
        (3, "high"), (6, "unrecognised"), (7, "high/low")]
    with pytest.raises(CsvError, match=r"yahoo.csv:3: high is not a number"):
        load_bars(p, strict=True)
    semi = tmp_path / "semi.csv"
    semi.write_text("time;o;h;l;c;vol\n1696240800;1;2;0.5;1.5;7\n1696244400000;1;2;0.5;1.5;8\n")
    bars = load_bars(semi).bars
    assert [b.volume for b in bars] == [7, 8]
    assert bars[0].timestamp == "2023-10-02T10:00:00+00:00"  # epoch s and ms both understood
    assert bars[1].timestamp == "2023-10-02T11:00:00+00:00"
    nohead = tmp_path / "nohead.csv"
    nohead.write_text("when,price_open,x\n1,2,3\n")
    with pytest.raises(CsvError, match="missing column"):
        load_bars(nohead)


def test_parse_speed() -> None:
    assert parse_speed("10x") == 10.0 and parse_speed("1x") == 1.0 and parse_speed("0.5x") == 0.5
    assert parse_speed("max") is None
    with pytest.raises(ValueError, match="invalid speed"):
        parse_speed("fast")


async def _collect(bus: Bus, subject: str, count: int, start: Callable[[], Any],
                   timeout: float = 30.0) -> list[MarketTick]:
    got: list[MarketTick] = []
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        got.append(msgspec.json.decode(msg.data, type=MarketTick))
        if len(got) >= count:
            done.set()

    sub = await bus.nc.subscribe(subject, cb=cb)
    await bus.nc.flush()
    try:
        task = asyncio.ensure_future(asyncio.to_thread(start))
        await asyncio.wait_for(done.wait(), timeout)
        result = await task
    finally:
        await sub.unsubscribe()
    return got if result is None else (got, result)  # type: ignore[return-value]


async def test_cli_replays_at_max_with_from_date_and_reports_bad_rows(
        tmp_path: Path, nats_url: str, bus: Bus) -> None:
    csv = make_data(tmp_path / "m.csv", bars=300, seed=1, interval_s=86400)
    lines = csv.read_text().splitlines()
    lines[10] = lines[10].replace(lines[10].split(",")[2], "NaN-ish")  # file line 11
    csv.write_text("\n".join(lines) + "\n")
    cfg = write_config(tmp_path / "osiris.toml", nats_url, [])
    # bars are daily from 2023-01-02: January holds 30, one of them the bad row
    want = 300 - 30
    got, proc = await _collect(bus, "market.ticks", want, lambda: osiris(
        "sim", str(csv), "--speed", "max", "--from_date", "2023-02-01", "-c", str(cfg)))
    assert proc.returncode == 0, proc.stderr
    assert f"{csv}:11: skipped: high is not a number" in proc.stderr
    assert "29 bars before 2023-02-01 skipped" in proc.stderr
    assert f"{want} ticks published" in proc.stderr  # progress line
    assert len(got) == want
    assert got[0].timestamp.startswith("2023-02-01")
    assert [t.timestamp for t in got] == sorted(t.timestamp for t in got)


async def test_cli_paced_speed_and_strict(tmp_path: Path, nats_url: str, bus: Bus) -> None:
    csv = make_data(tmp_path / "m.csv", bars=5, seed=2, interval_s=60)
    cfg = write_config(tmp_path / "osiris.toml", nats_url, [])
    # 60 s bars at 600x: 0.1 s apart — paced, and all arrive in order
    got, proc = await _collect(bus, "market.ticks", 5, lambda: osiris(
        "sim", str(csv), "--speed", "600x", "-c", str(cfg)))
    assert proc.returncode == 0, proc.stderr
    assert [t.close for t in got] == [b.close for b in load_bars(csv).bars]
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n2023-01-01,1,2,0.5,1,1\nx,1,1,1,1,1\n")
    proc = osiris("sim", str(bad), "--strict", "-c", str(cfg))
    assert proc.returncode != 0 and "bad.csv:3: unrecognised timestamp" in proc.stderr
    proc = osiris("sim", str(csv), "--speed", "warp", "-c", str(cfg))
    assert proc.returncode != 0 and "invalid speed 'warp'" in proc.stderr
    proc = osiris("sim", str(tmp_path / "missing.csv"), "-c", str(cfg))
    assert proc.returncode != 0 and "osiris sim make-data" in proc.stderr


async def test_sim_actor_replays_in_a_runtime(
        tmp_path: Path, osiris_config: Callable[..., Config], osiris_runtime: Any,
        bus: Bus) -> None:
    csv = make_data(tmp_path / "m.csv", bars=500, seed=5)
    with csv.open("a") as f:
        f.write("2099-01-01,1,1,1,oops,1,SIM\n")  # line 502
    cfg = osiris_config(plugins=["sim"], tables={"sim": {"csv": str(csv), "speed": "max",
                                                          "start_delay_s": 0.3}})
    got: list[bytes] = []
    done = asyncio.Event()

    async def cb(msg: Any) -> None:
        got.append(msg.data)
        if len(got) >= 500:
            done.set()

    sub = await bus.nc.subscribe("market.ticks", cb=cb)
    await bus.nc.flush()
    async with osiris_runtime(cfg) as rt:
        await asyncio.wait_for(done.wait(), 30)
        status = await rt.bus.request("osiris.sim.control", {"op": "status"})
    await sub.unsubscribe()
    facts = status["status"]["facts"]
    assert facts["bars"] == 500 and facts["bad_rows"] == 1 and facts["bad_lines"] == [502]
    assert len(got) == 500


async def test_sim_actor_idles_without_csv_and_says_why(
        osiris_config: Callable[..., Config], osiris_runtime: Any, tmp_path: Path) -> None:
    cfg = osiris_config(plugins=["sim"], tables={"sim": {"csv": str(tmp_path / "nope.csv")}})
    async with osiris_runtime(cfg) as rt:
        facts = rt.cell("sim").status().facts
        assert rt.cell("sim").state.value == "running"
        assert "CSV not found" in facts["problem"]
    cfg = osiris_config(plugins=["sim"], name="b.toml")
    async with osiris_runtime(cfg) as rt:
        assert "no CSV configured" in rt.cell("sim").status().facts["problem"]


async def test_a_paused_sim_holds_its_ticks_and_resumes_where_it_stopped(
        tmp_path: Path, osiris_config: Any, osiris_runtime: Any, bus: Bus) -> None:
    """The trainer pauses the demo's market while it trains: no tick while paused, the
    replay goes on after resume from the next bar, nothing skipped."""
    from osiris_core.protocol import PauseOp, ResumeOp

    csv = make_data(tmp_path / "m.csv", bars=2000, seed=5, interval_s=60)
    cfg = osiris_config(plugins=["sim"], tables={"sim": {"csv": str(csv), "speed": "1200x"}})
    seen: list[MarketTick] = []

    async def on_tick(msg: Any) -> None:
        seen.append(msgspec.json.decode(msg.data, type=MarketTick))

    sub = await bus.nc.subscribe("market.ticks", cb=on_tick)
    async with osiris_runtime(cfg):
        for _ in range(200):
            if len(seen) >= 5:
                break
            await asyncio.sleep(0.02)
        r = await bus.control("sim", PauseOp())
        assert r.status.state == "paused"
        await asyncio.sleep(0.2)  # a tick already on its way may still land
        held = len(seen)
        await asyncio.sleep(0.6)  # 12 bars' worth of time at 1200x
        assert len(seen) == held
        await bus.control("sim", ResumeOp())
        for _ in range(200):
            if len(seen) >= held + 3:
                break
            await asyncio.sleep(0.02)
    await sub.unsubscribe()
    times = [t.timestamp for t in seen]
    assert len(seen) >= held + 3 and times == sorted(times) and len(set(times)) == len(times)
    # the bar after the pause is the next one: nothing skipped
    bars = [b.timestamp for b in load_bars(csv).bars]
    assert times == bars[:len(times)]
