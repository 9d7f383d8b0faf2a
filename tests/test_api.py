"""The public API and the plugin surface stay documented and tested."""

from __future__ import annotations

import inspect
from pathlib import Path

import pytest

import osiris_core
from osiris_core import hookspecs
from osiris_core.actor import TRANSITIONS, State

ROOT = Path(__file__).resolve().parent.parent


def test_public_api_is_sorted_and_importable() -> None:
    assert osiris_core.__all__ == sorted(osiris_core.__all__)
    for name in osiris_core.__all__:
        assert getattr(osiris_core, name) is not None


def hooks() -> list[str]:
    return [n for n, f in inspect.getmembers(hookspecs, inspect.isfunction)
            if n.startswith("register_")]


def test_every_hookspec_has_a_docstring_and_docs_and_a_test() -> None:
    docs = (ROOT / "docs" / "plugins.md").read_text()
    tests = "\n".join(p.read_text() for p in ROOT.glob("tests/**/*.py")
                      if p.name != "test_api.py")
    tests += "\n".join(p.read_text() for p in ROOT.glob("examples/**/*.py"))
    tests += "\n".join(p.read_text() for p in ROOT.glob("plugins/*/osiris_*/**/*.py"))
    assert set(hooks()) >= {"register_actors", "register_commands", "register_routes",
                            "register_config", "register_subjects"}
    for name in hooks():
        fn = getattr(hookspecs, name)
        assert fn.__doc__ and "Called" in fn.__doc__, f"{name} needs a docstring saying when"
        assert f"### {name}(" in docs, f"{name} is not documented in docs/plugins.md"
        assert f"def {name}(" in tests, f"{name} is not exercised by any test plugin"


def test_state_table_is_closed() -> None:
    assert set(TRANSITIONS) == set(State)
    for targets in TRANSITIONS.values():
        assert targets <= set(State)


def test_the_lifecycle_table_lets_every_phase_stop_and_reaches_every_phase() -> None:
    from osiris_core.runtime.lifecycle import TABLE, Lifecycle, Phase, Trigger

    reach, frontier = {Phase.STOPPED}, [Phase.STOPPED]
    while frontier:
        here = frontier.pop()
        for (frm, _), to in TABLE.items():
            if frm is here and to not in reach:
                reach.add(to)
                frontier.append(to)
    assert reach == set(Phase)
    for phase in Phase:  # whatever state an actor is in, shutdown can end it
        lc = Lifecycle("t")
        lc.phase = phase
        if phase is not Phase.STOPPED:
            lc.fire(Trigger.STOP) if lc.can(Trigger.STOP) else lc.fire(Trigger.CUT)
            lc.fire(Trigger.STOPPED)
        assert lc.phase is Phase.STOPPED
    lc = Lifecycle("t")
    with pytest.raises(Exception, match="not allowed while stopped"):
        lc.fire(Trigger.PAUSE)


def test_the_old_module_paths_still_import_with_a_deprecation_warning() -> None:
    """docs/plugins.md "What moved": an old path is the same module or object, and warns."""
    import importlib
    import sys

    cases = [("osiris_core.bus", "osiris_core.nats.bus", "Bus"),
             ("osiris_core.natsserver", "osiris_core.nats.server", "EmbeddedNats"),
             ("osiris_core.contracts", "osiris_contracts.messages", "TradeProposal"),
             ("osiris_core.store", "osiris_contracts.store", "read_rows")]
    for old, new, name in cases:
        sys.modules.pop(old, None)
        with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
            module = importlib.import_module(old)
        assert module is importlib.import_module(new)
        assert getattr(module, name) is getattr(importlib.import_module(new), name)
    from osiris_contracts.subjects import HERMES_GENERATE

    subjects = importlib.import_module("osiris_core.subjects")
    with pytest.warns(DeprecationWarning, match="osiris_contracts.subjects"):
        assert subjects.HERMES_GENERATE is HERMES_GENERATE
    with pytest.raises(AttributeError):
        subjects.NOT_A_SUBJECT  # noqa: B018 - a typo still fails
