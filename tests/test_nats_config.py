"""`osiris nats-config` against a real nats-server: each role connects with its own user,
does its job (the feedback role runs the real feedback actor) and is refused — by the
server — what it must not publish or subscribe."""

from __future__ import annotations

import asyncio
import tomllib
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from click.testing import CliRunner
from nats.aio.client import Client as NATS
from nats.js.api import AckPolicy, ConsumerConfig, StorageType, StreamConfig
from nats.js.errors import BadRequestError

from osiris_contracts.messages import FeedbackAck, FeedbackItem, GenerateChunk, StoreQuery, StoreRows
from osiris_contracts.subjects import (
    ADAPTERS_PUBLISHED,
    DGM_EVENTS,
    FEEDBACK_SUBMIT,
    FEEDBACK_SUBMITTED,
    HERMES_GENERATE,
    MARKET_TICKS,
    PHI3_GENERATE,
    PROPOSAL_CREATED,
    STORE_QUERY,
)
from osiris_core.cli.natsconfig import nats_config
from osiris_core.config import Config, OsirisSettings, load_config
from osiris_core.errors import ConfigError, Forbidden
from osiris_core.nats.bus import Bus, gather_nodes
from osiris_core.nats.connection import open_connection
from osiris_core.nats.server import EmbeddedNats
from osiris_core.nats.streams import ensure_streams
from osiris_core.ops.natsconfig import (
    Permissions,
    Role,
    hash_password,
    inbox_prefix,
    load_for,
    render,
    role_permissions,
)
from osiris_core.plugins import LoadedPlugins
from osiris_core.runtime.node import Runtime
from osiris_core.subjects import control

PASSWORD = "pw-{role}"
SEEN_WITHIN_S = 5.0


PHI3_GUIDED = "osiris.phi3.guided"


@pytest.fixture(scope="module")
def installed() -> tuple[LoadedPlugins, list[Role]]:
    """Every installed plugin, and the roles their grants make."""
    return load_for(load_config(None, search_cwd=False))


@pytest.fixture(scope="module")
def roles(installed: tuple[LoadedPlugins, list[Role]]) -> list[Role]:
    return installed[1]


@pytest.fixture(scope="module")
def perms(installed: tuple[LoadedPlugins, list[Role]]) -> dict[str, Permissions]:
    return role_permissions(*installed)


