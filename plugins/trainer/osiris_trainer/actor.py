"""The trainer actor: reads corrections from the feedback store, trains an adapter in a
child process (SFT + DPO, QLoRA on CUDA), and publishes it on `osiris.adapters.published`
only when it beats the adapter in service on held-out corrections. Daily, or on request."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
from osiris_phi3.contracts import PHI3_SCORE, ScoreReply, ScoreRequest

from osiris_contracts import tables
from osiris_contracts.messages import AdapterPublished, FeedbackItem, StoreQuery, now_iso
from osiris_contracts.store import PAGE_ROWS, read_rows
from osiris_contracts.subjects import ADAPTERS_PUBLISHED, FEEDBACK_SUBMITTED
from osiris_core import Actor, EventMeta, ServiceError, Unavailable, on_event, service
from osiris_core.protocol import PauseOp, ResumeOp

from .config import TrainerConfig
from .contracts import TRAINER_REPORTS, TRAINER_TRAIN, ReportsRequest, TrainReports, TrainRequest, TrainResult
from .dataset import Example, build_examples, split, with_few_shot
from .job import PROGRESS, JobSpec
from .served import Verdict, served_evaluation, served_metrics
from .train import Outcome, report_shots

STATE_FILE = "trainer-state.json"
IN_CHUNK = 200  # transaction ids per `id IN (...)` store query


class TrainerState(msgspec.Struct, kw_only=True):
    """What survives a restart: the adapter in service and the newest correction trained on."""

    version: str | None = None
    last_feedback_ts: str = ""
    last: TrainResult | None = None
    served: dict[str, float] | None = None
    """The adapter in service's served decision agreement (mean, lo, hi) when it passed."""


def next_run(schedule: str, now: datetime) -> datetime | None:
    """The next local HH:MM after `now`; None when the schedule is off."""
    if not schedule:
        return None
    hh, mm = (int(x) for x in schedule.split(":"))
    at = now.replace(hour=hh, minute=mm, second=0, microsecond=0)
    return at if at > now else at + timedelta(days=1)


def id_in(ids: list[str]) -> str:
    """An `osiris.store.query` filter matching these ids (quotes doubled, SQL-style)."""
    return "id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in ids) + ")"


