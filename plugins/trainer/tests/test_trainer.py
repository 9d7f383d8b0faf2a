"""The trainer on the tiny models, with the real feedback store and phi3 actor: corrections
become an adapter that passes the gate, phi3 hot-loads it and proposes what the users
corrected to; without new corrections, or without a gain, nothing is published."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest
from osiris_phi3.config import DEFAULT_SYSTEM
from osiris_phi3.contracts import PHI3_COMPLETE, Phi3Completion
from osiris_phi3.prompt import FEW_SHOT_HEADER, chat_prompt, user_prompt
from osiris_trainer import TRAINER_TRAIN, TrainerConfig, TrainResult
from osiris_trainer.dataset import Example, build_examples, split, with_few_shot

from osiris_contracts.messages import (
    AdapterPublished,
    FeedbackAck,
    ProposalCreated,
    StoreQuery,
    StoreRows,
    TradeProposal,
)
from osiris_contracts.subjects import (
    ADAPTERS_PUBLISHED,
    FEEDBACK_SUBMIT,
    PHI3_GENERATE,
    PROPOSAL_CREATED,
    STORE_QUERY,
)
from osiris_core import ServiceError, Unavailable
from osiris_core.protocol import StatusOp

TARGET = TradeProposal(ticker="ZZZ", action="hold", side="LONG", new_stop_pct=2.0,
                       new_target_pct=6.0, confidence=0.8, rationale="steady")
N = 24


def _tables(tiny: Path, **trainer: Any) -> dict[str, dict[str, Any]]:
    return {"phi3": {"model": str(tiny / "phi3-onnx"), "provider": "cpu", "few_shot": 0},
            "trainer": {"base_model": str(tiny / "phi3"), "schedule": "", "few_shot": 0,
                        "sft_steps": 60,
                        "dpo_steps": 10, "min_examples": 4, **trainer}}


async def _train(bus: Any, force: bool = False) -> TrainResult:
    res: TrainResult = await bus.request(TRAINER_TRAIN, {"force": force}, reply_type=TrainResult,
                                         timeout=300)
    return res


async def _rows(bus: Any, table: str, at_least: int) -> list[dict[str, Any]]:
    for _ in range(600):
        rows = (await bus.request(STORE_QUERY, StoreQuery(table=table, limit=1000),
                                  reply_type=StoreRows, timeout=10)).rows
        if len(rows) >= at_least:
            return rows
        await asyncio.sleep(0.05)
    raise AssertionError(f"{table}: fewer than {at_least} rows")


async def _facts(bus: Any, actor: str) -> dict[str, Any]:
    reply = await bus.control(actor, StatusOp(), timeout=30)
    return reply.status.facts


async def _phi3_adapter(bus: Any) -> Any:
    return (await _facts(bus, "phi3")).get("adapter")


def _prompt(i: int) -> str:
    return f"Stock {i} moved {i}.5% today on volume {1000 + i}."


async def _propose_and_store(bus: Any, i: int, tid: str, max_length: int = 200) -> TradeProposal:
    """What phi3 serves for prompt i, stored as the orchestrator stores a proposal."""
    served: TradeProposal = await bus.request(
        PHI3_GENERATE, {"prompt": _prompt(i), "max_length": max_length},
        reply_type=TradeProposal, timeout=60)
    await bus.publish(PROPOSAL_CREATED, ProposalCreated(
        transaction_id=tid, timestamp=f"2026-12-01T00:00:{i:02d}+00:00", prompt=_prompt(i),
        phi3_proposal=served), msg_id=tid)
    return served


async def test_corrections_become_an_adapter_that_phi3_hot_loads(
        tiny_models: Path, osiris_config: Any, osiris_runtime: Any, bus: Any) -> None:
    cfg = osiris_config(plugins=["feedback", "phi3", "trainer"], tables=_tables(tiny_models))
    published: list[AdapterPublished] = []

    async def on_published(msg: Any) -> None:
        published.append(msgspec.json.decode(msg.data, type=AdapterPublished))

    sub = await bus.nc.subscribe(str(ADAPTERS_PUBLISHED), cb=on_published)
    async with osiris_runtime(cfg):
        first = await _train(bus)
        assert not first.published and "no corrections in the feedback store yet" in first.reason

        # what phi3 proposed (random tiny model), then what the users corrected it to
        for i in range(N):
            await _propose_and_store(bus, i, f"t{i}")
        await _rows(bus, "proposals", N)
        before = [await bus.request(PHI3_GENERATE, {"prompt": _prompt(i), "max_length": 200},
                                    reply_type=TradeProposal, timeout=60) for i in range(3)]
        assert all(p.ticker != "ZZZ" for p in before)
        raw = chat_prompt(DEFAULT_SYSTEM, _prompt(0))
        base_text = (await bus.request(PHI3_COMPLETE, {"prompt": raw, "max_length": 24},
                                       reply_type=Phi3Completion, timeout=60)).generated_text
        for i in range(N):
            ack = await bus.request(FEEDBACK_SUBMIT, {  # ids fixed: the same split every run
                "transaction_id": f"t{i}", "feedback_type": "correction", "feedback_id": f"corr{i}",
                "corrected_proposal": msgspec.to_builtins(TARGET)}, reply_type=FeedbackAck)
            assert ack.transaction_known
        await bus.request(FEEDBACK_SUBMIT, {"transaction_id": "nowhere", "feedback_type":
                                            "correction",
                                            "corrected_proposal": msgspec.to_builtins(TARGET)})
        await _rows(bus, "feedback", N + 1)
        for _ in range(600):  # the trainer's durable consumer counts them too
            if (await _facts(bus, "trainer"))["new_corrections"] == N + 1:
                break
            await asyncio.sleep(0.05)
        assert (await _facts(bus, "trainer"))["new_corrections"] == N + 1

        res = await _train(bus)
        assert (await _facts(bus, "trainer"))["new_corrections"] == 0
        assert res.published, res.reason
        assert res.examples == N and res.train_examples + res.eval_examples == N
        # scored where phi3 serves: the candidate beats the live base model, paired
        rep = res.report
        assert rep["candidate"]["fields"]["side"]["mean"] == 1.0  # what the base got wrong
        assert rep["gate"]["passed"] and rep["gate"]["diff"]["lo"] > 0
        assert rep["live"]["version"] is None and rep["base"] == {
            k: v for k, v in rep["live"].items() if k != "version"}
        assert res.metrics["served_candidate"] > res.metrics["served_live"]
        assert {"load", "sft", "dpo", "export", "served_eval"} <= set(res.phases_s)
        assert res.path and res.path.endswith(".onnx_adapter")
        assert await asyncio.to_thread(os.path.isfile, res.path)
        for _ in range(600):  # phi3 applies the durable event
            if await _phi3_adapter(bus) == res.version:
                break
            await asyncio.sleep(0.05)
        assert await _phi3_adapter(bus) == res.version
        assert [p.version for p in published] == [res.version]
        # status says what the gate measured for the adapter users now get
        facts = await _facts(bus, "phi3")
        # the same {mean, lo, hi} in both statuses
        assert facts["adapter_served_agreement"] == res.report["candidate"]["agreement"]
        assert (await _facts(bus, "trainer"))["adapter_served_agreement"] == \
            res.report["candidate"]["agreement"]

        # served proposals now follow the corrections, for prompts it trained on and not
        after = [await bus.request(PHI3_GENERATE, {"prompt": _prompt(i), "max_length": 200},
                                   reply_type=TradeProposal, timeout=60) for i in (0, 1, 42)]
        assert [p.ticker for p in after] == ["ZZZ", "ZZZ", "ZZZ"]
        text = (await bus.request(PHI3_COMPLETE, {"prompt": raw, "max_length": 24},
                                  reply_type=Phi3Completion, timeout=60)).generated_text
        assert text != base_text and text.startswith('{"')  # it now answers in JSON

        again = await _train(bus)  # nothing new since: no run
        assert not again.published and "no new corrections" in again.reason

    # restarted with a learning rate of 0, a forced run can only reproduce the base model:
    # worse than the adapter in service, so the gate holds it back
    cfg0 = osiris_config(plugins=["feedback", "phi3", "trainer"], name="lr0.toml",
                         tables=_tables(tiny_models, learning_rate=0.0))
    async with osiris_runtime(cfg0):
        assert await _phi3_adapter(bus) == res.version  # phi3 restored it at start
        cli = [sys.executable, "-c", "from osiris_core.cli import main; main()", "train",
               "-c", str(cfg0.path)]
        status = await asyncio.to_thread(subprocess.run, cli, capture_output=True, text=True,
                                         timeout=60)
        assert status.returncode == 0, status.stderr
        assert f"adapter    {res.version}" in status.stdout
        assert "no new corrections" in status.stdout  # the last run survived the restart
        now = await asyncio.to_thread(subprocess.run, [*cli, "--now"], capture_output=True,
                                      text=True, timeout=120)
        assert now.returncode == 1 and "not published: no new corrections" in now.stdout
        forced = await _train(bus, force=True)
        assert not forced.published and "lower bound is not above zero" in forced.reason, \
            forced.reason
        # the served report: every configuration, the adapter in service among them
        rep = forced.report
        assert set(rep) == {"constant", "base", "few_shot", "live", "candidate", "gate"}
        assert rep["live"]["version"] == res.version
        assert rep["live"]["agreement"] == res.report["candidate"]["agreement"]  # as scored then
        assert rep["candidate"]["agreement"] == res.report["base"]["agreement"]  # lr 0: the base
        assert rep["gate"]["diff"]["hi"] < 0
        assert await _phi3_adapter(bus) == res.version
        # refused: the record of the run stays, its weights do not
        kept = Path(cfg0.data_dir) / "adapters"
        refused = [d for d in kept.iterdir() if d.is_dir() and d.name != res.version]
        assert len(refused) == 1 and [p.name for p in refused[0].iterdir()] == ["report.json"]
    await sub.unsubscribe()
    assert len(published) == 1


async def test_an_adapter_that_improves_the_lab_path_but_not_the_served_path_is_refused(
        tiny_models: Path, osiris_config: Any, osiris_runtime: Any, bus: Any) -> None:
    """A desk that accepts every decision as phi3 served it (and writes its own short
    rationale): the trainer's copy learns those corrections (their held-out loss falls by
    half), but what users are served cannot improve — the decisions are its own — so the
    gate, which scores where phi3 serves, publishes nothing."""
    n = 16
    cfg = osiris_config(plugins=["feedback", "phi3", "trainer"],
                        tables=_tables(tiny_models, report_lab=True, report_few_shot=False))
    async with osiris_runtime(cfg):
        for i in range(n):
            served = await _propose_and_store(bus, i, f"a{i}", max_length=256)
            await _rows(bus, "proposals", i + 1)
            accepted = msgspec.structs.replace(served, confidence=0.5, rationale="as served")
            ack = await bus.request(FEEDBACK_SUBMIT, {
                "transaction_id": f"a{i}", "feedback_type": "correction",
                "corrected_proposal": msgspec.to_builtins(accepted)}, reply_type=FeedbackAck)
            assert ack.transaction_known
        await _rows(bus, "feedback", n)
        res = await _train(bus)
        rep = res.report
        # the lab path "learnt": the held-out corrections' loss fell far past the 1 % the
        # lab gate used to publish on …
        assert rep["lab"]["loglik"] > 0.5 * rep["lab_base"]["loglik"], rep
        assert rep["live"]["agreement"]["mean"] == 1.0  # … what phi3 already serves
        assert not res.published and not rep["gate"]["passed"], res.reason
        assert "lower bound is not above zero" in res.reason
        assert await _phi3_adapter(bus) is None


async def test_without_a_base_model_the_reason_is_said(
        tiny_models: Path, osiris_config: Any, osiris_runtime: Any, bus: Any) -> None:
    cfg = osiris_config(plugins=["trainer"], tables={"trainer": {"schedule": ""}})
    async with osiris_runtime(cfg):
        with pytest.raises(Unavailable, match=r"base model not set \(set \[plugins.trainer\]"):
            await _train(bus)
        reply = await bus.control("trainer", StatusOp())
        assert reply.status.state == "running"


async def test_a_failing_training_job_is_reported_and_the_actor_keeps_serving(
        tmp_path: Path, osiris_config: Any, osiris_runtime: Any, bus: Any) -> None:
    broken = tmp_path / "not-a-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}")  # looks like a folder, loads as nothing
    cfg = osiris_config(plugins=["feedback", "trainer"],
                        tables={"trainer": {"base_model": str(broken), "schedule": "",
                                            "min_examples": 2, "train_after_corrections": 3}})
    target = msgspec.to_builtins(TARGET)
    async with osiris_runtime(cfg):
        for i in range(3):
            await bus.publish(PROPOSAL_CREATED, ProposalCreated(
                transaction_id=f"b{i}", timestamp=f"2026-12-01T00:00:0{i}+00:00",
                prompt=_prompt(i), phi3_proposal=TARGET), msg_id=f"b{i}")
        await _rows(bus, "proposals", 3)
        for i in range(3):
            await bus.request(FEEDBACK_SUBMIT, {"transaction_id": f"b{i}", "feedback_type":
                                                "correction", "corrected_proposal": target})
        # three new corrections start a run by themselves; its failure is recorded
        for _ in range(1200):
            last = (await _facts(bus, "trainer"))["last_run"]
            if last:
                break
            await asyncio.sleep(0.05)
        assert last and not last["published"] and "training job failed" in last["reason"]
        with pytest.raises(ServiceError, match=r"training job failed \(exit 1\)"):
            await _train(bus)
        reply = await bus.control("trainer", StatusOp())
        assert reply.status.state == "running" and reply.status.restarts == 0


def test_examples_join_corrections_to_their_prompts_and_split_stably() -> None:
    target = msgspec.json.encode(TARGET).decode()
    feedback = [{"id": f"f{i}", "transaction_id": f"t{i}", "corrected_proposal": target,
                 "timestamp": f"2026-12-01T00:00:{i:02d}"} for i in range(20)]
    feedback += [{"id": "x", "transaction_id": "t0", "corrected_proposal": target,
                  "timestamp": "2026-11-01"},  # older correction of the same proposal
                 {"id": "y", "transaction_id": "t1", "corrected_proposal": '{"ticker": 1}',
                  "timestamp": "2026-12-02"},
                 {"id": "z", "transaction_id": "gone", "corrected_proposal": target}]
    proposals = [{"id": f"t{i}", "transaction_id": f"t{i}", "prompt": _prompt(i),
                  "phi3_proposal": target if i == 3 else msgspec.to_builtins(
                      msgspec.structs.replace(TARGET, ticker="AAA"))} for i in range(20)]
    examples, skipped = build_examples(feedback, proposals)
    assert len(examples) == 20
    assert skipped == {"no_prompt": 1, "invalid_correction": 1, "duplicate": 1}
    by_id = {e.id: e for e in examples}
    assert by_id["f5"].prompt == _prompt(5) and '"ZZZ"' in by_id["f5"].chosen
    assert '"AAA"' in (by_id["f5"].rejected or "")
    assert by_id["f3"].rejected is None  # the correction equals the original: no pair
    train, held = split(examples, 0.25)
    assert train and held and len(train) + len(held) == 20
    train2, held2 = split(examples + [examples[0]], 0.25)
    assert {e.id for e in held} <= {e.id for e in held2}


def test_training_prompts_carry_the_few_shot_corrections_phi3_would_prepend() -> None:
    exs = [Example(id=f"f{i}", prompt=_prompt(i), chosen=f'{{"n": {i}}}', rejected=None)
           for i in range(5)]  # newest first
    shot = with_few_shot(exs, 2)
    assert shot[0].user_text() == user_prompt(_prompt(0), ['{"n": 1}', '{"n": 2}'])
    assert shot[3].user_text() == user_prompt(_prompt(3), ['{"n": 0}', '{"n": 1}'])
    assert shot[3].user_text().startswith(FEW_SHOT_HEADER) and shot[3].user_text().endswith(_prompt(3))
    assert shot[3].user_text(0) == _prompt(3) and shot[3].prompt == _prompt(3)
    assert with_few_shot(exs, 0) == exs
    # held-out examples take their shots from the training pool only
    held = with_few_shot(exs[3:], 2, pool=exs[:3])
    assert held[0].shots == held[1].shots == ('{"n": 0}', '{"n": 1}')


def test_config_rejects_a_bad_schedule() -> None:
    with pytest.raises(ValueError, match="schedule '25:00' is not HH:MM"):
        TrainerConfig(schedule="25:00")
    assert TrainerConfig(schedule="").schedule == ""