@pytest.fixture(scope="module")
def server(perms: dict[str, Permissions],
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A nats-server with the generated users (bcrypt at a low cost: fast connects)."""
    hashed = {r: hash_password(PASSWORD.format(role=r), cost=4) for r in perms}
    with EmbeddedNats(tmp_path_factory.mktemp("nats"), config=render(perms, hashed)) as srv:
        yield srv.url


class Conn:
    """A connection as one role, with the server's permission errors collected."""

    def __init__(self, nc: NATS, errors: asyncio.Queue[str]) -> None:
        self.nc, self.errors = nc, errors

    @property
    def bus(self) -> Bus:
        return Bus(self.nc)

    async def refused(self, what: str, subject: str) -> None:
        """Assert the server refuses this `publish` or `subscribe` of `subject`."""
        if what == "publish":
            await self.nc.publish(subject, b"{}")
        else:
            await self.nc.subscribe(subject)
        await self.nc.flush()
        kind = "publish" if what == "publish" else "subscription"
        async with asyncio.timeout(SEEN_WITHIN_S):
            while True:
                err = (await self.errors.get()).lower()
                if kind in err and f'"{subject.lower()}"' in err:
                    return

    async def clean(self) -> None:
        """No permission error so far."""
        await self.nc.flush()
        assert self.errors.empty(), self.errors.get_nowait()


def role_settings(url: str, role: str) -> OsirisSettings:
    return OsirisSettings(nats_url=url, nats_user=role, nats_password=PASSWORD.format(role=role),
                          nats_inbox_prefix=inbox_prefix(role))


@pytest.fixture
def connect_as(server: str) -> Callable[[str], AbstractAsyncContextManager[Conn]]:
    @asynccontextmanager
    async def go(role: str) -> AsyncIterator[Conn]:
        errors: asyncio.Queue[str] = asyncio.Queue()

        async def on_error(e: Exception) -> None:
            errors.put_nowait(str(e))

        nc = await open_connection(role_settings(server, role), name=f"test-{role}",
                                   error_cb=on_error)
        try:
            yield Conn(nc, errors)
        finally:
            await nc.close()

    return go


@pytest.fixture
def feedback_config(server: str, tmp_path: Path) -> Config:
    path = tmp_path / "osiris.toml"
    keys = msgspec.structs.asdict(role_settings(server, "feedback"))
    path.write_bytes(msgspec.toml.encode({"osiris": {
        **{k: v for k, v in keys.items() if k.startswith("nats_")},
        "plugins": ["feedback"], "data_dir": str(tmp_path / "data"), "embedded_nats": "never",
        "shutdown_timeout_s": 5}}))
    return load_config(path)


# --- what the file grants ---------------------------------------------------------------
def test_the_roles_are_the_documented_ones(perms: dict[str, Permissions],
                                          roles: list[Role]) -> None:
    ours = {"bridge", "dgm", "feedback", "gateway", "gpu", "models", "operator",
            "orchestrator", "sim", "trainer"}
    assert ours <= set(perms) and set(perms) - ours <= {"example"}  # + the example plugin's
    assert list(perms) == [r.name for r in roles] and roles[-1].name == "operator"
    models = next(r for r in roles if r.name == "models")
    assert set(models.plugins) == {"hermes", "phi3", "tts"}  # one user for three plugins


def test_nobody_gets_a_jetstream_or_catch_all_wildcard(perms: dict[str, Permissions]) -> None:
    for role, p in perms.items():
        assert not {"$JS.>", "$JS.API.>", ">", "$JS.API.*", "_INBOX.>"} & p.publish, role
        assert not any(s.startswith("$JS.API.STREAM.") and s.endswith((".*", ".>"))
                       for s in p.publish), role
        if role != "operator":
            assert ">" not in p.subscribe and not any(
                s.startswith("_INBOX") and s != f"{inbox_prefix(role)}.>" for s in p.subscribe)
    assert {"$JS.>", "_INBOX.>", "_INBOX_gateway.>"} <= perms["operator"].subscribe_deny


def test_who_may_publish_what(perms: dict[str, Permissions]) -> None:
    def who(subject: str) -> set[str]:
        return {r for r, p in perms.items() if subject in p.publish}

    assert who(ADAPTERS_PUBLISHED.name) == {"trainer", "operator"}
    assert who(DGM_EVENTS.name) == {"dgm", "operator"}
    # besides the operator, only the role whose job it is (the gpu supervisor pauses models,
    # dgm applies policies); a role may only ping its own actors (read-only health checks)
    assert who(control("hermes")) == {"gpu", "operator"}
    assert who(control("orchestrator")) == {"dgm", "operator"}
    assert who(control("feedback")) == {"operator"}
    assert not any(s.endswith(".control") for s in perms["gateway"].publish)
    assert who("$SRV.PING.tts") == {"models", "operator"}
    assert who(HERMES_GENERATE.name) == {"gateway", "orchestrator", "dgm", "operator"}
    assert who(FEEDBACK_SUBMITTED.name) == {"feedback", "operator"}


# --- the generated file, end to end -----------------------------------------------------
def test_the_cli_writes_a_config_nats_server_takes(tmp_path: Path, roles: list[Role]) -> None:
    out, secrets = tmp_path / "nats.conf", tmp_path / "roles.toml"
    result = CliRunner().invoke(nats_config, ["--out", str(out), "--secrets", str(secrets)])
    assert result.exit_code == 0, result.output
    assert "$2b$" in out.read_text() and out.stat().st_mode & 0o077 == 0
    keys = tomllib.loads(secrets.read_text())
    assert keys["gpu"]["nats_inbox_prefix"] == "_INBOX_gpu"
    with EmbeddedNats(tmp_path / "srv", config=out.read_text()) as srv:
        s = msgspec.convert({**keys["gateway"], "nats_url": srv.url}, OsirisSettings)

        async def go() -> None:
            nc = await open_connection(s)
            assert nc.is_connected
            await nc.close()

        asyncio.run(go())
    printed = CliRunner().invoke(nats_config, ["--password-env", "--store-dir", "/js"], env={
        f"OSIRIS_NATS_PASSWORD_{r.name.upper()}": "x" for r in roles})
    assert printed.exit_code == 0 and 'jetstream: {store_dir: "/js"}' in printed.output


# --- each role at work, and refused -----------------------------------------------------
async def test_roles_at_work_around_a_real_feedback_actor(
        connect_as: Callable[[str], AbstractAsyncContextManager[Conn]],
        feedback_config: Config, caplog: pytest.LogCaptureFixture) -> None:
    rt = Runtime(feedback_config)
    await rt.start()  # the feedback role declares the streams and binds its 7 consumers
    try:
        assert [c.state.value for c in rt.cells] == ["running"]
        async with connect_as("gateway") as gw, connect_as("trainer") as trainer, \
                connect_as("operator") as op, connect_as("gpu") as gpu:
            # gateway → feedback (replies come back on _INBOX_gateway)
            ack = await gw.bus.request(FEEDBACK_SUBMIT, FeedbackItem(
                transaction_id="t1", feedback_type="rating", feedback_content=5,
                feedback_id="f1"), reply_type=FeedbackAck, timeout=10)
            assert ack.feedback_id == "f1"
            await gw.refused("publish", control("hermes"))
            await gw.refused("publish", ADAPTERS_PUBLISHED.name)
            await gw.refused("subscribe", "_INBOX_feedback.>")
            await gw.refused("subscribe", FEEDBACK_SUBMIT.name)  # cannot pose as the actor
            await gw.refused("publish", "$JS.API.STREAM.DELETE.OSIRIS_PHI3_FEEDBACK_SUBMITTED")

            # trainer: its own durable consumer on the feedback stream, then publishes
            cfg = ConsumerConfig(durable_name="trainer_on_feedback",
                                 ack_policy=AckPolicy.EXPLICIT,
                                 filter_subject=FEEDBACK_SUBMITTED.name)
            js = trainer.nc.jetstream()
            await js.add_consumer(FEEDBACK_SUBMITTED.stream or "", cfg)
            psub = await js.pull_subscribe(FEEDBACK_SUBMITTED.name, durable="trainer_on_feedback",
                                           stream=FEEDBACK_SUBMITTED.stream)
            [msg] = await psub.fetch(1, timeout=5)
            assert b'"f1"' in msg.data
            await msg.ack_sync()
            assert await trainer.bus.publish(ADAPTERS_PUBLISHED, {"version": "v1"},
                                             msg_id="adapter-v1")
            await trainer.clean()
            await trainer.refused("publish", "$JS.API.CONSUMER.DURABLE.CREATE."
                                  "OSIRIS_PHI3_FEEDBACK_SUBMITTED.someone_else")
            await trainer.refused("publish", DGM_EVENTS.name)
            await trainer.refused("publish", FEEDBACK_SUBMIT.name)

            # gpu: scatter-gathers the runtimes, may pause model actors, nothing else
            nodes = await gather_nodes(gpu.bus, 2.0)
            assert [a.name for n in nodes for a in n.actors] == ["feedback"]
            await gpu.refused("publish", control("orchestrator"))
            await gpu.refused("publish", control("feedback"))

            # operator: the CLI's reads and discovery
            rows = await op.bus.request(STORE_QUERY, StoreQuery(table="feedback", limit=10),
                                        reply_type=StoreRows, timeout=10)
            assert isinstance(rows.rows, list)  # answered (the row lands once consumed)
            pongs = await op.bus.gather("$SRV.PING.feedback", timeout=1.0, max_replies=1)
            assert pongs and b'"feedback"' in pongs[0].data
            info = await op.nc.jetstream().stream_info("OSIRIS_DEADLETTER")
            assert info.config.name == "OSIRIS_DEADLETTER"
            await op.refused("subscribe", "_INBOX_gateway.>")
            await op.clean()
        # the actor's own connection (streams, consumers, services, replies) met no refusal
        assert not [r.getMessage() for r in caplog.records if "ermissions" in r.getMessage()]
    finally:
        await rt.stop()


async def test_model_orchestrator_dgm_sim_and_bridge_roles(
        connect_as: Callable[[str], AbstractAsyncContextManager[Conn]]) -> None:
    async with connect_as("models") as models, connect_as("orchestrator") as orch, \
            connect_as("dgm") as dgm, connect_as("sim") as sim, connect_as("bridge") as bridge:
        # models serve generation to the orchestrator (replies into _INBOX_orchestrator)
        async def answer(msg: Any) -> None:
            await msg.respond(b'{"generated_text": "ok"}')

        await models.nc.subscribe(HERMES_GENERATE.name, queue="hermes", cb=answer)
        await models.nc.flush()
        reply = await orch.bus.request(HERMES_GENERATE, {"prompt": "hi"}, timeout=5)
        assert reply == {"generated_text": "ok"}
        await models.refused("publish", ADAPTERS_PUBLISHED.name)
        await models.refused("subscribe", STORE_QUERY.name)
        await models.refused("subscribe", "_INBOX_orchestrator.>")

        # sim → orchestrator on market.ticks; neither may do the other's part
        ticks = await orch.nc.subscribe(MARKET_TICKS.name)
        await orch.nc.flush()
        async with asyncio.timeout(10):  # interest can lag a moment behind a SUB on another
            while True:                   # connection (seen ~1 in 8 runs): publish again
                await sim.nc.publish(MARKET_TICKS.name, b'{"close": 1}')
                try:
                    assert (await ticks.next_msg(timeout=0.5)).data == b'{"close": 1}'
                    break
                except nats.errors.TimeoutError:
                    continue
        await sim.refused("publish", PROPOSAL_CREATED.name)
        await orch.refused("publish", MARKET_TICKS.name)
        await orch.refused("publish", control("phi3"))

        # dgm: phi3's edits under its grammar (replies into _INBOX_dgm), its events and the
        # orchestrator's control subject, not hermes' control
        await models.nc.subscribe(PHI3_GUIDED, queue="phi3", cb=answer)
        await models.nc.flush()
        assert await dgm.bus.request(PHI3_GUIDED, {"prompt": "edit"}, timeout=5) == reply
        await orch.refused("publish", PHI3_GUIDED)
        await dgm.nc.publish(control("orchestrator"), b"{}")
        await dgm.clean()
        await dgm.refused("publish", control("hermes"))
        await dgm.refused("subscribe", FEEDBACK_SUBMIT.name)

        # bridge: mirrors the documented channels; advice goes only to Redis
        await bridge.nc.subscribe(PROPOSAL_CREATED.name)
        await bridge.nc.publish(MARKET_TICKS.name, b"{}")
        await bridge.clean()
        await bridge.refused("publish", "advice.generated")
        await bridge.refused("subscribe", FEEDBACK_SUBMIT.name)


async def test_a_runtime_role_creates_streams_but_only_the_operator_changes_one(
        connect_as: Callable[[str], AbstractAsyncContextManager[Conn]]) -> None:
    """Creating never changes a stream that exists; updating is the operator's: a runtime
    role that finds a stream short of the catalogue says so (naming the fix) instead of
    being able to shrink or re-shape the stream."""
    name, subject = "OSIRIS_EXAMPLE_RECORDED", "example.recorded"
    async with connect_as("operator") as op, connect_as("sim") as sim:
        # an operator's stream: another subject, its own limit, not the catalogue's subject
        old = StreamConfig(name=name, subjects=["example.old"], max_msgs=1000,
                           storage=StorageType.FILE)
        try:
            await op.bus.js.add_stream(old)
        except BadRequestError:  # the feedback actor's start declared it already
            await op.bus.js.update_stream(old)
        with pytest.raises(ConfigError) as err:
            await ensure_streams(sim.bus, {name: [subject]})
        assert f"add {subject}" in str(err.value) and "osiris streams --apply" in str(err.value)
        seen = sim.errors.get_nowait().lower()  # the server refused it: not a mere timeout
        assert f'publish to "$js.api.stream.update.{name.lower()}"' in seen, seen
        assert await ensure_streams(op.bus, {name: [subject]}) == [name]
        cfg = (await op.bus.js.stream_info(name)).config
        assert cfg.subjects == ["example.old", subject] and cfg.max_msgs == 1000  # kept
        # up to date now: the runtime role only reads it
        assert await ensure_streams(sim.bus, {name: [subject]}) == [name]
        await sim.clean()


async def test_a_request_the_role_may_not_send_fails_as_forbidden_not_lost(
        connect_as: Callable[[str], AbstractAsyncContextManager[Conn]]) -> None:
    """The server refuses the publish with an async -ERR only; the bus turns it into a 403
    naming the subject, instead of a watched request's "replica stopped answering" 503 after
    a retry or a plain request's 504."""
    async with connect_as("sim") as sim:
        with pytest.raises(Forbidden) as err:  # idempotent: a watched request, failed at once
            await sim.bus.request(PHI3_GENERATE, {"prompt": "hi"}, timeout=30)
        assert "osiris.phi3.generate" in err.value.message and err.value.code == 403
        with pytest.raises(Forbidden):  # not idempotent: told when its wait ends
            await sim.bus.request(FEEDBACK_SUBMIT, {"transaction_id": "t"}, timeout=1)
        with pytest.raises(Forbidden):  # a token stream: told when no word came
            async for _ in sim.bus.stream(HERMES_GENERATE, {"prompt": "hi", "stream": True},
                                          item_type=GenerateChunk, timeout=30):
                pass


def test_a_plugins_gateway_routes_get_their_calls_not_its_actors(
        perms: dict[str, Permissions], roles: list[Role]) -> None:
    """The trainer's and dgm's gateway routes (the desk's train now, reports and rollback)
    run in the gateway: the gateway may call them; it gets none of those plugins' actors."""
    gateway = perms["gateway"]
    assert {"osiris.trainer.train", "osiris.trainer.reports", "osiris.dgm.rollback"} \
        <= gateway.publish
    assert ADAPTERS_PUBLISHED.name not in gateway.publish  # the trainer's own event
    assert "osiris.trainer.train" not in gateway.subscribe  # nor does it serve the trainer
    assert next(r for r in roles if r.name == "gateway").plugins == ("gateway",)
