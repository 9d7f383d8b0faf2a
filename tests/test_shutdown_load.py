"""Shutdown always ends: `osiris run` with every plugin under load (sim at max feeding the
orchestrator, requests in flight to the models), SIGTERM at a different moment each time —
during start-up too — exits 0 within `shutdown_timeout_s`, 20 times in a row, and every
request in flight is answered or told it was cut off."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from osiris_sim.csvdata import make_data

from osiris_contracts.subjects import HERMES_GENERATE, PHI3_GENERATE, PROPOSALS_PROPOSE
from osiris_core import Config, ServiceError
from osiris_core.nats.bus import Bus
from osiris_core.testing import OsirisProcess

RUNS = int(os.environ.get("OSIRIS_SHUTDOWN_RUNS", "2"))
"""CI runs 2 (each run loads the models: ~45 s on 2 cores); the issue's 20 in a row:
OSIRIS_SHUTDOWN_RUNS=20 (recorded in bench/RESULTS.md)."""
SHUTDOWN_S = 6.0
pytestmark = [pytest.mark.slow, pytest.mark.timeout(120 + RUNS * 120)]
IN_FLIGHT = 12


async def _load(bus: Bus, stop: asyncio.Event, outcomes: dict[str, int],
                samples: dict[str, str]) -> None:
    """Keep requests in flight to the models and the orchestrator until `stop`; count the
    outcomes and keep one error message per kind."""

    async def one(subject: str, payload: dict[str, Any]) -> None:
        try:
            await bus.request(subject, payload, timeout=30)
            key = "answered"
        except ServiceError as e:
            key = f"timeout {subject}" if e.code == 504 else f"refused {e.code}"
            samples.setdefault(f"{key} {subject}", str(e)[:300])
        outcomes[key] = outcomes.get(key, 0) + 1

    calls = [(PHI3_GENERATE.name, {"prompt": "NVDA at 131", "max_length": 48}),
             (HERMES_GENERATE.name, {"prompt": "Assess NVDA", "max_length": 16}),
             (PROPOSALS_PROPOSE.name, {"prompt": "NVDA long"})]
    pending: set[asyncio.Task[None]] = set()
    while not stop.is_set():
        pending = {t for t in pending if not t.done()}
        if len(pending) < IN_FLIGHT:  # steady load the models can serve (an unbounded
            subject, payload = random.choice(calls)  # stream just times out on 2 cores)
            pending.add(asyncio.ensure_future(one(subject, payload)))
        await asyncio.sleep(0.02)
    await asyncio.gather(*pending)


async def test_sigterms_under_load_each_end_in_bounded_time_with_exit_0(
    tiny_models: Path, tmp_path: Path, osiris_config: Callable[..., Config], bus: Bus
) -> None:
    csv = make_data(tmp_path / "market.csv", bars=2000, seed=3)
    cfg = osiris_config(
        plugins=["phi3", "hermes", "orchestrator", "feedback", "sim", "tts", "gpu", "bridge"],
        shutdown_timeout_s=SHUTDOWN_S,
        tables={"phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu",
                         "few_shot": 0},
                "hermes": {"model": str(tiny_models / "hermes"), "device": "cpu"},
                "orchestrator": {"ticks_per_proposal": 20},
                "sim": {"csv": str(csv), "speed": "max", "loop": True},
                "tts": {"engine": "espeak", "rate_limit_per_s": 0},
                "gpu": {"probe": "actors"}})
    assert cfg.path is not None
    rng = random.Random(12)
    report: list[str] = []
    outcomes: dict[str, int] = {}
    samples: dict[str, str] = {}
    for i in range(RUNS):
        proc = OsirisProcess(cfg.path, env={"HF_HUB_OFFLINE": "1"},
                             log_path=tmp_path / f"run-{i}.log").start(wait_ready=False)
        stop = asyncio.Event()
        load: asyncio.Future[None] | None = None
        try:
            # every third run is signalled during start-up (requests already waiting for the
            # starting models), the rest under load once ready
            if i % 3 == 0:
                load = asyncio.ensure_future(_load(bus, stop, outcomes, samples))
                await _until_logging(proc)  # the interpreter itself is up
                await asyncio.sleep(rng.uniform(0.0, 2.0))
            else:
                await _until_ready(proc)
                load = asyncio.ensure_future(_load(bus, stop, outcomes, samples))
                # the models are busy with the sim's proposals too: signal only once this
                # run has served our load (else "under load" may mean "nothing answered yet")
                await _until_answered(outcomes, outcomes.get("answered", 0))
                await asyncio.sleep(rng.uniform(0.5, 2.0))
            t0 = time.monotonic()
            proc.signal(signal.SIGTERM)
            code = await asyncio.get_running_loop().run_in_executor(
                None, proc.wait, SHUTDOWN_S + 20)
            took = time.monotonic() - t0
        finally:
            stop.set()
            if load is not None:
                await load
            proc.kill()
        report.append(f"run {i:2}: exit {code} after {took:.2f}s")
        print(report[-1], dict(outcomes), flush=True)
        assert code == 0, proc.output()[-3000:]
        # within the bound (the half second covers noticing the exit from here)
        assert took <= SHUTDOWN_S + 0.5, (report[-1], proc.output()[-3000:])
    print("\n".join(report), f"\nrequests: {outcomes}", *samples.items(), sep="\n")
    # Every request in flight at the signal is answered or told it was cut off (503): none
    # waits out its timeout
    timeouts = {k: v for k, v in outcomes.items() if k.startswith("timeout")}
    assert not timeouts, outcomes
    assert outcomes.get("answered", 0) > 0, outcomes


async def _until_logging(proc: OsirisProcess, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not proc.output():
        assert time.monotonic() < end
        await asyncio.sleep(0.02)


async def _until_answered(outcomes: dict[str, int], before: int,
                          timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while outcomes.get("answered", 0) <= before:
        assert time.monotonic() < end, f"no request answered {timeout}s after ready: {outcomes}"
        await asyncio.sleep(0.05)


async def _until_ready(proc: OsirisProcess, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while "osiris: ready" not in proc.output():
        assert proc.proc is not None and proc.proc.poll() is None, proc.output()[-3000:]
        assert time.monotonic() < end, proc.output()[-3000:]
        await asyncio.sleep(0.05)