def read_reports(root: Path, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` run records under the adapters folder (an unreadable one is
    skipped: a run being written, or a hand-edited file)."""
    out: list[dict[str, Any]] = []
    for path in sorted(root.glob("*/report.json"), reverse=True)[:limit]:
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict):
            out.append(record)
    return out



class TrainerActor(Actor[TrainerConfig]):
    name = "trainer"
    description = "feedback corrections → eval-gated LoRA adapters for phi3"

    async def on_start(self) -> None:
        cfg = self.config
        self.root = Path(self.ctx.data_dir) / cfg.adapters_dir
        self.root.mkdir(parents=True, exist_ok=True)
        self.state = self._load_state()
        self.lock = asyncio.Lock()
        self.running_since: str | None = None
        self.progress: collections.deque[str] = collections.deque(maxlen=20)
        self.next_at: datetime | None = None
        self.new_corrections: set[str] = set()  # feedback ids since the last run started
        if not cfg.base_model:
            self.log.info("trainer: idle until [plugins.trainer] base_model names the Phi-3 "
                          "Hugging Face folder phi3's ONNX was built from")
        if cfg.schedule:
            self.spawn(self._schedule_loop(), "schedule")

    # --- state ----------------------------------------------------------------------------
    def _load_state(self) -> TrainerState:
        path = self.root / STATE_FILE
        try:
            return msgspec.json.decode(path.read_bytes(), type=TrainerState)
        except FileNotFoundError:
            return TrainerState()
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            self.log.warning("trainer: ignoring unreadable %s: %s", path, e)
            return TrainerState()

    def _save_state(self) -> None:
        path = self.root / STATE_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(msgspec.json.encode(self.state))
        os.replace(tmp, path)

    def facts(self) -> dict[str, Any]:
        last = self.state.last
        return {"base_model": self.config.base_model or None, "schedule": self.config.schedule,
                "next_run": self.next_at.isoformat() if self.next_at else None,
                "running_since": self.running_since,
                "progress": self.progress[-1] if self.progress else None,
                "adapter_version": self.state.version,
                "adapter_served_agreement": self.state.served,
                "new_corrections": len(self.new_corrections),
                "last_run": msgspec.to_builtins(last) if last else None}

    # --- scheduling -----------------------------------------------------------------------
    async def _schedule_loop(self) -> None:
        while True:
            self.next_at = next_run(self.config.schedule, datetime.now().astimezone())
            assert self.next_at is not None
            await asyncio.sleep(max(0.0, (self.next_at - datetime.now().astimezone())
                                    .total_seconds()))
            if self.lock.locked():
                continue
            try:
                async with self.lock:
                    res = await self._cycle(force=False)
                self.log.info("trainer: scheduled run: %s", res.reason)
            except ServiceError as e:
                self.log.warning("trainer: scheduled run failed: %s", e.message)
            except Exception:  # noqa: BLE001 - the schedule outlives one bad run
                self.log.exception("trainer: scheduled run crashed")

    # --- corrections as they arrive -------------------------------------------------------
    @on_event(FEEDBACK_SUBMITTED, batch=64)
    async def on_feedback(self, items: list[tuple[FeedbackItem, EventMeta]]) -> None:
        """Count new corrections (by id: a redelivery counts once); with
        `train_after_corrections` set, enough of them start a run without waiting for the
        schedule. The store, not this count, decides what a run trains on."""
        self.new_corrections.update(meta.msg_id for item, meta in items
                                    if item.corrected_proposal is not None)
        n = self.config.train_after_corrections
        if n and len(self.new_corrections) >= n and not self.lock.locked():
            self.spawn(self._triggered(), "triggered-run")

    async def _triggered(self) -> None:
        if self.lock.locked():
            return
        try:
            await self._until_stored(sorted(self.new_corrections))
            async with self.lock:
                res = await self._cycle(force=False)
            self.log.info("trainer: run after %d corrections: %s",
                          self.config.train_after_corrections, res.reason)
        except ServiceError as e:
            self.log.warning("trainer: run after new corrections failed: %s", e.message)

    async def _until_stored(self, ids: list[str], wait_s: float = 30.0) -> None:
        """The feedback actor writes the store from its own consumer of the same events:
        give it until the counted corrections are rows (bounded) before a run reads them."""
        deadline = time.monotonic() + wait_s
        where = id_in(ids[-IN_CHUNK:])
        while time.monotonic() < deadline:
            rows = await self._rows(StoreQuery(table=tables.FEEDBACK, filter=where, limit=IN_CHUNK))
            if len(rows) >= min(len(ids), IN_CHUNK):
                return
            await asyncio.sleep(0.25)

    # --- the service ----------------------------------------------------------------------
    @service(TRAINER_TRAIN)
    async def train(self, req: TrainRequest) -> TrainResult:
        """One training cycle now (`osiris train --now`)."""
        if self.lock.locked():
            raise Unavailable(f"a training run is already in progress (since "
                              f"{self.running_since}): {self.progress[-1] if self.progress else ''}")
        async with self.lock:
            return await self._cycle(force=req.force)

    @service(TRAINER_REPORTS)
    async def reports(self, req: ReportsRequest) -> TrainReports:
        """The records every run left (`<version>/report.json`, refused ones included)."""
        found = await asyncio.to_thread(read_reports, self.root, max(1, min(req.limit, 500)))
        return TrainReports(reports=found, live=self.state.version,
                            live_served_agreement=self.state.served)

    def _base_model(self) -> Path:
        cfg = self.config
        base = Path(cfg.base_model).expanduser() if cfg.base_model else None
        if base is None or not (base / "config.json").is_file():
            raise Unavailable(
                f"trainer base model {'not set' if base is None else f'not found: {base}'} "
                "(set [plugins.trainer] base_model to the Phi-3 Hugging Face folder phi3's "
                "ONNX was built from, e.g. '<models>/phi3' after 'osiris models tiny <models>')")
        return base

    async def _cycle(self, *, force: bool) -> TrainResult:
        base = self._base_model()
        started = now_iso()
        self.running_since = started
        self.progress.clear()
        self.new_corrections.clear()
        try:
            async with self._paused(self.config.pause_while_training):
                result = await self._train_from_store(base, force, started)
        except ServiceError as e:  # recorded for status, then the caller gets the error
            self.state.last = self._done(started, False, e.message)
            self._save_state()
            raise
        finally:
            self.running_since = None
        self.state.last = result
        self._save_state()
        return result

    async def _train_from_store(self, base: Path, force: bool, started: str) -> TrainResult:
        cfg = self.config
        self._say("reading corrections from the feedback store")
        feedback = await self._rows(StoreQuery(
            table=tables.FEEDBACK, filter="corrected_proposal IS NOT NULL", limit=cfg.max_examples,
            order_by="timestamp", descending=True))
        if not feedback:
            return self._done(started, False, "no corrections in the feedback store yet "
                              "(feedback with a corrected_proposal)")
        newest = max(str(r.get("timestamp") or "") for r in feedback)
        if not force and newest <= self.state.last_feedback_ts:
            return self._done(started, False, f"no new corrections since the last run "
                              f"({self.state.last_feedback_ts or 'none yet'}); force to retrain")
        tids = sorted({str(r.get("transaction_id")) for r in feedback})
        proposals: list[dict[str, Any]] = []
        for i in range(0, len(tids), IN_CHUNK):
            proposals += await self._rows(StoreQuery(
                table=tables.PROPOSALS, filter=id_in(tids[i:i + IN_CHUNK]), limit=IN_CHUNK))
        examples, skipped = build_examples(feedback, proposals)
        why_skipped = ", ".join(f"{v} {k}" for k, v in skipped.items() if v)
        if len(examples) < max(cfg.min_examples, 2):
            return self._done(started, False,
                              f"{len(examples)} usable corrections, {max(cfg.min_examples, 2)} "
                              "needed" + (f" (skipped: {why_skipped})" if why_skipped else ""),
                              examples=len(examples))
        train, held = split(examples, cfg.eval_fraction)
        train, held = (with_few_shot(train, cfg.few_shot),
                       with_few_shot(held, report_shots(cfg), pool=train))
        version = "v" + datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        out_dir = self.root / version
        outcome = await self._run_job(JobSpec(
            config=cfg, base_model=str(base), version=version, out_dir=str(out_dir),
            train=train, held=held))
        self.state.last_feedback_ts = newest
        counts = {"examples": len(examples), "train_examples": len(train),
                  "eval_examples": len(held)}
        t0 = time.perf_counter()
        try:
            report, verdict = await self._served_report(train, held, outcome.adapter_file)
        except BaseException:
            shutil.rmtree(out_dir, ignore_errors=True)
            raise
        report = {**report, **outcome.report}
        phases = {**outcome.phases_s, "served_eval": round(time.perf_counter() - t0, 3)}
        metrics = {**outcome.metrics, **served_metrics(report)}
        created = now_iso()
        record = {"version": version, "published": verdict.passed, "reason": verdict.reason,
                  "base_model": str(base), "created": created, "metrics": metrics, **counts,
                  "skipped": skipped, "phases_s": phases, "report": report}
        if not verdict.passed:
            # the weights go, the record stays: what was tried and why it was refused
            for p in (out_dir / "peft", Path(outcome.adapter_file)):
                shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
            (out_dir / "report.json").write_text(json.dumps(record, indent=2))
            return self._done(started, False, "not published: " + verdict.reason,
                              metrics=metrics, phases_s=phases, report=report, **counts)
        (out_dir / "report.json").write_text(json.dumps(record, indent=2))
        evt = AdapterPublished(version=version, path=outcome.adapter_file,
                               base_model=str(base), created=created, metrics=metrics)
        await self.publish(ADAPTERS_PUBLISHED, evt, msg_id=f"adapter-{version}")
        self.state.version = version
        self.state.served = report["candidate"]["agreement"]
        self._say(f"published {version}")
        return self._done(started, True, "published: " + verdict.reason, version=version,
                          path=outcome.adapter_file, metrics=metrics, phases_s=phases,
                          report=report, **counts)

    async def _served_report(self, train: list[Example], held: list[Example],
                             candidate: str) -> tuple[dict[str, Any], Verdict]:
        """Score the live adapter, the candidate (in a shadow slot) and the report's
        baselines where phi3 serves; gate the candidate against the live adapter."""
        cfg = self.config

        async def ask(req: ScoreRequest) -> ScoreReply:
            try:
                reply: ScoreReply = await self.request(PHI3_SCORE, req, reply_type=ScoreReply,
                                                       timeout=cfg.score_timeout_s)
            except Unavailable:
                raise Unavailable("phi3 does not answer osiris.phi3.score: the gate scores a "
                                  "candidate where phi3 serves, so phi3 must run") from None
            return reply

        return await served_evaluation(
            ask, train, held, candidate=candidate, few_shot=cfg.few_shot, report_shots=report_shots(cfg),
            report_few_shot=cfg.report_few_shot, stop_tolerance=cfg.stop_tolerance,
            target_tolerance=cfg.target_tolerance, say=self._say)

    @contextlib.asynccontextmanager
    async def _paused(self, actors: list[str]) -> AsyncIterator[None]:
        """Pause these actors (the demo's market) for the run and resume them after, so a
        shared CPU trains and scores in minutes; one that does not answer is skipped."""
        held: list[str] = []
        for name in actors:
            try:
                await self.ctx.bus.control(name, PauseOp(), timeout=10)
                held.append(name)
                self._say(f"paused {name} while training")
            except ServiceError as e:
                self.log.warning("trainer: could not pause %s: %s", name, e.message)
        try:
            yield
        finally:
            for name in held:
                try:
                    await self.ctx.bus.control(name, ResumeOp(), timeout=10)
                except ServiceError as e:
                    self.log.error("trainer: could not resume %s: %s", name, e.message)

    def _done(self, started: str, published: bool, reason: str, **kw: Any) -> TrainResult:
        self._say(reason)
        return TrainResult(published=published, reason=reason, started=started,
                           finished=now_iso(), **kw)

    def _say(self, msg: str) -> None:
        self.progress.append(msg)
        self.log.info("trainer: %s", msg)

    async def _rows(self, q: StoreQuery) -> list[dict[str, Any]]:
        """Up to `q.limit` rows, page by page (one reply holds at most a NATS max_payload)."""
        try:
            return await read_rows(self, msgspec.structs.replace(q, limit=PAGE_ROWS),
                                   max_rows=q.limit)
        except Unavailable:
            raise Unavailable("the feedback store does not answer (run the feedback plugin): "
                              "corrections are read through osiris.store.query") from None

    async def _run_job(self, spec: JobSpec) -> Outcome:
        """Run `osiris_trainer.job` in a child process; its progress lines become ours."""
        with tempfile.TemporaryDirectory(prefix="osiris-trainer-") as tmp:
            spec_file, result_file = Path(tmp) / "spec.json", Path(tmp) / "result.json"
            spec_file.write_bytes(msgspec.json.encode(spec))
            t0 = time.perf_counter()
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "osiris_trainer.job", str(spec_file), str(result_file),
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT)
            tail: collections.deque[str] = collections.deque(maxlen=30)
            assert proc.stdout is not None
            try:
                async for raw in proc.stdout:
                    line = raw.decode(errors="replace").rstrip()
                    if line.startswith(PROGRESS):
                        self._say(line[len(PROGRESS):])
                    elif line:
                        tail.append(line)
                code = await proc.wait()
            except asyncio.CancelledError:
                proc.kill()
                await proc.wait()
                raise
            if code != 0 or not result_file.exists():
                detail = "\n".join(tail)
                raise ServiceError(f"training job failed (exit {code}) after "
                                   f"{time.perf_counter() - t0:.1f}s: {detail[-1500:]}")
            return msgspec.json.decode(result_file.read_bytes(), type=Outcome)
