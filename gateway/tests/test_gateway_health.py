"""How /health reads the actors' own reports (NodeStatus from every runtime) into the
seeds' fields."""

from __future__ import annotations

from typing import Any

from osiris_gateway.health import summarise

from osiris_core.protocol import ActorStatus, NodeStatus


def node(name: str, *actors: ActorStatus) -> NodeStatus:
    return NodeStatus(node=name, pid=1, started=0.0, plugins=[], actors=list(actors))


def actor(name: str, state: Any = "running", **facts: Any) -> ActorStatus:
    return ActorStatus(name=name, plugin=name, state=state, restarts=2, in_flight=1, facts=facts)


def test_both_loaded_is_ok_and_device_is_the_seeds_word() -> None:
    h = summarise([node("a", actor("hermes", loaded=True, device="cuda:1", adapter="v3")),
                   node("b", actor("phi3", loaded=True, model_file_exists=True, device="cuda:0"))])
    assert (h.status, h.hermes_loaded, h.phi3_loaded, h.phi3_model_file_exists, h.device) == \
        ("ok", True, True, True, "cuda")
    assert h.nodes == 2
    hermes = next(a for a in h.actors if a.name == "hermes")
    assert (hermes.node, hermes.device, hermes.adapter, hermes.restarts, hermes.in_flight) == \
        ("a", "cuda:1", "v3", 2, 1)


def test_paused_or_failed_model_is_not_loaded() -> None:
    h = summarise([node("a", actor("hermes", loaded=True),
                        actor("phi3", state="paused", loaded=False, model_file_exists=True))])
    assert (h.status, h.hermes_loaded, h.phi3_loaded, h.phi3_model_file_exists) == \
        ("partial_error", True, False, True)
    h = summarise([node("a", actor("hermes", state="failed", loaded=True))])
    assert (h.status, h.hermes_loaded, h.phi3_loaded, h.phi3_model_file_exists, h.device) == \
        ("error", False, False, False, "cpu")


def test_one_loaded_replica_is_enough() -> None:
    h = summarise([node("a", actor("hermes", state="failed")),
                   node("b", actor("hermes", loaded=True)), node("c", actor("phi3"))])
    assert h.hermes_loaded and h.phi3_loaded  # phi3 says nothing about `loaded`: running is
    assert [a.node for a in h.actors] == ["a", "b", "c"]
