"""A request can fail, an actor cannot: hostile payloads on every service subject get an
error reply and restart nothing; a reply too large for the server is a 413, not a crash."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from osiris_core import Actor, Config, PayloadTooLarge, ServiceError, service
from osiris_core.nats.bus import Bus, connect
from osiris_core.nats.server import EmbeddedNats
from osiris_core.subjects import control
from osiris_core.testing import plugin_module

pytestmark = [
    pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning",
                               "ignore::UserWarning"),
]
os.environ.setdefault("HF_HUB_OFFLINE", "1")

DEEP = 50_000
HOSTILE: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("not JSON", b"{not json"),
    ("invalid UTF-8", b'{"prompt": "\xff\xfe\x00"}'),
    ("a JSON array", b"[1, 2, 3]"),
    ("a bare string", b'"hello"'),
    ("50k-deep nesting", b"[" * DEEP + b"]" * DEEP),
    ("50k-deep objects", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ("700 KB prompt", msgspec.json.encode({"prompt": "x" * 700_000, "text": "x" * 700_000})),
    ("wrong types", b'{"prompt": 5, "text": [], "table": {}, "max_length": "many"}'),
    ("unknown fields", b'{"prompt": "hi", "text": "hi", "table": "feedback", "rm": "-rf"}'),
    ("path traversal table", b'{"table": "../../etc/passwd"}'),
    ("SQL in filter", b'{"table": "feedback", "filter": "1=1; DROP TABLE feedback"}'),
    ("bad base64 WAV", b'{"text": "hi", "ref_wav_b64": "!!!not base64!!!"}'),
    ("huge numbers", b'{"prompt": "hi", "max_length": 1e400, "limit": 99999999999999999999}'),
    ("NaN", b'{"prompt": "hi", "temperature": NaN}'),
]
CONTROL_HOSTILE: list[tuple[str, bytes]] = [
    ("unknown op", b'{"op": "format_disk"}'),
    ("path traversal adapter", b'{"op": "load_adapter", "args": {"name": "../../etc", '
                               b'"path": "/etc/passwd"}}'),
    ("bad pause args", b'{"op": "pause", "args": {"timeout": -1}}'),
    ("not JSON", b"\x00\x01"),
]


async def test_hostile_payloads_on_every_service_subject_restart_no_actor(
    tiny_models: Path, osiris_config: Callable[..., Config], osiris_runtime: Any, bus: Bus
) -> None:
    cfg = osiris_config(
        plugins=["phi3", "hermes", "tts", "feedback", "orchestrator", "gpu", "dgm", "trainer"],
        tables={"phi3": {"model": str(tiny_models / "phi3-onnx"), "provider": "cpu",
                         "few_shot": 0},
                "hermes": {"model": str(tiny_models / "hermes"), "device": "cpu"},
                "tts": {"engine": "espeak", "rate_limit_per_s": 0},
                "gpu": {"probe": "actors"}})
    async with osiris_runtime(cfg) as rt:
        served = {ep.subject for c in rt.cells if c.micro for ep in c.micro.endpoints}
        subjects = sorted(s.name for s in rt.plugins.catalogue
                          if s.kind == "service" and s.name in served)
        assert len(subjects) >= 9, subjects
        outcomes: dict[str, int] = {}
        for subject in subjects:
            for what, payload in HOSTILE:
                outcomes[f"{subject} {what}"] = await _outcome(bus, subject, payload)
        for cell in rt.cells:
            for what, payload in CONTROL_HOSTILE:
                outcomes[f"{control(cell.name)} {what}"] = await _outcome(
                    bus, control(cell.name), payload)
        print("\n".join(f"{code:>4}  {k}" for k, code in sorted(outcomes.items())))
        # every hostile request got an answer (no timeout); none was the server's fault
        crashed = {k: v for k, v in outcomes.items() if v >= 500 and v != 503}
        assert not crashed, crashed
        assert sum(1 for v in outcomes.values() if 400 <= v < 500) >= len(outcomes) * 0.8
        restarts = {c.name: c.restarts for c in rt.cells}
        assert set(restarts.values()) == {0}, restarts
        assert {c.state.value for c in rt.cells} == {"running"}


async def _outcome(bus: Bus, subject: str, payload: bytes) -> int:
    """200 for a reply, else the error code (a timeout fails the test)."""
    try:
        await bus.request(subject, payload, timeout=60)
        return 200
    except ServiceError as e:
        assert e.code != 504, (subject, payload[:60], e)
        return e.code


class Big(Actor[Any]):
    name = "big"

    @service("test.big.reply")
    async def reply(self, req: dict[str, Any]) -> dict[str, str]:
        return {"blob": "x" * int(req.get("size", 10))}


async def test_replies_beyond_max_payload_are_413s_not_restarts(
    tmp_path: Path, osiris_config: Callable[..., Config], osiris_runtime: Any
) -> None:
    with EmbeddedNats(tmp_path / "nats", max_payload=None) as srv:  # the 1 MiB default
        cfg = osiris_config(plugins=["big"], nats=srv.url,
                            tables={"big": {"max_restarts": 1}})
        nc = await connect(srv.url)
        bus = Bus(nc)
        try:
            async with osiris_runtime(cfg, extra_plugins={"big": plugin_module("big", actors=[Big])}) as rt:
                assert nc.max_payload == 1024 * 1024
                for _ in range(20):
                    with pytest.raises(PayloadTooLarge) as e:
                        await bus.request("test.big.reply", {"size": 2_000_000}, timeout=10)
                    assert e.value.code == 413
                    assert "max_payload of 1,048,576 bytes" in e.value.message
                    assert "2,000,0" in e.value.message and "page" in e.value.message
                assert (await bus.request("test.big.reply", {"size": 5}))["blob"] == "xxxxx"
                cell = rt.cell("big")
                assert cell.restarts == 0 and cell.state.value == "running"
                ep = cell.micro.endpoint("reply") if cell.micro else None
                assert ep is not None and ep.errors_by_code == {413: 20}
        finally:
            await nc.close()
