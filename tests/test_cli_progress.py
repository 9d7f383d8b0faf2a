"""Following a long job from a verb (`osiris train --now`, `osiris dgm --once`): the actor's
`progress` fact, shown as one line while the verb waits for the job's reply."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from typing import Any

from osiris_core import Actor, Bus, Config, service
from osiris_core.cli import ProgressLine, following_progress
from osiris_core.testing import plugin_module

STAGES = ["loading the model", "training step 1/2", "training step 2/2", "evaluating"]


def test_progress_is_one_updating_line_on_a_terminal_and_a_line_per_stage_in_a_log() -> None:
    updates = [f"phi3 replies for new prompts: {n}/39" for n in range(1, 40)]
    updates += ["variant 1: stage 2, cheap window", "variant 1: stage 2, full window"]
    tty = io.StringIO()
    p = ProgressLine("dgm", tty, tty=True)
    for line in updates:
        p.show(line)
    p.done()
    assert tty.getvalue().count("\n") == 1 and tty.getvalue().count("\r") == len(updates)
    assert tty.getvalue().rstrip().endswith("dgm: variant 1: stage 2, full window")
    log = io.StringIO()
    p = ProgressLine("dgm", log, tty=False)
    for line in updates:
        p.show(line)
    assert log.getvalue().splitlines() == ["dgm: phi3 replies for new prompts: 1/39",
                                           "dgm: variant 1: stage 2, cheap window",
                                           "dgm: variant 1: stage 2, full window"]


class Job(Actor[Any]):
    """A long job that moves to its next stage only once a status has reported this one."""

    name = "job"

    async def on_start(self) -> None:
        self.progress = ""
        self.reported = asyncio.Event()

    def facts(self) -> dict[str, Any]:
        if self.progress:
            self.reported.set()
        return {"progress": self.progress or None}

    @service("test.job.run")
    async def run(self, req: dict[str, Any]) -> dict[str, str]:
        for stage in STAGES:
            self.reported.clear()
            self.progress = stage
            await asyncio.wait_for(self.reported.wait(), timeout=10)
        return {"result": "done"}


async def test_a_verb_following_a_job_shows_each_stage_of_its_progress(
        bus: Bus, osiris_config: Callable[..., Config], osiris_runtime: Any) -> None:
    cfg = osiris_config(plugins=["job"])
    log = io.StringIO()
    async with osiris_runtime(cfg, extra_plugins={"job": plugin_module("job", actors=[Job])}):
        async with following_progress(bus, "job", log, poll_s=0.02) as line:
            reply = await bus.request("test.job.run", {}, timeout=30)
        assert reply == {"result": "done"} and not line.tty
    # in a log the counts are not a new stage: "training step 2/2" is not repeated
    assert log.getvalue().splitlines() == ["job: loading the model", "job: training step 1/2",
                                           "job: evaluating"]
